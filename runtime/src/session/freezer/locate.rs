//! Which cgroup a process is in: its place in each hierarchy from
//! `/proc/PID/cgroup`, found under the cgroup mounts this process sees, with
//! the refusals (the root cgroup, a cgroup that holds this process, a v2
//! cgroup without a freezer).

use std::fs;
use std::path::{Path, PathBuf};

use super::{Cgroup, CgroupVersion, Error, Result, V2_FREEZE};
use crate::session::mountinfo::{self, Mount};

impl Cgroup {
    /// The freezer cgroup of process `pid`, from `/proc/PID/cgroup` and this
    /// process's mountinfo.
    ///
    /// With `prefer` unset: the v1 freezer cgroup when `pid` is in a non-root one,
    /// else its cgroup v2 cgroup (which must have `cgroup.freeze`). The root cgroup,
    /// and a cgroup that holds this process too, are refused.
    pub fn of_pid(pid: i32, prefer: Option<CgroupVersion>) -> Result<Self> {
        let read = |path: PathBuf| {
            fs::read_to_string(&path).map_err(|source| Error::Read { path, source })
        };
        let theirs = read(PathBuf::from(format!("/proc/{pid}/cgroup")))?;
        let ours = read(PathBuf::from("/proc/self/cgroup"))?;
        let path = PathBuf::from("/proc/self/mountinfo");
        let text = fs::read(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let mounts = mountinfo::parse(&text).map_err(|content| Error::Parse { path, content })?;
        resolve(pid, &theirs, &ours, &mounts, prefer)
    }
}

/// A process's place in one hierarchy, from `/proc/PID/cgroup`.
fn membership(proc_cgroup: &str, version: CgroupVersion) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| {
        let mut f = line.splitn(3, ':');
        let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let hit = match version {
            CgroupVersion::V1 => id != "0" && controllers.split(',').any(|c| c == "freezer"),
            CgroupVersion::V2 => id == "0" && controllers.is_empty(),
        };
        hit.then_some(path)
    })
}

/// The directory of a cgroup path, under the first mount of its hierarchy that
/// shows it (a mount's root may be a sub-cgroup, as in a cgroup namespace), and
/// whether it is that mount's top.
fn locate(
    pid: i32,
    path: Option<&str>,
    version: CgroupVersion,
    mounts: &[Mount],
) -> Result<(PathBuf, bool)> {
    let what = hierarchy(version);
    let mut fitting = mounts
        .iter()
        .filter(|m| match version {
            CgroupVersion::V1 => m.fs_type == "cgroup" && m.has_super_flag("freezer"),
            CgroupVersion::V2 => m.fs_type == "cgroup2",
        })
        .peekable();
    if fitting.peek().is_none() {
        return Err(Error::NoMount { version, what });
    }
    let path = path.ok_or(Error::NotInCgroup { pid, version, what })?;
    fitting
        .find_map(|m| {
            let rel = Path::new(path).strip_prefix(&m.root).ok()?;
            let top = rel.as_os_str().is_empty();
            Some((
                if top {
                    m.target.clone()
                } else {
                    m.target.join(rel)
                },
                top,
            ))
        })
        .ok_or_else(|| Error::NotVisible {
            pid,
            version,
            path: path.to_string(),
        })
}

fn hierarchy(version: CgroupVersion) -> &'static str {
    match version {
        CgroupVersion::V1 => "freezer",
        CgroupVersion::V2 => "unified",
    }
}

/// [`Cgroup::of_pid`] on text already read: `theirs` and `ours` are
/// `/proc/PID/cgroup` of the target and of this process.
fn resolve(
    pid: i32,
    theirs: &str,
    ours: &str,
    mounts: &[Mount],
    prefer: Option<CgroupVersion>,
) -> Result<Cgroup> {
    let pick = |version: CgroupVersion| -> Result<Cgroup> {
        let path = membership(theirs, version);
        let (dir, is_root) = locate(pid, path, version, mounts)?;
        if is_root {
            return Err(Error::RootCgroup { pid, dir });
        }
        if let Some(mine) = membership(ours, version) {
            if path.is_some_and(|p| Path::new(mine).starts_with(p)) {
                return Err(Error::ContainsSelf { dir });
            }
        }
        if version == CgroupVersion::V2 && !dir.join(V2_FREEZE).exists() {
            return Err(Error::NoV2Freezer { dir });
        }
        Ok(Cgroup::new(version, dir))
    };
    match prefer {
        Some(version) => pick(version),
        None => {
            let v1 = membership(theirs, CgroupVersion::V1).filter(|p| *p != "/");
            match v1.map(|_| pick(CgroupVersion::V1)) {
                Some(Ok(cg)) => Ok(cg),
                // No usable v1 freezer (not in one, or not mounted here): v2.
                Some(Err(Error::NoMount { .. } | Error::NotVisible { .. })) | None => {
                    pick(CgroupVersion::V2)
                }
                Some(Err(e)) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control file as the kernel shows it.
    fn put(dir: &Path, file: &str, content: &str) {
        fs::write(dir.join(file), content).unwrap();
    }

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn mounts(text: &str, v2_at: Option<&Path>) -> Vec<Mount> {
        let mut m = mountinfo::parse(text.as_bytes()).unwrap();
        // Point the cgroup2 mount at a temp dir so cgroup.freeze can be probed.
        if let Some(at) = v2_at {
            for x in m.iter_mut().filter(|x| x.fs_type == "cgroup2") {
                x.target = at.to_path_buf();
            }
        }
        m
    }

    #[test]
    fn resolve_table() {
        let v2 = tempfile::tempdir().unwrap();
        for d in ["kubepods/pod1/c1", "pod1/c1", "session"] {
            fs::create_dir_all(v2.path().join(d)).unwrap();
            put(&v2.path().join(d), V2_FREEZE, "0\n");
        }
        fs::create_dir_all(v2.path().join("old")).unwrap(); // no cgroup.freeze
        let root = v2.path();
        let hybrid = mounts(HYBRID, Some(root));
        let pure_v2 = mounts(
            "25 20 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            Some(root),
        );
        // A cgroup namespace: the v2 mount shows the cgroup "/kubepods" at its top.
        let nested = {
            let mut m = pure_v2.clone();
            m[0].root = PathBuf::from("/kubepods");
            m
        };
        let comounted = mounts(
            "37 31 0:34 / /cg/freezer,devices rw - cgroup cgroup rw,devices,freezer\n",
            None,
        );
        let me = "6:freezer:/\n0::/\n";
        use CgroupVersion::*;
        /// The cgroup found, or which error.
        type Want = std::result::Result<(CgroupVersion, PathBuf), &'static str>;
        /// Name, mounts, the target's /proc/PID/cgroup, preference, outcome.
        type Case<'a> = (&'a str, &'a [Mount], &'a str, Option<CgroupVersion>, Want);
        let cases: Vec<Case> = vec![
            (
                "hybrid, v1 freezer cgroup wins",
                &hybrid,
                "9:name=systemd:/x\n6:freezer:/sess/a\n0::/session\n",
                None,
                Ok((V1, "/sys/fs/cgroup/freezer/sess/a".into())),
            ),
            (
                "hybrid, preferring v2",
                &hybrid,
                "6:freezer:/sess/a\n0::/session\n",
                Some(V2),
                Ok((V2, root.join("session"))),
            ),
            (
                "hybrid, v1 root: falls back to v2",
                &hybrid,
                "6:freezer:/\n0::/session\n",
                None,
                Ok((V2, root.join("session"))),
            ),
            (
                "freezer co-mounted with another controller",
                &comounted,
                "4:devices,freezer:/s\n",
                None,
                Ok((V1, "/cg/freezer,devices/s".into())),
            ),
            (
                "hybrid, both root",
                &hybrid,
                "6:freezer:/\n0::/\n",
                None,
                Err("root"),
            ),
            (
                "hybrid, v1 root preferred",
                &hybrid,
                "6:freezer:/\n0::/s\n",
                Some(V1),
                Err("root"),
            ),
            (
                "pure v2",
                &pure_v2,
                "0::/kubepods/pod1/c1\n",
                None,
                Ok((V2, root.join("kubepods/pod1/c1"))),
            ),
            (
                "pure v2, v1 asked for",
                &pure_v2,
                "0::/session\n",
                Some(V1),
                Err("no v1"),
            ),
            ("pure v2, root", &pure_v2, "0::/\n", None, Err("root")),
            (
                "v2 without cgroup.freeze",
                &pure_v2,
                "0::/old\n",
                None,
                Err("no freeze"),
            ),
            (
                "cgroup namespace",
                &nested,
                "0::/kubepods/pod1/c1\n",
                None,
                Ok((V2, root.join("pod1/c1"))),
            ),
            (
                "cgroup namespace top",
                &nested,
                "0::/kubepods\n",
                None,
                Err("root"),
            ),
            (
                "outside the namespace",
                &nested,
                "0::/other\n",
                None,
                Err("not visible"),
            ),
            (
                "no v2 membership",
                &hybrid,
                "6:freezer:/\n",
                None,
                Err("no v2"),
            ),
        ];
        for (name, mounts, theirs, prefer, want) in cases {
            let got = resolve(42, theirs, me, mounts, prefer);
            match (want, got) {
                (Ok((v, d)), Ok(cg)) => assert_eq!(cg, Cgroup::new(v, d), "{name}"),
                (Err(kind), Err(e)) => {
                    let ok = match kind {
                        "root" => matches!(e, Error::RootCgroup { .. }),
                        "no v1" => matches!(e, Error::NoMount { version: V1, .. }),
                        "no v2" => matches!(e, Error::NotInCgroup { version: V2, .. }),
                        "no freeze" => matches!(e, Error::NoV2Freezer { .. }),
                        "not visible" => matches!(e, Error::NotVisible { .. }),
                        _ => unreachable!(),
                    };
                    assert!(ok, "{name}: wanted {kind}, got {e}");
                }
                (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
            }
        }
        let e = resolve(42, "6:freezer:/\n0::/\n", me, &hybrid, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "process 42 is in the root cgroup {}: refusing to freeze the whole host",
                root.display()
            )
        );
    }

    #[test]
    fn refuses_a_cgroup_that_holds_this_process() {
        let hybrid = mounts(HYBRID, None);
        for (theirs, ours) in [
            ("6:freezer:/sess\n0::/\n", "6:freezer:/sess\n0::/\n"),
            ("6:freezer:/sess\n0::/\n", "6:freezer:/sess/sub\n0::/\n"),
        ] {
            let e = resolve(42, theirs, ours, &hybrid, None).unwrap_err();
            assert!(matches!(e, Error::ContainsSelf { .. }), "{e}");
        }
        // A sibling whose name merely starts the same is fine.
        let cg = resolve(
            42,
            "6:freezer:/sess\n0::/\n",
            "6:freezer:/session\n0::/\n",
            &hybrid,
            None,
        )
        .unwrap();
        assert_eq!(cg.dir(), Path::new("/sys/fs/cgroup/freezer/sess"));
    }
}

//! Where an archive may go: a relative name inside the save location, resolved by
//! the kernel so that no `..` or symlink takes it outside, and the platform's
//! default file name when the request gives none.
//!
//! The directory is resolved once, at admission, into an fd that the commit
//! writes through (archive and sidecar alike): what happens to the path
//! afterwards (a component replaced by a symlink, say) cannot move the output.
//!
//! Who may read the output is `[storage]`'s `archive_mode` and
//! `archive_group` ([`configure`]): archives and sidecars `0600` by default,
//! and the directories made for them (the save location, missing
//! subdirectories of an `output`) let in only whoever may read them.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use freezeframe_config::{Group, Storage};
use freezeframe_snapshot::fs::open::{
    open_beneath, open_root_nofollow, proc_path, stat, stat_at, BENEATH,
};
use freezeframe_snapshot::fs::output::{output_access, set_output_access, Access};
use freezeframe_snapshot::fs::Errno;
use rustix::fs::{mkdirat, Mode, OFlags, ResolveFlags, CWD};

use super::error::ApiError;

/// Longest `output` accepted, in bytes.
const MAX_OUTPUT: usize = 1024;

/// The directories on the way are opened for `*at` calls only.
const DIR: OFlags = OFlags::PATH.union(OFlags::DIRECTORY);

/// How a path below the save location is resolved: never outside it, and never
/// through a `/proc` magic link; a symlink that stays inside is followed.
const INSIDE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// Why the configured access of the output cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("storage.archive_group: no group named {name:?}")]
    NoGroup { name: String },
    #[error("storage.archive_group: looking up group {name:?}: {source}")]
    Lookup { name: String, source: nix::Error },
    #[error("creating the save location {}: {source}", path.display())]
    SaveLocation { path: PathBuf, source: io::Error },
}

/// The [`Access`] that `[storage]` gives archives and sidecars, its group
/// looked up by name if need be.
pub fn access(storage: &Storage) -> Result<Access, AccessError> {
    let gid = match &storage.archive_group {
        None => None,
        Some(Group::Gid(gid)) => Some(*gid),
        Some(Group::Name(name)) => Some(
            nix::unistd::Group::from_name(name)
                .map_err(|source| AccessError::Lookup {
                    name: name.clone(),
                    source,
                })?
                .ok_or_else(|| AccessError::NoGroup { name: name.clone() })?
                .gid
                .as_raw(),
        ),
    };
    Ok(Access {
        mode: storage.archive_mode,
        gid,
    })
}

/// Makes `[storage]`'s access the process's ([`set_output_access`]), for
/// every archive and sidecar it writes.
pub fn set_access(storage: &Storage) -> Result<Access, AccessError> {
    let access = access(storage)?;
    set_output_access(access);
    Ok(access)
}

/// [`set_access`], and creates the save location if it is missing (see
/// [`create_save_location`]): the service's start.
pub fn configure(storage: &Storage) -> Result<Access, AccessError> {
    let access = set_access(storage)?;
    create_save_location(&storage.save_location, access)?;
    Ok(access)
}

/// Creates `save` and its missing parents, if it is missing, with
/// [`Access::dir_mode`], and gives `save` itself `access`'s group. An
/// existing save location is the operator's, and is left as it is.
pub fn create_save_location(save: &Path, access: Access) -> Result<(), AccessError> {
    let err = |source| AccessError::SaveLocation {
        path: save.to_path_buf(),
        source,
    };
    if save.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(access.dir_mode())
        .create(save)
        .map_err(err)?;
    let dir = open_root_nofollow(save).map_err(|e| err(e.into()))?;
    access.apply(dir.as_fd(), access.dir_mode()).map_err(err)
}

/// Gives the directory `name` that was just made in `parent` the mode and
/// group of `access`, unless it is no longer ours (replaced meanwhile, by
/// whoever may write to `parent`).
fn apply_to_new_dir(parent: BorrowedFd<'_>, name: &OsStr, access: Access) -> Result<(), Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
    let dir = open_beneath(parent, Path::new(name), flags, BENEATH)?;
    if stat(&dir)?.st_uid != rustix::process::geteuid().as_raw() {
        return Ok(());
    }
    access
        .apply(dir.as_fd(), access.dir_mode())
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

/// An output resolved inside the save location.
#[derive(Debug)]
pub struct Resolved {
    /// The directory the archive goes in, as resolved at admission: the commit
    /// writes through this fd, never by reopening [`Resolved::path`].
    pub dir: OwnedFd,
    /// The archive's path, with the save location's real path in front, for
    /// messages, the report and the busy check.
    pub path: PathBuf,
}

/// Resolves `rel` inside `save` (an existing directory): refuses absolute paths,
/// `..`, NUL and anything that resolves outside `save` through a symlink of an
/// existing component (the kernel's `RESOLVE_BENEATH` decides). Missing parent
/// directories are created. The final name must not exist yet. Returns the
/// directory open as an fd, and the archive's path.
pub fn resolve(save: &Path, rel: &str) -> Result<Resolved, ApiError> {
    let bad = |message: &str| ApiError::invalid("output", message);
    if rel.is_empty() {
        return Err(bad("is empty"));
    }
    if rel.len() > MAX_OUTPUT {
        return Err(bad(&format!("is longer than {MAX_OUTPUT} bytes")));
    }
    if rel.contains('\0') {
        return Err(bad("holds a NUL byte"));
    }
    if rel.starts_with('/') {
        return Err(bad("must be relative to the save location, not absolute"));
    }
    if rel.ends_with('/') {
        return Err(bad("names a directory, not a file"));
    }
    let path = Path::new(rel);
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("may not hold '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad("must be relative to the save location"))
            }
        }
    }
    let Some(name) = parts.pop() else {
        return Err(bad("names no file"));
    };

    // The save location is the operator's: resolved as configured.
    let root = open_beneath(CWD, save, DIR, ResolveFlags::empty()).map_err(|e| {
        ApiError::Internal(format!(
            "cannot open the save location {}: {}",
            save.display(),
            nix_errno(e)
        ))
    })?;
    let mut dir = open_beneath(root.as_fd(), Path::new("."), DIR, INSIDE).map_err(|e| {
        ApiError::Internal(format!("cannot open {}: {}", save.display(), nix_errno(e)))
    })?;
    let mut prefix = PathBuf::new();
    for part in parts {
        prefix.push(part);
        dir = match open_beneath(root.as_fd(), &prefix, DIR, INSIDE) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                let access = output_access();
                match mkdirat(&dir, part, Mode::from_raw_mode(access.dir_mode())) {
                    Ok(()) => apply_to_new_dir(dir.as_fd(), part, access)
                        .map_err(|e| component_error(&prefix, e))?,
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(component_error(&prefix, e)),
                }
                open_beneath(root.as_fd(), &prefix, DIR, INSIDE)
                    .map_err(|e| component_error(&prefix, e))?
            }
            Err(e) => return Err(component_error(&prefix, e)),
        };
    }
    let cname = CString::new(name.as_bytes()).map_err(|_| bad("holds a NUL byte"))?;
    match stat_at(dir.as_fd(), &cname) {
        Err(Errno::NOENT) => {}
        Ok(_) => {
            return Err(ApiError::OutputExists {
                path: save.join(rel),
            })
        }
        Err(e) => return Err(component_error(path, e)),
    }
    let real = nix::fcntl::readlink(&proc_path(dir.as_fd(), None)).map_err(|e| {
        ApiError::Internal(format!("cannot read the path of {}: {e}", prefix.display()))
    })?;
    Ok(Resolved {
        dir,
        path: PathBuf::from(real).join(name),
    })
}

fn component_error(at: &Path, e: Errno) -> ApiError {
    let what = match e {
        Errno::XDEV => "resolves outside the save location",
        Errno::LOOP => "resolves through too many symlinks",
        Errno::NOTDIR => "is not a directory",
        Errno::NAMETOOLONG => "is too long",
        other => {
            return ApiError::Internal(format!(
                "output: {} in the save location: {}",
                at.display(),
                nix_errno(other).desc()
            ))
        }
    };
    ApiError::invalid("output", format!("{} {what}", at.display()))
}

/// The same errno as nix names and describes it, as these messages always have.
fn nix_errno(e: Errno) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error())
}

/// The platform's default archive name: `%Y-%m-%dT%HH%MM%SS_<session[:10]>_<image>.tar`
/// (UTC), the image being the tag's name with anything but `[A-Za-z0-9._-]`
/// replaced by `_` (`image` without a tag).
pub fn default_name(now: SystemTime, session: &str, tag: Option<&str>) -> String {
    // 2024-05-01T12:34:56Z → 2024-05-01T12H34M56S
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let (date, time) = stamp.split_once('T').unwrap_or((&stamp, "00:00:00Z"));
    let mut hms = time.trim_end_matches('Z').split(':');
    let (h, m, s) = (
        hms.next().unwrap_or("00"),
        hms.next().unwrap_or("00"),
        hms.next().unwrap_or("00"),
    );
    let session: String = sanitize(session).chars().take(10).collect();
    let image = match tag.map(sanitize) {
        Some(t) if !t.is_empty() => t,
        _ => "image".to_string(),
    };
    let mut name = format!("{date}T{h}H{m}M{s}S_{session}_{image}");
    name.truncate(240);
    name.push_str(".tar");
    name
}

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // No name of ours starts with a dot (temp files do).
    out.trim_start_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn default_name_follows_the_platform_pattern() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_714_566_896);
        assert_eq!(
            default_name(t, "0123456789abcdef", Some("cr.example/ns/py:3.9 x")),
            "2024-05-01T12H34M56S_0123456789_cr.example_ns_py_3.9_x.tar"
        );
        assert_eq!(
            default_name(t, "s/1", None),
            "2024-05-01T12H34M56S_s_1_image.tar"
        );
        assert_eq!(
            default_name(t, "s", Some("..")),
            "2024-05-01T12H34M56S_s_image.tar"
        );
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn directories_made_for_outputs_let_in_only_who_may_read_them() {
        let tmp = tempfile::tempdir().unwrap();
        let save = tmp.path().join("save");
        std::fs::create_dir(&save).unwrap();
        std::fs::create_dir(save.join("theirs")).unwrap();
        std::fs::set_permissions(
            save.join("theirs"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        // The process's access is the default one here: private.
        assert_eq!(output_access(), Access::PRIVATE);
        resolve(&save, "new/deeper/a.tar").unwrap();
        resolve(&save, "theirs/b.tar").unwrap();
        assert_eq!(mode(&save.join("new")), 0o700);
        assert_eq!(mode(&save.join("new/deeper")), 0o700);
        assert_eq!(mode(&save.join("theirs")), 0o755, "an existing dir changed");

        // A missing save location, and its parents, are made likewise; an
        // existing one is left as it is.
        let fresh = tmp.path().join("a/b/save");
        let shared = Access {
            mode: 0o640,
            gid: Some(rustix::process::getegid().as_raw()),
        };
        create_save_location(&fresh, shared).unwrap();
        assert_eq!(mode(&fresh), 0o750);
        std::fs::set_permissions(&fresh, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .unwrap();
        create_save_location(&fresh, Access::PRIVATE).unwrap();
        assert_eq!(mode(&fresh), 0o711);
    }

    #[test]
    fn the_configured_group_is_looked_up_by_name_or_taken_as_a_gid() {
        let mut storage = Storage {
            archive_mode: 0o640,
            archive_group: Some(Group::Gid(4321)),
            ..Storage::default()
        };
        assert_eq!(
            access(&storage).unwrap(),
            Access {
                mode: 0o640,
                gid: Some(4321)
            }
        );
        storage.archive_group = Some(Group::Name("root".into()));
        assert_eq!(access(&storage).unwrap().gid, Some(0));
        storage.archive_group = Some(Group::Name("no-such-group-ff".into()));
        let err = access(&storage).unwrap_err().to_string();
        assert!(
            err.contains("storage.archive_group") && err.contains("no-such-group-ff"),
            "{err}"
        );
        assert_eq!(access(&Storage::default()).unwrap(), Access::PRIVATE);
    }

    #[test]
    fn outputs_stay_inside_the_save_location() {
        let tmp = tempfile::tempdir().unwrap();
        let save = tmp.path().join("save");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(save.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, save.join("escape")).unwrap();
        symlink("../../outside", save.join("sub/up")).unwrap();
        symlink("sub", save.join("inside")).unwrap();
        std::fs::write(save.join("taken.tar"), "").unwrap();
        std::fs::write(save.join("file"), "").unwrap();
        symlink("/etc/passwd", save.join("dangling.tar")).unwrap();
        let real = save.canonicalize().unwrap();

        let ok = |rel: &str, want: &str| {
            assert_eq!(resolve(&save, rel).unwrap().path, real.join(want), "{rel}");
        };
        ok("a.tar", "a.tar");
        ok("./b.tar", "b.tar");
        ok("sub/c.tar", "sub/c.tar");
        ok("inside/d.tar", "sub/d.tar");
        ok("new/deeper/e.tar", "new/deeper/e.tar");
        assert!(save.join("new/deeper").is_dir());

        let code = |rel: &str| {
            let e = resolve(&save, rel).unwrap_err();
            (e.status_and_code().1, e.to_string())
        };
        use crate::api::Code::*;
        for (rel, want) in [
            ("", InvalidField),
            ("/abs.tar", InvalidField),
            ("../x.tar", InvalidField),
            ("sub/../../x.tar", InvalidField),
            ("a\0b", InvalidField),
            ("dir/", InvalidField),
            (".", InvalidField),
            ("escape/x.tar", InvalidField),
            ("sub/up/x.tar", InvalidField),
            ("file/x.tar", InvalidField),
            ("taken.tar", OutputExists),
            ("dangling.tar", OutputExists),
        ] {
            let (got, msg) = code(rel);
            assert_eq!(got, want, "{rel:?}: {msg}");
        }
        assert!(code("escape/x.tar").1.contains("outside the save location"));
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }

    #[test]
    fn an_archive_lands_in_the_directory_resolved_at_admission() {
        let tmp = tempfile::tempdir().unwrap();
        let save = tmp.path().join("save");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&save).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let out = resolve(&save, "sub/x.tar").unwrap();
        assert_eq!(out.path, save.canonicalize().unwrap().join("sub/x.tar"));

        // After admission, the directory is moved and a symlink out of the
        // save location takes its name.
        std::fs::rename(save.join("sub"), save.join("moved")).unwrap();
        symlink(&outside, save.join("sub")).unwrap();

        let name = out.path.file_name().unwrap();
        let w = freezeframe_snapshot::archive::ArchiveWriter::create_in(
            out.dir.as_fd(),
            name,
            &out.path,
            false,
        )
        .unwrap();
        w.commit().unwrap();
        assert!(save.join("moved/x.tar").is_file());
        assert!(save.join("moved/x.tar.sha256").is_file());
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }
}

//! Where an archive may go: a relative name inside the save location, resolved by
//! the kernel so that no `..` or symlink takes it outside, and the platform's
//! default file name when the request gives none.

use std::os::fd::RawFd;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode};

use super::error::ApiError;

/// Longest `output` accepted, in bytes.
const MAX_OUTPUT: usize = 1024;

/// Resolves `rel` inside `save` (an existing directory): refuses absolute paths,
/// `..`, NUL and anything that resolves outside `save` through a symlink of an
/// existing component (the kernel's `RESOLVE_BENEATH` decides). Missing parent
/// directories are created. The final name must not exist yet. Returns the
/// archive's path with the save location's real path in front.
pub fn resolve(save: &Path, rel: &str) -> Result<PathBuf, ApiError> {
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

    let root = Fd::open_dir(save).map_err(|e| {
        ApiError::Internal(format!(
            "cannot open the save location {}: {e}",
            save.display()
        ))
    })?;
    let mut dir = root.dup_path(save)?;
    let mut prefix = PathBuf::new();
    for part in parts {
        prefix.push(part);
        dir = match root.beneath(&prefix) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(Some(dir.0), part, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(component_error(&prefix, e)),
                }
                root.beneath(&prefix)
                    .map_err(|e| component_error(&prefix, e))?
            }
            Err(e) => return Err(component_error(&prefix, e)),
        };
    }
    match fstatat(Some(dir.0), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => {}
        Ok(_) => {
            return Err(ApiError::OutputExists {
                path: save.join(rel),
            })
        }
        Err(e) => return Err(component_error(path, e)),
    }
    let real = nix::fcntl::readlink(format!("/proc/self/fd/{}", dir.0).as_str()).map_err(|e| {
        ApiError::Internal(format!("cannot read the path of {}: {e}", prefix.display()))
    })?;
    Ok(PathBuf::from(real).join(name))
}

fn component_error(at: &Path, e: Errno) -> ApiError {
    let what = match e {
        Errno::EXDEV => "resolves outside the save location",
        Errno::ELOOP => "resolves through too many symlinks",
        Errno::ENOTDIR => "is not a directory",
        Errno::ENAMETOOLONG => "is too long",
        other => {
            return ApiError::Internal(format!(
                "output: {} in the save location: {}",
                at.display(),
                other.desc()
            ))
        }
    };
    ApiError::invalid("output", format!("{} {what}", at.display()))
}

/// A directory fd, closed on drop.
struct Fd(RawFd);

impl Fd {
    fn open_dir(path: &Path) -> nix::Result<Fd> {
        let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC);
        openat2(nix::libc::AT_FDCWD, path, how).map(Fd)
    }

    /// `rel` below this directory, never outside it.
    fn beneath(&self, rel: &Path) -> nix::Result<Fd> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.0, rel, how).map(Fd)
    }

    /// This directory again, as a second fd.
    fn dup_path(&self, shown: &Path) -> Result<Fd, ApiError> {
        self.beneath(Path::new("."))
            .map_err(|e| ApiError::Internal(format!("cannot open {}: {e}", shown.display())))
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = nix::unistd::close(self.0);
    }
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
            assert_eq!(resolve(&save, rel).unwrap(), real.join(want), "{rel}");
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
}

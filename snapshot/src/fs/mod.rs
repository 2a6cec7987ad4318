//! The fd-relative toolkit: every way freezeframe reaches into a tree it does
//! not trust, in one place.
//!
//! - [`open`]: children of a directory fd that never follow a symlink, paths
//!   resolved beneath a directory fd or inside it as a root by the kernel
//!   (`openat2`), and the
//!   verified open (`O_PATH`, `fstat`, reopen through `/proc/self/fd`) that
//!   reads the inode that was checked and no other;
//! - [`xattr`]: extended attributes read through fds, and the one policy
//!   ([`xattr::CONTAINER_XATTRS`]) of which ones travel with a file, and
//!   its host variant ([`xattr::HOST_XATTRS`]);
//! - [`links`]: hard links found by `(st_dev, st_ino)`;
//! - [`output`]: files that get their name only when complete (`O_TMPFILE`
//!   and `linkat`), made in a directory given as an fd.
//!
//! Everything takes and returns rustix's `OwnedFd`/`BorrowedFd`, so no fd is
//! turned back into a path that a second lookup could resolve elsewhere. It
//! knows nothing of layers, overlays, walks or containers.

pub mod links;
pub mod open;
pub mod output;
pub mod xattr;

pub use rustix::io::Errno;

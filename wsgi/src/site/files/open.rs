//! Opening a path inside the served directory, so that nothing outside it can ever be
//! opened, and without waiting for the disk when the caller may not.
//!
//! On Linux 5.6 and later, `openat2` with `RESOLVE_BENEATH` resolves the path against the
//! directory's descriptor and fails if any step (a `..`, an absolute symbolic link, a link
//! that climbs out) would leave it: links that stay inside are followed, the others refused,
//! by the kernel, with no window between a check and the open. On the event loop it adds
//! `RESOLVE_CACHED` (Linux 5.12), which succeeds only if every step is already in the
//! kernel's lookup cache, so the open never waits for the disk; when it would, or on an
//! older kernel, the caller retries on the blocking pool. Without `openat2` at all, the
//! blocking path resolves links itself (`canonicalize`) and checks the result is inside.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::file_body::Wait;

/// The served directory: its canonical path and an open descriptor.
#[derive(Debug)]
pub(crate) struct Root {
    path: PathBuf,
    dir: OwnedFd,
}

impl Root {
    /// Opens the directory at `path` (already canonical).
    pub(crate) fn new(path: PathBuf) -> io::Result<Root> {
        let dir = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { path, dir })
    }

    /// The directory's canonical path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `relative` (plain segments, from `path::resolve`) for reading: `None` if it
    /// does not exist, cannot be read, or would leave the directory. With [`Wait::Never`],
    /// [`io::ErrorKind::WouldBlock`] when the open might wait for the disk.
    pub(crate) fn open(&self, relative: &Path, wait: Wait) -> io::Result<Option<File>> {
        let relative = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        if wait == Wait::Never {
            resolve |= ResolveFlags::CACHED;
        }
        let opened = rustix::fs::openat2(
            &self.dir,
            relative,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            resolve,
        );
        match opened {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(errno) if absent(errno) => Ok(None),
            // A step would leave the directory, or an absolute link (which RESOLVE_BENEATH
            // refuses even when it points inside): decided by resolving the links.
            Err(Errno::XDEV) if wait == Wait::Allowed => self.open_resolving(relative),
            // Not in the lookup cache; or no openat2, or no RESOLVE_CACHED, or a filter
            // that refuses the call: the blocking pool decides.
            Err(_) if wait == Wait::Never => Err(io::ErrorKind::WouldBlock.into()),
            Err(Errno::NOSYS | Errno::INVAL | Errno::PERM) => self.open_resolving(relative),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Without `openat2`: resolves links, checks the result is inside, opens it.
    fn open_resolving(&self, relative: &Path) -> io::Result<Option<File>> {
        let canonical = match std::fs::canonicalize(self.path.join(relative)) {
            Ok(canonical) => canonical,
            Err(err)
                if err
                    .raw_os_error()
                    .map(Errno::from_raw_os_error)
                    .is_some_and(absent) =>
            {
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        if !canonical.starts_with(&self.path) {
            return Ok(None);
        }
        match File::open(&canonical) {
            Ok(file) => Ok(Some(file)),
            Err(err)
                if err
                    .raw_os_error()
                    .map(Errno::from_raw_os_error)
                    .is_some_and(absent) =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// The names in the directory open as `directory`, for a listing.
    pub(crate) fn names(directory: &File) -> io::Result<Vec<(String, bool)>> {
        let mut names = Vec::new();
        let mut entries = rustix::fs::Dir::read_from(directory)?;
        for entry in entries.by_ref() {
            let entry = entry?;
            let name = String::from_utf8_lossy(entry.file_name().to_bytes()).into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let is_dir = match entry.file_type() {
                rustix::fs::FileType::Directory => true,
                rustix::fs::FileType::Unknown | rustix::fs::FileType::Symlink => {
                    rustix::fs::statat(directory, entry.file_name(), rustix::fs::AtFlags::empty())
                        .is_ok_and(|stat| {
                            rustix::fs::FileType::from_raw_mode(stat.st_mode).is_dir()
                        })
                }
                _ => false,
            };
            names.push((name, is_dir));
        }
        Ok(names)
    }
}

/// Errors that mean "no such file" to a client: missing, not a directory on the way,
/// unreadable, a link loop or a too-long name.
fn absent(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::NOENT | Errno::NOTDIR | Errno::ACCESS | Errno::LOOP | Errno::NAMETOOLONG
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_that_stay_inside_open_and_the_others_do_not() {
        let outside = tempfile::tempdir().unwrap();
        let root = outside.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("sub/a.txt", root.join("inside")).unwrap();
        std::os::unix::fs::symlink("../secret", root.join("relative-out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("absolute-out"))
            .unwrap();
        std::os::unix::fs::symlink("/", root.join("slash")).unwrap();
        let canonical = std::fs::canonicalize(&root).unwrap();
        std::os::unix::fs::symlink(canonical.join("sub/a.txt"), root.join("absolute-in")).unwrap();
        let root = Root::new(std::fs::canonicalize(&root).unwrap()).unwrap();
        for wait in [Wait::Allowed, Wait::Never] {
            let open = |path: &str| match root.open(Path::new(path), wait) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    root.open(Path::new(path), Wait::Allowed).unwrap().is_some()
                }
                other => other.unwrap().is_some(),
            };
            assert!(open("sub/a.txt"));
            assert!(open("inside"));
            assert!(open("absolute-in"));
            assert!(open(""));
            assert!(!open("missing"));
            assert!(!open("relative-out"));
            assert!(!open("absolute-out"));
            assert!(!open("slash/etc/passwd"));
            assert!(!open("sub/a.txt/x"));
        }
        let fallback = root.open_resolving(Path::new("relative-out")).unwrap();
        assert!(fallback.is_none());
        assert!(root.open_resolving(Path::new("inside")).unwrap().is_some());
    }
}

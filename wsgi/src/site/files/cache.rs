//! The bytes of small files, kept between requests so that a file served again is not
//! read again: keyed by the file's identity (device and inode) and valid only while its
//! length, modification time and change time are those it had when read (the change time
//! moves on every write, to the nanosecond), which `fstat` on the file just opened tells.
//! At most [`CAPACITY`] bytes are kept; beyond that the cache starts again empty.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use bytes::Bytes;

/// The most bytes kept.
pub(crate) const CAPACITY: usize = 32 * 1024 * 1024;

/// What a file was when its bytes were read.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Version {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Version {
    fn of(meta: &Metadata) -> Version {
        Version {
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Small files' bytes, by device and inode, and their total size.
#[derive(Default)]
struct Kept {
    files: HashMap<(u64, u64), (Version, Bytes)>,
    size: usize,
}

/// Small files' bytes, by device and inode.
#[derive(Default)]
pub(crate) struct Contents {
    entries: Mutex<Kept>,
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contents").finish_non_exhaustive()
    }
}

impl Contents {
    /// The bytes of the file `meta` describes, if kept and still current.
    pub(crate) fn get(&self, meta: &Metadata) -> Option<Bytes> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (version, bytes) = entries.files.get(&(meta.dev(), meta.ino()))?;
        (*version == Version::of(meta)).then(|| bytes.clone())
    }

    /// Keeps `bytes`, read from the file `meta` describes.
    pub(crate) fn put(&self, meta: &Metadata, bytes: &Bytes) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let kept = &mut *entries;
        if kept.size + bytes.len() > CAPACITY {
            kept.files.clear();
            kept.size = 0;
        }
        let key = (meta.dev(), meta.ino());
        if let Some((_, old)) = kept.files.insert(key, (Version::of(meta), bytes.clone())) {
            kept.size -= old.len();
        }
        kept.size += bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_kept_file_is_current_until_it_is_written() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"first").unwrap();
        let contents = Contents::default();
        let meta = file.as_file().metadata().unwrap();
        assert!(contents.get(&meta).is_none());
        contents.put(&meta, &Bytes::from_static(b"first"));
        assert_eq!(
            contents.get(&file.as_file().metadata().unwrap()).unwrap(),
            "first"
        );
        // Same length, new bytes: the change time moved.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut again = std::fs::OpenOptions::new()
            .write(true)
            .open(file.path())
            .unwrap();
        again.write_all(b"other").unwrap();
        assert!(contents.get(&file.as_file().metadata().unwrap()).is_none());
    }
}

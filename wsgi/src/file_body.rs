//! A response body read from an open file without blocking the event loop on the disk:
//! each read of at most [`CHUNK`] bytes is first tried on the event loop with
//! `RWF_NOWAIT` (which takes the bytes only if they are in the page cache, else fails at
//! once), and otherwise runs on tokio's blocking pool, one read at a time, so memory stays
//! flat whatever the file's size.
//!
//! The body is exactly the bytes planned (the Content-Length already sent): a file that
//! shrinks fails the read that finds its end early, and a file whose length or
//! modification time has changed by the last read fails that read, so the connection is
//! aborted rather than a body of another length or of two versions looking whole.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::task::JoinHandle;

/// The most bytes one read takes: large enough that the hop to the blocking pool is
/// cheap beside the copy, small enough to keep memory flat.
pub(crate) const CHUNK: u64 = 128 * 1024;

/// Whether a file-system call may wait for the disk: never on the event loop, where a call
/// that would have to fails with [`io::ErrorKind::WouldBlock`] and is retried on the
/// blocking pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    Never,
    Allowed,
}

/// Reads exactly `len` bytes of `file` at `offset` into a new buffer (not zeroed first:
/// the kernel writes every byte kept). With [`Wait::Never`], only bytes already in the page
/// cache (`preadv2` with `RWF_NOWAIT`, Linux 4.14): anything less, or a kernel or file
/// system without it, is [`io::ErrorKind::WouldBlock`]. A file shorter than asked is
/// [`io::ErrorKind::UnexpectedEof`].
pub(crate) fn read_at(file: &File, len: usize, offset: u64, wait: Wait) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    let mut buffer: Vec<u8> = Vec::with_capacity(len);
    while buffer.len() < len {
        let spare = buffer.spare_capacity_mut();
        let at = (offset + (len - spare.len()) as u64) as libc::off_t;
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        };
        let flags = if wait == Wait::Never {
            libc::RWF_NOWAIT
        } else {
            0
        };
        #[allow(unsafe_code)]
        // SAFETY: `iov` describes the vector's spare capacity, which it owns and which
        // outlives the call; the kernel writes at most `iov_len` bytes into it.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, flags) };
        match read {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => {
                #[allow(unsafe_code)]
                // SAFETY: the kernel initialised the first `n` bytes of the spare capacity
                // (n <= iov_len, the spare capacity's length).
                unsafe {
                    buffer.set_len(buffer.len() + n as usize)
                };
            }
            _ => {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => {}
                    _ if wait == Wait::Never => return Err(io::ErrorKind::WouldBlock.into()),
                    _ => return Err(err),
                }
            }
        }
    }
    Ok(Bytes::from(buffer))
}

/// One part of the body: bytes already made (multipart headers), or a range of the file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Bytes(Bytes),
    Range { start: u64, len: u64 },
}

impl Part {
    /// The part's bytes in the body.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Part::Bytes(bytes) => bytes.len() as u64,
            Part::Range { len, .. } => *len,
        }
    }
}

/// The file as the response was planned from: its length and modification time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planned {
    pub(crate) len: u64,
    pub(crate) modified: Option<SystemTime>,
}

/// A body of `parts`, the ranges read from `file`.
#[derive(Debug)]
pub(crate) struct FileBody {
    file: Arc<File>,
    planned: Planned,
    parts: VecDeque<Part>,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    remaining: u64,
}

impl FileBody {
    pub(crate) fn new(file: Arc<File>, planned: Planned, parts: Vec<Part>) -> FileBody {
        let remaining = parts.iter().map(Part::len).sum();
        FileBody {
            file,
            planned,
            parts: parts.into_iter().filter(|p| p.len() > 0).collect(),
            reading: None,
            remaining,
        }
    }

    /// Bytes not yet yielded.
    pub(crate) fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next chunk, or None at the end. Errors say why the body cannot be completed.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            if let Some(reading) = &mut self.reading {
                let read = std::task::ready!(Pin::new(reading).poll(cx));
                self.reading = None;
                let chunk = read.unwrap_or_else(|err| Err(io::Error::other(err)));
                if let Ok(bytes) = &chunk {
                    self.remaining -= bytes.len() as u64;
                }
                return Poll::Ready(Some(chunk));
            }
            match self.parts.pop_front() {
                None => return Poll::Ready(None),
                Some(Part::Bytes(bytes)) => {
                    self.remaining -= bytes.len() as u64;
                    return Poll::Ready(Some(Ok(bytes)));
                }
                Some(Part::Range { start, len }) => {
                    let take = len.min(CHUNK);
                    if len > take {
                        self.parts.push_front(Part::Range {
                            start: start + take,
                            len: len - take,
                        });
                    }
                    let last = !self.parts.iter().any(|p| matches!(p, Part::Range { .. }));
                    let unchanged = last.then_some(self.planned);
                    match read(&self.file, start, take, unchanged, Wait::Never) {
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                        chunk => {
                            if let Ok(bytes) = &chunk {
                                self.remaining -= bytes.len() as u64;
                            }
                            return Poll::Ready(Some(chunk));
                        }
                    }
                    let file = self.file.clone();
                    self.reading = Some(tokio::task::spawn_blocking(move || {
                        read(&file, start, take, unchanged, Wait::Allowed)
                    }));
                }
            }
        }
    }
}

/// Reads exactly `len` bytes at `start`; with `unchanged`, then checks that the file still
/// has the planned length and modification time (`fstat` on the open file, which does not
/// wait for the disk).
fn read(
    file: &File,
    start: u64,
    len: u64,
    unchanged: Option<Planned>,
    wait: Wait,
) -> io::Result<Bytes> {
    let bytes = read_at(file, len as usize, start, wait).map_err(|err| {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::other("the file became shorter while it was being sent")
        } else {
            err
        }
    })?;
    if let Some(planned) = unchanged {
        let now = file.metadata()?;
        if now.len() != planned.len || now.modified().ok() != planned.modified {
            return Err(io::Error::other("the file changed while it was being sent"));
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    async fn collect(mut body: FileBody) -> (Vec<u8>, Option<String>) {
        let mut data = Vec::new();
        while let Some(chunk) = std::future::poll_fn(|cx| body.poll_chunk(cx)).await {
            match chunk {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(err) => return (data, Some(err.to_string())),
            }
        }
        (data, None)
    }

    fn planned(file: &File) -> Planned {
        let meta = file.metadata().unwrap();
        Planned {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    #[tokio::test]
    async fn ranges_and_bytes_come_out_in_order_across_chunks() {
        let mut temp = tempfile::tempfile().unwrap();
        let content: Vec<u8> = (0..(3 * CHUNK as usize + 7))
            .map(|i| (i % 251) as u8)
            .collect();
        temp.write_all(&content).unwrap();
        let plan = planned(&temp);
        let file = Arc::new(temp);
        let whole = FileBody::new(
            file.clone(),
            plan,
            vec![Part::Range {
                start: 0,
                len: content.len() as u64,
            }],
        );
        assert_eq!(whole.remaining(), content.len() as u64);
        assert_eq!(collect(whole).await, (content.clone(), None));
        let parts = FileBody::new(
            file,
            plan,
            vec![
                Part::Bytes(Bytes::from_static(b"<")),
                Part::Range { start: 5, len: 3 },
                Part::Bytes(Bytes::from_static(b">")),
            ],
        );
        assert_eq!(
            collect(parts).await.0,
            [&b"<"[..], &content[5..8], b">"].concat()
        );
    }

    #[tokio::test]
    async fn a_file_that_shrinks_or_changes_fails_the_body() {
        let mut temp = tempfile::tempfile().unwrap();
        temp.write_all(&vec![b'x'; 2 * CHUNK as usize]).unwrap();
        let plan = planned(&temp);
        let file = Arc::new(temp);
        let range = || {
            vec![Part::Range {
                start: 0,
                len: 2 * CHUNK,
            }]
        };
        // Shorter: the read that finds the end early fails.
        file.set_len(CHUNK + 10).unwrap();
        let (data, failed) = collect(FileBody::new(file.clone(), plan, range())).await;
        assert_eq!(data.len() as u64, CHUNK);
        assert!(failed.unwrap().contains("shorter"));
        // Longer: the planned bytes are there, but the last read sees the change.
        file.set_len(3 * CHUNK).unwrap();
        let (data, failed) = collect(FileBody::new(file, plan, range())).await;
        assert_eq!(data.len() as u64, CHUNK);
        assert!(failed.unwrap().contains("changed"));
    }
}

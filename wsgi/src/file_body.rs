//! A response body read from an open file, off the event loop: each read of at most
//! [`CHUNK`] bytes runs on tokio's blocking pool, one at a time, so memory stays flat
//! whatever the file's size.
//!
//! The body is exactly the bytes planned (the Content-Length already sent): a file that
//! shrinks fails the read that finds its end early, and a file whose length or
//! modification time has changed by the last read fails that read, so the connection is
//! aborted rather than a body of another length or of two versions looking whole.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;

/// The most bytes one read takes: large enough that the hop to the blocking pool is
/// cheap beside the copy, small enough to keep memory flat.
pub(crate) const CHUNK: u64 = 128 * 1024;

/// One part of the body: bytes already made (multipart headers), or a range of the file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Bytes(Bytes),
    Range { start: u64, len: u64 },
}

impl Part {
    fn len(&self) -> u64 {
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
                    let (file, planned) = (self.file.clone(), self.planned);
                    self.reading = Some(tokio::task::spawn_blocking(move || {
                        read(&file, start, take, last.then_some(planned))
                    }));
                }
            }
        }
    }
}

/// Reads exactly `len` bytes at `start`; with `unchanged`, then checks that the file still
/// has the planned length and modification time.
fn read(file: &File, start: u64, len: u64, unchanged: Option<Planned>) -> io::Result<Bytes> {
    let mut buffer = BytesMut::zeroed(len as usize);
    file.read_exact_at(&mut buffer, start).map_err(|err| {
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
    Ok(buffer.freeze())
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

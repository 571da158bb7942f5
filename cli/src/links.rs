//! The supervisor's side of its workers' links (the messages are listed in
//! [`crate::ready`]): one unix stream socket per worker, the parameters passed on to every
//! worker, metrics gathered from all of them, and the control channel the supervisor
//! serves for them all.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use torsion_wsgi::metrics::Snapshot;

/// How long `/metrics` and `/status` wait for each worker's report.
const REPORT_WAIT: Duration = Duration::from_secs(1);

/// What a worker's link reports to the supervisor's loop.
#[derive(Debug)]
pub(crate) enum Message {
    /// `ready`.
    Ready,
    /// `due`.
    Due,
}

/// One worker's link, as the registry holds it.
#[derive(Debug)]
struct Link {
    pid: i32,
    lines: mpsc::UnboundedSender<String>,
}

/// Every worker's link, shared by the supervisor's loop and its control channel.
#[derive(Clone, Debug, Default)]
pub(crate) struct Links {
    links: Arc<Mutex<BTreeMap<u64, Link>>>,
    /// Reports asked for and not all answered yet, by request number.
    pending: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Snapshot>>>>,
    next_request: Arc<AtomicU64>,
}

impl Links {
    /// A socket pair for worker `id` (process `pid` once started): the worker's end, to pass
    /// to it; the supervisor's end is read and written by tasks of its own, which send the
    /// worker's `ready` and `due` to `messages`. The first line the worker gets is the
    /// parameters.
    ///
    /// # Errors
    /// The system's error when the socket pair cannot be made.
    pub(crate) fn open(
        &self,
        id: u64,
        messages: impl Fn(u64, Message) + Send + 'static,
    ) -> std::io::Result<OwnedFd> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(ours)?;
        let (reading, mut writing) = stream.into_split();
        let (lines, mut outgoing) = mpsc::unbounded_channel::<String>();
        let _ = lines.send(params_line());
        tokio::spawn(async move {
            while let Some(line) = outgoing.recv().await {
                if writing.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let pending = self.pending.clone();
        tokio::spawn(async move {
            let mut reading = tokio::io::BufReader::new(reading).lines();
            while let Ok(Some(line)) = reading.next_line().await {
                let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                match word {
                    "ready" => messages(id, Message::Ready),
                    "due" => messages(id, Message::Due),
                    "report" => {
                        let Some((number, json)) = rest.split_once(' ') else {
                            continue;
                        };
                        let (Ok(number), Ok(snapshot)) = (
                            number.parse::<u64>(),
                            serde_json::from_str::<Snapshot>(json),
                        ) else {
                            continue;
                        };
                        let waiting = pending.lock().ok().and_then(|p| p.get(&number).cloned());
                        if let Some(waiting) = waiting {
                            let _ = waiting.send(snapshot);
                        }
                    }
                    other => tracing::debug!(worker = id, "unknown message from a worker: {other}"),
                }
            }
        });
        if let Ok(mut links) = self.links.lock() {
            links.insert(id, Link { pid: 0, lines });
        }
        Ok(OwnedFd::from(theirs))
    }

    /// Records worker `id`'s process.
    pub(crate) fn started(&self, id: u64, pid: i32) {
        if let Ok(mut links) = self.links.lock()
            && let Some(link) = links.get_mut(&id)
        {
            link.pid = pid;
        }
    }

    /// Forgets worker `id`, which has exited.
    pub(crate) fn forget(&self, id: u64) {
        if let Ok(mut links) = self.links.lock() {
            links.remove(&id);
        }
    }

    /// Sends `line` (without its newline) to worker `id`.
    pub(crate) fn send(&self, id: u64, line: &str) {
        if let Ok(links) = self.links.lock()
            && let Some(link) = links.get(&id)
        {
            let _ = link.lines.send(format!("{line}\n"));
        }
    }

    /// Sends the current parameters to every worker.
    pub(crate) fn broadcast_params(&self) {
        let line = params_line();
        if let Ok(links) = self.links.lock() {
            for link in links.values() {
                let _ = link.lines.send(line.clone());
            }
        }
    }

    /// The workers now, as `/status` lists them: `[{"id", "pid"}]`.
    pub(crate) fn workers(&self) -> serde_json::Value {
        let links = self.links.lock();
        let workers = links.iter().flat_map(|links| {
            links
                .iter()
                .map(|(id, link)| serde_json::json!({"id": id, "pid": link.pid}))
        });
        serde_json::Value::Array(workers.collect())
    }

    /// Every worker's metrics snapshot, summed: each is asked, and waited for up to a
    /// second (a worker that does not answer in time is left out); with this process's
    /// certificates and ACME renewals (the supervisor runs the managers).
    pub(crate) async fn gather(&self) -> Snapshot {
        let number = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (answers, mut received) = mpsc::unbounded_channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(number, answers);
        }
        let asked = {
            let links = self.links.lock().map(|l| {
                l.values()
                    .map(|link| link.lines.clone())
                    .collect::<Vec<_>>()
            });
            let links = links.unwrap_or_default();
            for link in &links {
                let _ = link.send(format!("report {number}\n"));
            }
            links.len()
        };
        let mut sum = Snapshot::default();
        let deadline = tokio::time::Instant::now() + REPORT_WAIT;
        for _ in 0..asked {
            match tokio::time::timeout_at(deadline, received.recv()).await {
                Ok(Some(snapshot)) => sum.add(&snapshot),
                _ => break,
            }
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&number);
        }
        let own = Snapshot {
            certificates: torsion_wsgi::metrics::certificates(),
            ..Snapshot::default()
        };
        sum.add(&own);
        sum
    }
}

/// `params JSON` and its newline, for the current parameters.
fn params_line() -> String {
    let values = &torsion_wsgi::params::params().snapshot().values;
    format!(
        "params {}\n",
        serde_json::to_string(values).unwrap_or_else(|_| "{}".into())
    )
}

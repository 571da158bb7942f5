//! `unix:` endpoints (Twisted's `UNIXServerEndpoint`), with Twisted's PID lock file.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::activation::{SocketDomain, inherited_socket_error, take_inherited};
use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::{Accept, Address, Connection, ConnectionInfo, Listener};
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tcp::{BACKLOG_EXPECTED, DEFAULT_BACKLOG, parse_backlog, parse_decimal};

const DEFAULT_MODE: u32 = 0o666;

/// A unix-domain stream endpoint: `unix:address[:mode=666][:backlog=1024][:lockfile=1]`.
///
/// Follows Twisted's `unix:` string parser: positional order address, mode, backlog,
/// lockfile; `mode` in octal (`660`, `0660` and `0o660` alike), applied to the socket file
/// with chmod after binding; `lockfile` on by default, as Twisted's parser has it.
///
/// With the lock file, `<address>.lock` is a symbolic link whose target is the owning
/// process's PID, the layout of Twisted's `FilesystemLock`, so Twisted and Torsion servers
/// respect each other's locks. A lock whose process is gone is stale and is taken over.
///
/// Unlike Twisted, an existing socket file is checked whether or not the lock file is
/// used: if a process still accepts connections on it, listening fails with
/// [`Error::AddressInUse`]; if nothing answers, the file is a leftover and is replaced.
/// A path that exists and is not a socket is never removed. Dropping the [`Listener`]
/// removes the socket file (if it is still the one this listener made) and the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixEndpoint {
    path: PathBuf,
    mode: u32,
    backlog: u32,
    lockfile: bool,
}

impl UnixEndpoint {
    /// `unix:path` with mode 666, backlog 50 and the lock file.
    pub fn new(path: impl Into<PathBuf>) -> UnixEndpoint {
        UnixEndpoint {
            path: path.into(),
            mode: DEFAULT_MODE,
            backlog: DEFAULT_BACKLOG,
            lockfile: true,
        }
    }

    /// Sets the socket file's permission bits, such as `0o660` (builder style).
    pub fn with_mode(mut self, mode: u32) -> UnixEndpoint {
        self.mode = mode & 0o7777;
        self
    }

    /// Sets the listen backlog, in pending connections (builder style).
    pub fn with_backlog(mut self, backlog: u32) -> UnixEndpoint {
        self.backlog = backlog.min(i32::MAX as u32);
        self
    }

    /// Turns the `<path>.lock` PID lock on or off (builder style).
    pub fn with_lockfile(mut self, lockfile: bool) -> UnixEndpoint {
        self.lockfile = lockfile;
        self
    }

    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The permission bits applied to the socket file.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The listen backlog, in pending connections.
    pub fn backlog(&self) -> u32 {
        self.backlog
    }

    /// Whether `<path>.lock` is kept while listening.
    pub fn lockfile(&self) -> bool {
        self.lockfile
    }

    fn lock_path(&self) -> PathBuf {
        let mut lock = self.path.clone().into_os_string();
        lock.push(".lock");
        PathBuf::from(lock)
    }

    fn listen_error(&self, action: String, source: io::Error) -> Error {
        let hint = match source.kind() {
            io::ErrorKind::InvalidInput if self.path.as_os_str().len() >= 108 => {
                "; unix socket paths must be shorter than 108 bytes".to_owned()
            }
            io::ErrorKind::NotFound => "; the directory does not exist".to_owned(),
            io::ErrorKind::PermissionDenied => {
                "; this user may not create files in that directory".to_owned()
            }
            _ => String::new(),
        };
        Error::Listen {
            endpoint: self.descriptor().to_string(),
            action,
            hint,
            source,
        }
    }

    fn in_use(&self, path: &Path, reason: String) -> Error {
        Error::AddressInUse {
            endpoint: self.descriptor().to_string(),
            path: path.to_owned(),
            reason,
        }
    }

    fn bind(&self) -> Result<Listener> {
        // The guard releases the lock (and later the socket file) on every early return.
        let mut guard = Cleanup {
            socket: None,
            lock: if self.lockfile {
                Some(self.acquire_lock()?)
            } else {
                None
            },
        };
        self.remove_stale_socket()?;
        let path = &self.path;
        let shown = path.display();
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)
            .map_err(|e| self.listen_error("create socket".into(), e))?;
        let address =
            SockAddr::unix(path).map_err(|e| self.listen_error(format!("use path {shown}"), e))?;
        socket
            .bind(&address)
            .map_err(|e| self.listen_error(format!("bind {shown}"), e))?;
        // From here on the file exists and is ours: the guard removes it on any failure.
        let metadata = std::fs::symlink_metadata(path)
            .map_err(|e| self.listen_error(format!("stat {shown}"), e))?;
        guard.socket = Some((path.clone(), metadata.dev(), metadata.ino()));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(self.mode))
            .map_err(|e| self.listen_error(format!("chmod {:o} {shown}", self.mode), e))?;
        socket
            .listen(self.backlog as i32)
            .map_err(|e| self.listen_error(format!("listen on {shown}"), e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| self.listen_error("set non-blocking".into(), e))?;
        let listener = tokio::net::UnixListener::from_std(socket.into())
            .map_err(|e| self.listen_error("register with the runtime".into(), e))?;
        let local = Address::Unix(Some(path.clone()));
        Ok(Listener::new(
            self.descriptor().to_string(),
            local.clone(),
            UnixAccept {
                listener,
                local,
                _cleanup: guard,
            },
        ))
    }

    /// Takes `<path>.lock` the way Twisted's `FilesystemLock` does: an atomic symlink to our
    /// PID; an existing link whose PID is dead is stale and is replaced.
    fn acquire_lock(&self) -> Result<PathBuf> {
        let lock = self.lock_path();
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        // Two rounds: the second follows the removal of a stale lock. Losing a race to
        // another starting server ends in the "held by" error on the next round.
        for _ in 0..3 {
            match std::os::unix::fs::symlink(pid.to_string(), &lock) {
                Ok(()) => return Ok(lock),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(
                        self.listen_error(format!("create lock file {}", lock.display()), e)
                    );
                }
            }
            let target = match std::fs::read_link(&lock) {
                Ok(target) => target,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(self.in_use(
                        &lock,
                        format!("exists and is not a lock left by Twisted or Torsion ({e}); remove it if no server uses it"),
                    ));
                }
            };
            let owner = target
                .to_str()
                .and_then(|t| t.parse::<i32>().ok())
                .filter(|pid| *pid > 0)
                .and_then(rustix::process::Pid::from_raw);
            let Some(owner) = owner else {
                return Err(self.in_use(
                    &lock,
                    format!("lock file points to {:?}, which is not a process ID; remove it if no server uses it", target),
                ));
            };
            // A lock naming this very process was left by an earlier run with the same
            // process ID (PID 1 in a restarted container); the socket probe that follows
            // still refuses a socket this process serves.
            let ours = owner.as_raw_nonzero().get() == pid;
            let stale =
                ours || rustix::process::test_kill_process(owner) == Err(rustix::io::Errno::SRCH);
            match stale {
                // Ours from an earlier run, or ESRCH: no such process.
                true => {
                    tracing::info!(lock = %lock.display(), pid = owner.as_raw_nonzero().get(), "removing stale lock file");
                    match std::fs::remove_file(&lock) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(self.listen_error(
                                format!("remove stale lock file {}", lock.display()),
                                e,
                            ));
                        }
                    }
                }
                // Alive (EPERM means alive but another user's).
                false => {
                    return Err(self.in_use(
                        &lock,
                        format!("locked by running process {}", owner.as_raw_nonzero().get()),
                    ));
                }
            }
        }
        Err(self.in_use(
            &lock,
            "the lock file keeps reappearing; another server is starting".into(),
        ))
    }

    /// Removes a socket file nobody accepts on; refuses a live socket or a non-socket.
    fn remove_stale_socket(&self) -> Result<()> {
        let path = &self.path;
        let metadata = match std::fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.listen_error(format!("stat {}", path.display()), e)),
        };
        if !metadata.file_type().is_socket() {
            return Err(self.in_use(
                path,
                "exists and is not a socket; refusing to replace it".to_owned(),
            ));
        }
        // A non-blocking probe: a hung server with a full backlog answers EAGAIN at once
        // instead of holding start-up forever, and counts as live.
        let probe = Socket::new(Domain::UNIX, Type::STREAM, None)
            .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
            .and_then(|socket| SockAddr::unix(path).map(|address| (socket, address)))
            .and_then(|(socket, address)| socket.connect(&address));
        let probe_failed = |e: io::Error| Error::Listen {
            endpoint: self.descriptor().to_string(),
            action: format!("check whether a server still uses {}", path.display()),
            hint: String::new(),
            source: e,
        };
        match probe {
            Ok(()) => Err(self.in_use(
                path,
                "another process is accepting connections on this socket".to_owned(),
            )),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) =>
            {
                Err(self.in_use(
                    path,
                    "a process holds this socket but is not accepting connections (its queue is full)".to_owned(),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %path.display(), "replacing stale socket file");
                match std::fs::remove_file(path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(probe_failed(e)),
                }
            }
            Err(e) => Err(probe_failed(e)),
        }
    }
}

/// Removes the socket file and the lock file when the listener goes away.
struct Cleanup {
    /// The socket's path with the device and inode it had when we bound it, so that a file
    /// some later server put at the same path is left alone.
    socket: Option<(PathBuf, u64, u64)>,
    lock: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((path, dev, ino)) = &self.socket
            && let Ok(metadata) = std::fs::symlink_metadata(path)
            && metadata.dev() == *dev
            && metadata.ino() == *ino
        {
            let _ = std::fs::remove_file(path);
        }
        if let Some(lock) = &self.lock {
            let ours = rustix::process::getpid().as_raw_nonzero().get().to_string();
            if std::fs::read_link(lock).is_ok_and(|target| target.as_os_str() == ours.as_str()) {
                let _ = std::fs::remove_file(lock);
            }
        }
    }
}

struct UnixAccept {
    listener: tokio::net::UnixListener,
    local: Address,
    _cleanup: Cleanup,
}

/// A listener over an inherited listening unix socket (from systemd or a supervisor, which
/// made the file and removes it): nothing to remove on drop.
///
/// # Errors
/// [`Error::Listen`] when the socket cannot be made non-blocking, named, or registered with
/// the runtime.
pub(crate) fn adopt(endpoint: String, fd: std::os::fd::OwnedFd) -> Result<Listener> {
    let io_error = |action: &str, source| inherited_socket_error(&endpoint, action, source);
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(|e| io_error("set non-blocking", e))?;
    let local = listener
        .local_addr()
        .map(|a| Address::Unix(a.as_pathname().map(Into::into)))
        .map_err(|e| io_error("read the address of", e))?;
    let listener = tokio::net::UnixListener::from_std(listener)
        .map_err(|e| io_error("register with the runtime", e))?;
    Ok(adopted(endpoint, local, listener))
}

/// A listener over a unix socket someone else made: nothing to remove on drop.
fn adopted(endpoint: String, local: Address, listener: tokio::net::UnixListener) -> Listener {
    Listener::new(
        endpoint,
        local.clone(),
        UnixAccept {
            listener,
            local,
            _cleanup: Cleanup {
                socket: None,
                lock: None,
            },
        },
    )
}

impl Accept for UnixAccept {
    fn socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(&self.listener))
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>> {
        let (stream, peer) = std::task::ready!(self.listener.poll_accept(cx))?;
        let peer = Address::Unix(peer.as_pathname().map(Path::to_path_buf));
        Poll::Ready(Ok(Connection::unix(
            stream,
            ConnectionInfo::new(self.local.clone(), peer),
        )))
    }
}

impl ServerEndpoint for UnixEndpoint {
    fn descriptor(&self) -> Descriptor {
        let mut d = Descriptor::new("unix").with_arg(self.path.to_string_lossy());
        if self.mode != DEFAULT_MODE {
            d = d.with_kwarg("mode", format!("{:o}", self.mode));
        }
        if self.backlog != DEFAULT_BACKLOG {
            d = d.with_kwarg("backlog", self.backlog.to_string());
        }
        if !self.lockfile {
            d = d.with_kwarg("lockfile", "0");
        }
        d
    }

    fn sockets(&self) -> Vec<Endpoint> {
        vec![Endpoint::new(self.clone())]
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move {
            // A worker's socket, made (and removed at the end) by its supervisor.
            let endpoint = self.descriptor().to_string();
            match take_inherited(&endpoint, SocketDomain::Unix) {
                Ok(Some(fd)) => return adopt(endpoint, fd),
                Ok(None) => {}
                Err(reason) => return Err(Error::Systemd { endpoint, reason }),
            }
            self.bind()
        })
    }
}

/// The `unix:` kind.
pub(crate) struct UnixKind;

impl EndpointKind for UnixKind {
    fn prefix(&self) -> &str {
        "unix"
    }

    fn usage(&self) -> &str {
        "unix:address[:mode=666][:backlog=1024][:lockfile=1]"
    }

    fn parse(&self, args: Arguments, _: &Registry) -> Result<Endpoint> {
        let bound = args.bind(&["address", "mode", "backlog", "lockfile"])?;
        let address = bound.required("address")?;
        if address.is_empty() {
            return Err(bound.invalid(
                "address",
                address,
                "the path of the socket file, such as /run/app.sock",
            ));
        }
        let mode = bound.parse_or(
            "mode",
            DEFAULT_MODE,
            "permission bits in octal from 0 to 7777, such as 660",
            parse_mode,
        )?;
        let backlog =
            bound.parse_or("backlog", DEFAULT_BACKLOG, BACKLOG_EXPECTED, parse_backlog)?;
        // Twisted reads lockfile with bool(int(...)): any non-zero number turns it on.
        let lockfile = bound.parse_or(
            "lockfile",
            true,
            "0 (no lock file) or 1 (keep <address>.lock with the PID)",
            |text| parse_decimal(text).map(|n| n != 0),
        )?;
        Ok(Endpoint::new(
            UnixEndpoint::new(address)
                .with_mode(mode)
                .with_backlog(backlog)
                .with_lockfile(lockfile),
        ))
    }
}

/// Octal permission bits as Python's `int(text, 8)` reads them: `660`, `0660`, `0o660`.
fn parse_mode(text: &str) -> Option<u32> {
    let text = text.trim();
    let digits = text
        .strip_prefix("0o")
        .or_else(|| text.strip_prefix("0O"))
        .unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(text: &str) -> UnixEndpoint {
        Endpoint::parse(text)
            .unwrap()
            .downcast_ref::<UnixEndpoint>()
            .unwrap()
            .clone()
    }

    #[test]
    fn twisted_unix_examples() {
        let e = unix("unix:/var/foo/bar:backlog=7:mode=0123:lockfile=1");
        assert_eq!(
            (e.path(), e.mode(), e.backlog(), e.lockfile()),
            (Path::new("/var/foo/bar"), 0o123, 7, true)
        );
        let e = unix("unix:/var/run/finger");
        assert_eq!((e.mode(), e.backlog(), e.lockfile()), (0o666, 1024, true));
        assert_eq!(unix("unix:/var/run/finger:mode=0660").mode(), 0o660);
        assert_eq!(unix("unix:/var/run/finger:mode=660").mode(), 0o660);
        assert!(!unix("unix:/var/run/finger:lockfile=0").lockfile());
        assert_eq!(
            unix(r"unix:foo\:bar\=baz\:qux\\").path(),
            Path::new(r"foo:bar=baz:qux\")
        );
        assert_eq!(unix("unix:address=foo=bar").path(), Path::new("foo=bar"));
        assert_eq!(
            unix("unix:address=/var/run/web.sock:lockfile=1").path(),
            Path::new("/var/run/web.sock")
        );
        // Positional order: address, mode, backlog, lockfile.
        let e = unix("unix:/s:600:10:0");
        assert_eq!((e.mode(), e.backlog(), e.lockfile()), (0o600, 10, false));
        assert_eq!(unix("unix:/s:mode=0o640").mode(), 0o640);
    }

    #[test]
    fn canonical_form() {
        for (text, canonical) in [
            (
                "UNIX:/run/app.sock:mode=0666:lockfile=1",
                "unix:/run/app.sock",
            ),
            (
                "unix:/var/foo/bar:backlog=7:mode=0123:lockfile=1",
                "unix:/var/foo/bar:mode=123:backlog=7",
            ),
            (
                r"unix:address=/tmp/a\:b=c:lockfile=0",
                r"unix:/tmp/a\:b\=c:lockfile=0",
            ),
        ] {
            let endpoint = Endpoint::parse(text).unwrap();
            assert_eq!(endpoint.to_string(), canonical, "{text}");
            assert_eq!(Endpoint::parse(canonical).unwrap(), endpoint);
        }
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        let err = Endpoint::parse("unix:/s:mode=999").unwrap_err();
        assert!(
            err.to_string()
                .contains("mode \"999\" is not valid; expected permission bits in octal"),
            "{err}"
        );
        let err = Endpoint::parse("unix:/s:lockfile=yes").unwrap_err();
        assert!(
            err.to_string()
                .contains("lockfile \"yes\" is not valid; expected 0"),
            "{err}"
        );
        let err = Endpoint::parse("unix:").unwrap_err();
        assert!(
            err.to_string().contains("address \"\" is not valid"),
            "{err}"
        );
        let err = Endpoint::parse("unix:mode=660").unwrap_err();
        assert!(
            matches!(err, Error::MissingArgument { ref argument, .. } if argument == "address"),
            "{err}"
        );
        let err = Endpoint::parse("unix:/s:lock=1").unwrap_err();
        assert!(
            err.to_string()
                .ends_with("valid keywords: address, mode, backlog, lockfile"),
            "{err}"
        );
    }
}

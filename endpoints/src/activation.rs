//! Listening sockets a process inherits: from systemd's socket activation
//! (`sd_listen_fds(3)`), or from a Torsion supervisor that opened them for its workers.
//! The table of what the environment offers is read once per process; each socket is
//! taken once. Below the kinds that adopt them: `systemd:` by index or name, and `tcp:`,
//! `tcp6:` and `unix:` by their own descriptor when a supervisor passed it.

use std::fmt;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use rustix::net::{AddressFamily, SocketType};

/// Whether this process's endpoints run their background work themselves; see
/// [`background_elsewhere`].
static BACKGROUND_HERE: AtomicBool = AtomicBool::new(true);

/// Tells this process's endpoints that another process runs their background work
/// ([`ServerEndpoint::background`](crate::plugin::ServerEndpoint::background): the ACME
/// manager of `txacme:`, `le:` and `lets:`), as a supervisor does for its workers: the
/// listeners opened afterwards start none of it, and only serve what it produces (the
/// certificates and the challenge answers it writes into the directory). For the worker
/// processes of a supervisor; a process serving alone never calls it.
pub fn background_elsewhere() {
    BACKGROUND_HERE.store(false, Ordering::Relaxed);
}

/// Whether listeners of this process start their endpoint's background work: true unless
/// [`background_elsewhere`] was called. (Only the ACME kinds have such work.)
#[cfg_attr(not(feature = "acme"), allow(dead_code))]
pub(crate) fn background_here() -> bool {
    BACKGROUND_HERE.load(Ordering::Relaxed)
}

/// The first inherited descriptor, `SD_LISTEN_FDS_START`.
const LISTEN_FDS_START: RawFd = 3;

/// The address family an inherited socket must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketDomain {
    /// `INET`: a TCP socket. An IPv6 socket is accepted too, since systemd's
    /// `ListenStream=80` makes a dual-stack IPv6 socket.
    Inet,
    /// `INET6`: an IPv6 TCP socket.
    Inet6,
    /// `UNIX`: a unix-domain stream socket.
    Unix,
}

impl fmt::Display for SocketDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocketDomain::Inet => "INET",
            SocketDomain::Inet6 => "INET6",
            SocketDomain::Unix => "UNIX",
        })
    }
}

/// Which inherited socket to take.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SocketSelector {
    /// By 0-based position among the inherited sockets (`index=0` is descriptor 3).
    Index(usize),
    /// By the name systemd gives in `LISTEN_FDNAMES` (the socket unit's
    /// `FileDescriptorName=`, by default the unit's name); the first socket with the name
    /// that no other listener has taken.
    Name(String),
}

/// What the environment says about inherited sockets, read once per process.
struct Activation {
    /// Why no sockets are available, when none are.
    problem: Option<String>,
    count: usize,
    names: Option<Vec<String>>,
    taken: Vec<bool>,
}

impl Activation {
    fn from_env() -> Activation {
        let var = |name| std::env::var(name).ok();
        let none = |problem: String| Activation {
            problem: Some(problem),
            count: 0,
            names: None,
            taken: Vec::new(),
        };
        let ours = rustix::process::getpid().as_raw_nonzero().get();
        let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
        match var("LISTEN_PID") {
            // A supervisor cannot know its worker's PID before starting it, so it names
            // itself in SUPERVISOR_PID_VAR; only its own children take the sockets.
            None if var(SUPERVISOR_PID_VAR)
                .is_some_and(|pid| pid.trim().parse::<i32>().ok() == Some(parent)) => {}
            None => {
                return none(
                    "LISTEN_PID is not set: this process was not started by systemd socket activation (a .socket unit)".into(),
                );
            }
            Some(pid) if pid.trim().parse::<i32>().ok() != Some(ours) => {
                return none(format!(
                    "LISTEN_PID is {pid:?} but this process is {ours}: the sockets were passed to another process"
                ));
            }
            Some(_) => {}
        }
        let count = match var("LISTEN_FDS").as_deref().map(decimal) {
            // libsystemd's bound: descriptors are ints, starting at 3.
            Some(Some(count)) if count <= (i32::MAX - LISTEN_FDS_START) as u64 => count as usize,
            Some(Some(_)) => {
                return none("LISTEN_FDS is larger than any number of descriptors".into());
            }
            Some(None) => return none("LISTEN_FDS is not a number of descriptors".into()),
            None => return none("LISTEN_PID is set but LISTEN_FDS is not".into()),
        };
        let names = var("LISTEN_FDNAMES")
            .filter(|names| !names.is_empty())
            .map(|names| names.split(':').map(str::to_owned).collect());
        Activation {
            problem: None,
            count,
            names,
            taken: vec![false; count],
        }
    }

    fn find(&self, selector: &SocketSelector) -> Result<usize, String> {
        if let Some(problem) = &self.problem {
            return Err(problem.clone());
        }
        match selector {
            SocketSelector::Index(index) if *index < self.count => Ok(*index),
            SocketSelector::Index(index) => Err(format!(
                "index {index} is out of range: LISTEN_FDS passes {} socket(s), so index must be below {}",
                self.count, self.count
            )),
            SocketSelector::Name(name) => {
                let Some(names) = &self.names else {
                    return Err(format!(
                        "LISTEN_FDNAMES is not set, so no socket is named {name:?}; use index= instead"
                    ));
                };
                if names.len() != self.count {
                    return Err(format!(
                        "LISTEN_FDNAMES names {} socket(s) but LISTEN_FDS passes {}; use index= instead",
                        names.len(),
                        self.count
                    ));
                }
                // The first socket with the name that no listener has taken yet, so that
                // `name=web` twice takes both sockets of a unit with two ListenStream= lines
                // (Twisted keeps only the last socket of each name).
                if let Some(free) = (0..self.count).find(|&i| names[i] == *name && !self.taken[i]) {
                    return Ok(free);
                }
                if names.iter().any(|n| n == name) {
                    return Err(format!(
                        "every inherited socket named {name:?} is already used by another listener"
                    ));
                }
                names.iter().position(|n| n == name).ok_or_else(|| {
                    format!(
                        "no inherited socket is named {name:?}; LISTEN_FDNAMES has: {}",
                        names.join(", ")
                    )
                })
            }
        }
    }
}

/// The variable a supervisor sets to its own PID when it passes listening sockets to the
/// worker processes it starts (with `LISTEN_FDS` and `LISTEN_FDNAMES`, as systemd does, but
/// without `LISTEN_PID`, which it cannot know before the worker exists). A process takes
/// the sockets only when this is its parent's PID, so the worker's own children, which
/// inherit the environment, do not.
pub const SUPERVISOR_PID_VAR: &str = "TORSION_SUPERVISOR_PID";

/// The `LISTEN_FDNAMES` name under which a supervisor passes the socket of the socket-level
/// endpoint (`tcp:`, `tcp6:`, `unix:`, `systemd:`) whose canonical descriptor is
/// `descriptor`: the descriptor with `%` and `:` percent-encoded, since names are
/// colon-separated. A worker's endpoint of the same descriptor adopts that socket instead
/// of binding its own (see [`crate::Endpoint::sockets`]).
pub fn inherited_name(descriptor: &str) -> String {
    descriptor.replace('%', "%25").replace(':', "%3A")
}

/// The socket inherited under the name of `descriptor` (see [`inherited_name`]), if this
/// process was given one; `Ok(None)` when it was not, so that the endpoint binds its own.
///
/// # Errors
/// Why the named descriptor cannot be taken (see [`take`]).
pub(crate) fn take_inherited(
    descriptor: &str,
    domain: SocketDomain,
) -> std::result::Result<Option<OwnedFd>, String> {
    let name = inherited_name(descriptor);
    let offered = activation().lock().is_ok_and(|activation| {
        activation.problem.is_none()
            && activation.names.as_ref().is_some_and(|names| {
                names.len() == activation.count
                    && names
                        .iter()
                        .zip(&activation.taken)
                        .any(|(n, taken)| *n == name && !taken)
            })
    });
    if !offered {
        return Ok(None);
    }
    take(&SocketSelector::Name(name), domain).map(Some)
}

fn activation() -> &'static Mutex<Activation> {
    static ACTIVATION: OnceLock<Mutex<Activation>> = OnceLock::new();
    ACTIVATION.get_or_init(|| Mutex::new(Activation::from_env()))
}

/// Takes the inherited socket `selector` picks, which must be a listening stream socket of
/// `domain`: its descriptor, close-on-exec from now on. Each socket is taken once in a
/// process. A descriptor that fails a check is left open, to whatever owns it.
///
/// # Errors
/// Why no socket can be taken, in one sentence for [`Error::Systemd`].
pub(crate) fn take(
    selector: &SocketSelector,
    domain: SocketDomain,
) -> std::result::Result<OwnedFd, String> {
    let activation = activation();
    let mut activation = activation
        .lock()
        .map_err(|_| "the socket-activation table is unusable after a panic".to_owned())?;
    let index = activation.find(selector)?;
    if activation.taken[index] {
        return Err(format!(
            "inherited socket {index} (descriptor {}) is already used by another listener",
            LISTEN_FDS_START + index as RawFd
        ));
    }
    // Bounded by LISTEN_FDS, itself at most i32::MAX - 3 (as libsystemd checks).
    let raw = LISTEN_FDS_START + index as RawFd;
    if std::path::Path::new("/proc/self/fd").is_dir()
        && std::fs::symlink_metadata(format!("/proc/self/fd/{raw}")).is_err()
    {
        return Err(format!(
            "LISTEN_FDS promises descriptor {raw}, but it is not open in this process"
        ));
    }
    // Everything is checked on a borrow: a descriptor that turns out not to be the
    // inherited socket is left open, to whatever owns it.
    #[allow(unsafe_code)]
    // SAFETY: the descriptor is open (checked above where /proc exists; otherwise the
    // socket-activation protocol, with LISTEN_PID checked when the table was read,
    // promises descriptors 3 .. 3+LISTEN_FDS to this process), and the borrow does not
    // outlive this call, which holds the activation table's lock throughout.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let what = |e: rustix::io::Errno| format!("descriptor {raw} is not usable: {e}");
    if rustix::net::sockopt::socket_type(borrowed).map_err(what)? != SocketType::STREAM {
        return Err(format!("descriptor {raw} is not a stream socket"));
    }
    let family = rustix::net::sockopt::socket_domain(borrowed).map_err(what)?;
    let family_name = match family {
        AddressFamily::INET => "INET".to_owned(),
        AddressFamily::INET6 => "INET6".to_owned(),
        AddressFamily::UNIX => "UNIX".to_owned(),
        other => format!("address family {}", other.as_raw()),
    };
    let fits = match domain {
        SocketDomain::Inet => family == AddressFamily::INET || family == AddressFamily::INET6,
        SocketDomain::Inet6 => family == AddressFamily::INET6,
        SocketDomain::Unix => family == AddressFamily::UNIX,
    };
    if !fits {
        return Err(format!(
            "descriptor {raw} is a socket of {family_name}, not {}; use domain={family_name}",
            domain
        ));
    }
    if !rustix::net::sockopt::socket_acceptconn(borrowed).map_err(what)? {
        return Err(format!(
            "descriptor {raw} is not listening (the socket unit needs ListenStream= and Accept=no)"
        ));
    }
    activation.taken[index] = true;
    #[allow(unsafe_code)]
    // SAFETY: the descriptor is open and is the listening socket systemd passed (checked
    // above); the `taken` table, updated under the same lock, ensures that this crate
    // makes only one owner for it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    drop(activation);
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(what)?;
    Ok(fd)
}

/// The error of `action` ("set non-blocking") failing on the inherited socket of the
/// listener for `endpoint`.
pub(crate) fn inherited_socket_error(
    endpoint: &str,
    action: &str,
    source: std::io::Error,
) -> crate::error::Error {
    crate::error::Error::Listen {
        endpoint: endpoint.to_owned(),
        action: format!("{action} the inherited socket"),
        hint: String::new(),
        source,
    }
}

/// A count in decimal digits (surrounding spaces allowed), as `LISTEN_FDS` gives it.
fn decimal(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selecting_among_inherited_sockets() {
        let table = Activation {
            problem: None,
            count: 3,
            names: Some(vec!["a".into(), "web".into(), "web".into()]),
            taken: vec![false; 3],
        };
        assert_eq!(table.find(&SocketSelector::Index(2)), Ok(2));
        assert_eq!(table.find(&SocketSelector::Name("web".into())), Ok(1));
        let err = table.find(&SocketSelector::Index(3)).unwrap_err();
        assert!(err.contains("index must be below 3"), "{err}");
        let err = table.find(&SocketSelector::Name("api".into())).unwrap_err();
        assert!(err.contains("LISTEN_FDNAMES has: a, web, web"), "{err}");
        let unnamed = Activation {
            names: None,
            ..table
        };
        assert!(
            unnamed
                .find(&SocketSelector::Name("web".into()))
                .unwrap_err()
                .contains("use index=")
        );
    }

    #[test]
    fn a_supervisor_names_sockets_by_their_descriptors() {
        assert_eq!(
            inherited_name("tcp:8080:interface=127.0.0.1"),
            "tcp%3A8080%3Ainterface=127.0.0.1"
        );
        assert_eq!(
            inherited_name(r"unix:/run/a%b\:c"),
            r"unix%3A/run/a%25b\%3Ac"
        );
        assert!(!inherited_name("tcp6:443:interface=\\:\\:1").contains(':'));
    }
}

//! `systemd:` endpoints: listening sockets inherited by socket activation
//! (`sd_listen_fds(3)`), as Twisted's `systemd:` plugin adopts them.

use std::fmt;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

use rustix::net::{AddressFamily, SocketType};

use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::{Address, Listener};
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tcp::{TcpAccept, parse_decimal};

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

/// A socket handed over by systemd: `systemd:domain=INET|INET6|UNIX:index=N` or
/// `systemd:domain=...:name=NAME`.
///
/// Follows Twisted's `systemd:` endpoint: positional order domain, index, name; exactly
/// one of index and name. The environment is read once per process, following
/// `sd_listen_fds(3)`: `LISTEN_PID` must be this process's ID, `LISTEN_FDS` counts the
/// sockets from descriptor 3 on, and `LISTEN_FDNAMES` (colon-separated) names them.
/// Differences from Twisted: `domain` is matched case-insensitively; `index=` works
/// without `LISTEN_FDNAMES`; the socket's type and family are checked, so that a wrong
/// `domain` or a socket that is not listening is reported at start-up; and each inherited
/// socket can be taken by one listener only, and `name=` takes the first socket of that
/// name not yet taken (Twisted takes the last one); a descriptor that fails a check is left
/// open. The environment is left as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemdEndpoint {
    domain: SocketDomain,
    selector: SocketSelector,
}

impl SystemdEndpoint {
    /// The inherited socket chosen by `selector`, which must be of `domain`.
    pub fn new(domain: SocketDomain, selector: SocketSelector) -> SystemdEndpoint {
        SystemdEndpoint { domain, selector }
    }

    /// The address family required.
    pub fn domain(&self) -> SocketDomain {
        self.domain
    }

    /// Which inherited socket is taken.
    pub fn selector(&self) -> &SocketSelector {
        &self.selector
    }

    fn error(&self, reason: String) -> Error {
        Error::Systemd {
            endpoint: self.descriptor().to_string(),
            reason,
        }
    }

    fn adopt(&self) -> Result<Listener> {
        let endpoint = self.descriptor().to_string();
        let activation = activation();
        let mut activation = activation.lock().map_err(|_| {
            self.error("the socket-activation table is unusable after a panic".into())
        })?;
        let index = activation
            .find(&self.selector)
            .map_err(|reason| self.error(reason))?;
        if activation.taken[index] {
            return Err(self.error(format!(
                "inherited socket {index} (descriptor {}) is already used by another listener",
                LISTEN_FDS_START + index as RawFd
            )));
        }
        // Bounded by LISTEN_FDS, itself at most i32::MAX - 3 (as libsystemd checks).
        let raw = LISTEN_FDS_START + index as RawFd;
        if std::path::Path::new("/proc/self/fd").is_dir()
            && std::fs::symlink_metadata(format!("/proc/self/fd/{raw}")).is_err()
        {
            return Err(self.error(format!(
                "LISTEN_FDS promises descriptor {raw}, but it is not open in this process"
            )));
        }
        // Everything is checked on a borrow: a descriptor that turns out not to be the
        // inherited socket is left open, to whatever owns it.
        #[allow(unsafe_code)]
        // SAFETY: the descriptor is open (checked above where /proc exists; otherwise the
        // socket-activation protocol, with LISTEN_PID checked when the table was read,
        // promises descriptors 3 .. 3+LISTEN_FDS to this process), and the borrow does not
        // outlive this call, which holds the activation table's lock throughout.
        let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
        let what =
            |e: rustix::io::Errno| self.error(format!("descriptor {raw} is not usable: {e}"));
        if rustix::net::sockopt::socket_type(borrowed).map_err(what)? != SocketType::STREAM {
            return Err(self.error(format!("descriptor {raw} is not a stream socket")));
        }
        let family = rustix::net::sockopt::socket_domain(borrowed).map_err(what)?;
        let family_name = match family {
            AddressFamily::INET => "INET".to_owned(),
            AddressFamily::INET6 => "INET6".to_owned(),
            AddressFamily::UNIX => "UNIX".to_owned(),
            other => format!("address family {}", other.as_raw()),
        };
        let fits = match self.domain {
            SocketDomain::Inet => family == AddressFamily::INET || family == AddressFamily::INET6,
            SocketDomain::Inet6 => family == AddressFamily::INET6,
            SocketDomain::Unix => family == AddressFamily::UNIX,
        };
        if !fits {
            return Err(self.error(format!(
                "descriptor {raw} is a socket of {family_name}, not {}; use domain={family_name}",
                self.domain
            )));
        }
        if !rustix::net::sockopt::socket_acceptconn(borrowed).map_err(what)? {
            return Err(self.error(format!(
                "descriptor {raw} is not listening (the socket unit needs ListenStream= and Accept=no)"
            )));
        }
        activation.taken[index] = true;
        #[allow(unsafe_code)]
        // SAFETY: the descriptor is open and is the listening socket systemd passed (checked
        // above); the `taken` table, updated under the same lock, ensures that this crate
        // makes only one owner for it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        drop(activation);
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(what)?;
        let io_error = |action: &str, source| Error::Listen {
            endpoint: endpoint.clone(),
            action: format!("{action} descriptor {raw}"),
            hint: String::new(),
            source,
        };
        if family == AddressFamily::UNIX {
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
            Ok(crate::unix::adopted(endpoint, local, listener))
        } else {
            let listener = std::net::TcpListener::from(fd);
            listener
                .set_nonblocking(true)
                .map_err(|e| io_error("set non-blocking", e))?;
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| io_error("register with the runtime", e))?;
            TcpAccept::listener(endpoint, listener)
        }
    }
}

impl ServerEndpoint for SystemdEndpoint {
    fn descriptor(&self) -> Descriptor {
        let d = Descriptor::new("systemd").with_kwarg("domain", self.domain.to_string());
        match &self.selector {
            SocketSelector::Index(index) => d.with_kwarg("index", index.to_string()),
            SocketSelector::Name(name) => d.with_kwarg("name", name.clone()),
        }
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move { self.adopt() })
    }
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
        match var("LISTEN_PID") {
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
        let count = match var("LISTEN_FDS").as_deref().map(parse_decimal) {
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

fn activation() -> &'static Mutex<Activation> {
    static ACTIVATION: OnceLock<Mutex<Activation>> = OnceLock::new();
    ACTIVATION.get_or_init(|| Mutex::new(Activation::from_env()))
}

/// The `systemd:` kind.
pub(crate) struct SystemdKind;

impl EndpointKind for SystemdKind {
    fn prefix(&self) -> &str {
        "systemd"
    }

    fn usage(&self) -> &str {
        "systemd:domain=INET|INET6|UNIX:index=N or systemd:domain=INET|INET6|UNIX:name=NAME"
    }

    fn parse(&self, args: Arguments, _: &Registry) -> Result<Endpoint> {
        let bound = args.bind(&["domain", "index", "name"])?;
        let domain = bound.parse_required("domain", "INET, INET6 or UNIX", |text| {
            match text.to_ascii_uppercase().as_str() {
                "INET" => Some(SocketDomain::Inet),
                "INET6" => Some(SocketDomain::Inet6),
                "UNIX" => Some(SocketDomain::Unix),
                _ => None,
            }
        })?;
        let selector = match (bound.get("index"), bound.get("name")) {
            (Some(index), None) => SocketSelector::Index(
                parse_decimal(index).map(|n| n as usize).ok_or_else(|| {
                    bound.invalid(
                        "index",
                        index,
                        "the 0-based position of the inherited socket, such as 0",
                    )
                })?,
            ),
            (None, Some(name)) => SocketSelector::Name(name.to_owned()),
            (Some(index), Some(name)) => {
                return Err(bound.invalid(
                    "index",
                    index,
                    &format!("exactly one of index and name, but name={name} is given too"),
                ));
            }
            (None, None) => {
                return Err(bound.missing("index or name"));
            }
        };
        Ok(Endpoint::new(SystemdEndpoint::new(domain, selector)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn systemd(text: &str) -> SystemdEndpoint {
        Endpoint::parse(text)
            .unwrap()
            .downcast_ref::<SystemdEndpoint>()
            .unwrap()
            .clone()
    }

    #[test]
    fn twisted_systemd_examples() {
        assert_eq!(
            systemd("systemd:domain=INET6:name=my-web-server"),
            SystemdEndpoint::new(
                SocketDomain::Inet6,
                SocketSelector::Name("my-web-server".into())
            )
        );
        assert_eq!(
            systemd("systemd:domain=INET:name=my-web-port"),
            SystemdEndpoint::new(
                SocketDomain::Inet,
                SocketSelector::Name("my-web-port".into())
            )
        );
        assert_eq!(
            systemd("systemd:domain=INET:index=3"),
            SystemdEndpoint::new(SocketDomain::Inet, SocketSelector::Index(3))
        );
        assert_eq!(systemd("systemd:UNIX:0").domain(), SocketDomain::Unix);
        assert_eq!(
            systemd("SYSTEMD:domain=inet6:index=0").domain(),
            SocketDomain::Inet6
        );
    }

    #[test]
    fn canonical_form() {
        for (text, canonical) in [
            ("systemd:INET:0", "systemd:domain=INET:index=0"),
            (
                "systemd:domain=inet6:name=my-web-server",
                "systemd:domain=INET6:name=my-web-server",
            ),
            (
                r"systemd:domain=UNIX:name=a\:b",
                r"systemd:domain=UNIX:name=a\:b",
            ),
        ] {
            let endpoint = Endpoint::parse(text).unwrap();
            assert_eq!(endpoint.to_string(), canonical, "{text}");
            assert_eq!(Endpoint::parse(canonical).unwrap(), endpoint);
        }
    }

    #[test]
    fn exactly_one_of_index_and_name() {
        let err = Endpoint::parse("systemd:domain=INET").unwrap_err();
        assert!(
            err.to_string()
                .contains("missing argument \"index or name\""),
            "{err}"
        );
        let err = Endpoint::parse("systemd:domain=INET:index=0:name=web").unwrap_err();
        assert!(
            err.to_string().contains("exactly one of index and name"),
            "{err}"
        );
        let err = Endpoint::parse("systemd:domain=IPX:index=0").unwrap_err();
        assert!(
            err.to_string()
                .contains("domain \"IPX\" is not valid; expected INET, INET6 or UNIX"),
            "{err}"
        );
        let err = Endpoint::parse("systemd:domain=INET:index=-1").unwrap_err();
        assert!(
            err.to_string().contains("index \"-1\" is not valid"),
            "{err}"
        );
        let err = Endpoint::parse("systemd:index=0").unwrap_err();
        assert!(
            matches!(err, Error::MissingArgument { ref argument, .. } if argument == "domain"),
            "{err}"
        );
    }

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
}

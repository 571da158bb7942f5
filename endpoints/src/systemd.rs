//! `systemd:` endpoints: listening sockets inherited by socket activation
//! (`sd_listen_fds(3)`), as Twisted's `systemd:` plugin adopts them.

pub use crate::activation::{SocketDomain, SocketSelector};
use crate::activation::{take, take_inherited};
use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::Listener;
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tcp::parse_decimal;

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
        // A supervisor's worker finds its socket under the name of its own descriptor.
        let fd = match take_inherited(&endpoint, self.domain) {
            Ok(Some(fd)) => fd,
            Ok(None) => take(&self.selector, self.domain).map_err(|reason| self.error(reason))?,
            Err(reason) => return Err(self.error(reason)),
        };
        match self.domain {
            SocketDomain::Unix => crate::unix::adopt(endpoint, fd),
            SocketDomain::Inet | SocketDomain::Inet6 => crate::tcp::adopt(endpoint, fd),
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

    fn sockets(&self) -> Vec<Endpoint> {
        vec![Endpoint::new(self.clone())]
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move { self.adopt() })
    }
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
}

//! `ssl:` endpoints (Twisted's `SSL4ServerEndpoint` string form), served with rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::accept::{MinimumVersion, TlsAccept, server_config};
use super::pem::load_certified_key;
use super::resolver::{CertificateResolver, DEFAULT_NAME};
use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::Listener;
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tcp::{DEFAULT_BACKLOG, TcpEndpoint, tcp_from_bound};

/// Twisted's default for `privateKey`.
const DEFAULT_KEY_FILE: &str = "server.pem";

/// A TLS endpoint over TCP with one certificate:
/// `ssl:port:privateKey=key.pem[:certKey=cert.pem][:extraCertChain=chain.pem][:sslmethod=][:interface=][:backlog=]`.
///
/// Follows Twisted's `ssl:` parser: positional order port, privateKey, certKey, sslmethod,
/// interface, backlog, extraCertChain, dhParameters; `privateKey` defaults to `server.pem`
/// and `certKey` to the `privateKey` file (one file holding both). Differences: keys load
/// in PKCS#8, PKCS#1 (RSA) and SEC1 (EC) PEM; the leaf certificate is the one matching the
/// key, wherever it stands; `sslmethod` only sets the lowest version (`TLSv1_2_METHOD`, the
/// default, or `TLSv1_3_METHOD`; older methods are refused, since only TLS 1.2 and 1.3 are
/// spoken); `dhParameters` is accepted and has no effect (rustls uses ECDHE only). ALPN
/// offers `h2` and `http/1.1`. Files are read when the endpoint starts listening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SslEndpoint {
    tcp: TcpEndpoint,
    private_key: PathBuf,
    cert_key: Option<PathBuf>,
    extra_cert_chain: Option<PathBuf>,
    minimum: MinimumVersion,
    dh_parameters: Option<String>,
}

impl SslEndpoint {
    /// TLS on `tcp` with the key (and, unless `cert_key` says otherwise, the certificate)
    /// in `private_key`.
    pub fn new(tcp: TcpEndpoint, private_key: impl Into<PathBuf>) -> SslEndpoint {
        SslEndpoint {
            tcp,
            private_key: private_key.into(),
            cert_key: None,
            extra_cert_chain: None,
            minimum: MinimumVersion::Tls12,
            dh_parameters: None,
        }
    }

    /// The TCP endpoint TLS runs on.
    pub fn tcp(&self) -> &TcpEndpoint {
        &self.tcp
    }

    /// The private key file.
    pub fn private_key(&self) -> &Path {
        &self.private_key
    }

    /// The certificate file (the key file when not given).
    pub fn cert_key(&self) -> &Path {
        self.cert_key.as_deref().unwrap_or(&self.private_key)
    }

    /// The lowest TLS version accepted.
    pub fn minimum_version(&self) -> MinimumVersion {
        self.minimum
    }

    fn listen_error(&self, action: String, message: String) -> Error {
        Error::Listen {
            endpoint: self.descriptor().to_string(),
            action,
            hint: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
        }
    }
}

impl ServerEndpoint for SslEndpoint {
    fn descriptor(&self) -> Descriptor {
        let mut d = Descriptor::new("ssl")
            .with_arg(self.tcp.port().to_string())
            .with_kwarg("privateKey", self.private_key.to_string_lossy());
        if let Some(cert) = &self.cert_key {
            d = d.with_kwarg("certKey", cert.to_string_lossy());
        }
        if let Some(chain) = &self.extra_cert_chain {
            d = d.with_kwarg("extraCertChain", chain.to_string_lossy());
        }
        if self.minimum == MinimumVersion::Tls13 {
            d = d.with_kwarg("sslmethod", "TLSv1_3_METHOD");
        }
        // Only 0.0.0.0 is the default: `::` (every IPv6 and IPv4 address) must be printed, or
        // it reads back as IPv4 only.
        if self.tcp.interface() != std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) {
            d = d.with_kwarg("interface", self.tcp.interface().to_string());
        }
        if self.tcp.backlog() != DEFAULT_BACKLOG {
            d = d.with_kwarg("backlog", self.tcp.backlog().to_string());
        }
        if let Some(dh) = &self.dh_parameters {
            d = d.with_kwarg("dhParameters", dh.clone());
        }
        d
    }

    fn sockets(&self) -> Vec<Endpoint> {
        vec![Endpoint::new(self.tcp.clone())]
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move {
            if self.dh_parameters.is_some() {
                tracing::warn!(endpoint = %self.descriptor(), "dhParameters has no effect: TLS here uses ECDHE key exchange only");
            }
            let key = load_certified_key(
                &self.private_key,
                self.cert_key(),
                self.extra_cert_chain.as_deref(),
            )
            .map_err(|err| self.listen_error("load the certificate".into(), err.to_string()))?;
            let resolver = Arc::new(CertificateResolver::new());
            resolver
                .set(DEFAULT_NAME, Arc::new(key))
                .map_err(|err| self.listen_error("load the certificate".into(), err.to_string()))?;
            let config = server_config(resolver, self.minimum)
                .map_err(|err| self.listen_error("configure TLS".into(), err.to_string()))?;
            let inner = self.tcp.listen().await?;
            Ok(TlsAccept::listener(
                self.descriptor().to_string(),
                inner,
                config,
            ))
        })
    }
}

/// The `ssl:` kind.
pub(crate) struct SslKind;

impl EndpointKind for SslKind {
    fn prefix(&self) -> &str {
        "ssl"
    }

    fn usage(&self) -> &str {
        "ssl:port:privateKey=key.pem[:certKey=cert.pem][:extraCertChain=chain.pem][:sslmethod=TLSv1_2_METHOD][:interface=ADDRESS][:backlog=1024]"
    }

    fn parse(&self, args: Arguments, _: &Registry) -> Result<Endpoint> {
        let bound = args.bind(&[
            "port",
            "privateKey",
            "certKey",
            "sslmethod",
            "interface",
            "backlog",
            "extraCertChain",
            "dhParameters",
        ])?;
        let tcp = tcp_from_bound(
            &bound,
            None,
            std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        )?;
        let non_empty = |name: &str| bound.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut endpoint = SslEndpoint::new(
            tcp,
            non_empty("privateKey").unwrap_or_else(|| DEFAULT_KEY_FILE.into()),
        );
        endpoint.cert_key = non_empty("certKey");
        endpoint.extra_cert_chain = non_empty("extraCertChain");
        endpoint.dh_parameters = bound.get("dhParameters").map(str::to_owned);
        endpoint.minimum = bound.parse_or(
            "sslmethod",
            MinimumVersion::Tls12,
            "TLSv1_2_METHOD (TLS 1.2 and 1.3), TLSv1_3_METHOD (1.3 only), TLS_METHOD or SSLv23_METHOD (the default); older methods are not supported",
            |text| match text {
                "TLSv1_2_METHOD" | "TLS_METHOD" | "SSLv23_METHOD" => Some(MinimumVersion::Tls12),
                "TLSv1_3_METHOD" => Some(MinimumVersion::Tls13),
                _ => None,
            },
        )?;
        Ok(Endpoint::new(endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssl(text: &str) -> SslEndpoint {
        Endpoint::parse(text)
            .unwrap()
            .downcast_ref::<SslEndpoint>()
            .unwrap()
            .clone()
    }

    #[test]
    fn twisted_ssl_examples() {
        let e = ssl("ssl:443:privateKey=key.pem:certKey=crt.pem");
        assert_eq!(
            (e.tcp().port(), e.private_key(), e.cert_key()),
            (443, Path::new("key.pem"), Path::new("crt.pem"))
        );
        let e = ssl("ssl:4321:privateKey=server.pem");
        assert_eq!(e.cert_key(), Path::new("server.pem"));
        assert_eq!(e.minimum_version(), MinimumVersion::Tls12);
        let e = ssl(r"ssl:443:privateKey=C\:/key.pem:certKey=C\:/cert.pem");
        assert_eq!(e.private_key(), Path::new("C:/key.pem"));
        let e = ssl(
            "ssl:1234:backlog=12:privateKey=k.pem:certKey=k.pem:sslmethod=TLSv1_2_METHOD:interface=10.0.0.1",
        );
        assert_eq!(
            (e.tcp().backlog(), e.tcp().interface().to_string()),
            (12, "10.0.0.1".to_owned())
        );
        let e = ssl("ssl:443:privateKey=k.pem:sslmethod=TLSv1_3_METHOD:dhParameters=dh.pem");
        assert_eq!(e.minimum_version(), MinimumVersion::Tls13);
        // Twisted's default key file.
        assert_eq!(ssl("ssl:443").private_key(), Path::new("server.pem"));
    }

    #[test]
    fn canonical_form_reads_back() {
        for text in [
            "ssl:443:privateKey=key.pem:certKey=crt.pem",
            r"ssl:8443:privateKey=/a\:b.pem:extraCertChain=chain.pem:sslmethod=TLSv1_3_METHOD:interface=127.0.0.1:backlog=5",
        ] {
            let endpoint = Endpoint::parse(text).unwrap();
            assert_eq!(endpoint.to_string(), text);
            assert_eq!(Endpoint::parse(&endpoint.to_string()).unwrap(), endpoint);
        }
    }

    #[test]
    fn old_methods_are_refused_with_what_is_accepted() {
        let err = Endpoint::parse("ssl:443:privateKey=k.pem:sslmethod=SSLv3_METHOD").unwrap_err();
        assert!(
            err.to_string()
                .contains("sslmethod \"SSLv3_METHOD\" is not valid; expected TLSv1_2_METHOD"),
            "{err}"
        );
        let err = Endpoint::parse("ssl:443:privateKey=k.pem:sslmethod=TLSv1_1_METHOD").unwrap_err();
        assert!(
            err.to_string().contains("older methods are not supported"),
            "{err}"
        );
    }
}

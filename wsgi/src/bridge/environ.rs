//! The PEP 3333 `environ` dictionary, built from the request head and the connection facts.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use http::header::{self, HeaderName};
use http::request::Parts;
use http::{Method, Version};
use percent_encoding::percent_decode;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3::{IntoPyObjectExt, intern};
use torsion_endpoints::{Address, ConnectionInfo};

/// The entries every environ shares, made once per server: each environ starts as a copy
/// of this dict (one C-level copy instead of nine insertions).
///
/// The template also holds, as `None`, the keys [`build`] sets on every request, so that
/// the copy already has their slots: setting them replaces a value instead of inserting a
/// key, and the dict is not resized (twice) while environ is built.
pub(crate) struct Constants {
    template: Py<PyDict>,
}

impl Constants {
    pub(crate) fn new(
        py: Python<'_>,
        software: &str,
        multiprocess: bool,
        errors: Bound<'_, PyAny>,
        file_wrapper: Bound<'_, PyAny>,
    ) -> PyResult<Constants> {
        let template = PyDict::new(py);
        template.set_item(intern!(py, "SCRIPT_NAME"), intern!(py, ""))?;
        template.set_item(intern!(py, "SERVER_SOFTWARE"), software)?;
        template.set_item(intern!(py, "wsgi.version"), (1, 0))?;
        template.set_item(intern!(py, "wsgi.errors"), errors)?;
        template.set_item(intern!(py, "wsgi.multithread"), true)?;
        template.set_item(intern!(py, "wsgi.multiprocess"), multiprocess)?;
        template.set_item(intern!(py, "wsgi.run_once"), false)?;
        template.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        template.set_item(intern!(py, "wsgi.file_wrapper"), file_wrapper)?;
        for key in [
            intern!(py, "REQUEST_METHOD"),
            intern!(py, "PATH_INFO"),
            intern!(py, "QUERY_STRING"),
            intern!(py, "SERVER_PROTOCOL"),
            intern!(py, "wsgi.url_scheme"),
            intern!(py, "SERVER_NAME"),
            intern!(py, "SERVER_PORT"),
            intern!(py, "REMOTE_ADDR"),
            intern!(py, "wsgi.input"),
            intern!(py, "torsion.params"),
        ] {
            template.set_item(key, py.None())?;
        }
        Ok(Constants {
            template: template.unbind(),
        })
    }
}

/// A `str` holding `bytes` one code point per byte: PEP 3333's "native strings" for
/// header values and the path, which are latin-1 on the wire.
pub(crate) fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(text) if bytes.is_ascii() => PyString::new(py, text),
        _ => PyString::new(py, &bytes.iter().map(|&b| b as char).collect::<String>()),
    }
}

/// Builds environ for one request.
///
/// Follows PEP 3333 ("environ Variables") and CGI (RFC 3875 §4.1): `SCRIPT_NAME` is
/// `script_name`, where the application is mounted (`""` at the root), and `PATH_INFO` the
/// percent-decoded path after its first `prefix` bytes (the length of the mount prefix the
/// caller routed the request by), as latin-1; `QUERY_STRING` is raw; `SERVER_NAME` and `SERVER_PORT`
/// come from the Host field (or HTTP/2's `:authority`), else from the local address;
/// every field becomes `HTTP_<NAME>`, repeated fields joined by `", "` (Cookie by `"; "`,
/// RFC 9113 §8.2.3). Fields whose names contain `_` are dropped, since `X_Forwarded_For`
/// would otherwise pose as `X-Forwarded-For`. A unix-socket peer has `REMOTE_ADDR` `""`.
pub(crate) fn build<'py>(
    py: Python<'py>,
    parts: &Parts,
    info: &ConnectionInfo,
    constants: &Constants,
    script_name: &Bound<'py, PyString>,
    prefix: usize,
    input: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let environ = constants.template.bind(py).copy()?;
    environ.set_item(intern!(py, "REQUEST_METHOD"), method(py, &parts.method))?;
    let path = parts.uri.path();
    let decoded: std::borrow::Cow<'_, [u8]> = percent_decode(path.as_bytes()).into();
    if prefix > 0 {
        environ.set_item(intern!(py, "SCRIPT_NAME"), script_name)?;
    }
    let path_info = decoded.get(prefix..).unwrap_or_default();
    environ.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info))?;
    environ.set_item(intern!(py, "QUERY_STRING"), parts.uri.query().unwrap_or(""))?;
    environ.set_item(
        intern!(py, "SERVER_PROTOCOL"),
        match parts.version {
            Version::HTTP_10 => intern!(py, "HTTP/1.0"),
            Version::HTTP_2 => intern!(py, "HTTP/2"),
            Version::HTTP_09 => intern!(py, "HTTP/0.9"),
            _ => intern!(py, "HTTP/1.1"),
        },
    )?;
    let scheme = info.scheme();
    environ.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
    // The live parameters as they are now, for the whole request.
    environ.set_item(
        intern!(py, "torsion.params"),
        crate::params::params().python(py)?,
    )?;

    // The target's authority (HTTP/2's :authority, or an absolute-form HTTP/1.1 target)
    // names the host before the Host field does (RFC 9112 §3.2.2, RFC 9113 §8.3.1).
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    let host = authority.or_else(|| parts.headers.get(header::HOST).map(|v| v.as_bytes()));
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        environ.set_item(intern!(py, "HTTP_HOST"), authority.as_str())?;
    }
    for name in parts.headers.keys() {
        let mut values = parts.headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        let key = match field_key(py, name) {
            Some(key) => key,
            None => continue,
        };
        let value = match values.next() {
            None => latin1(py, first.as_bytes()),
            Some(second) => {
                let separator: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
                let mut joined = first.as_bytes().to_vec();
                for value in std::iter::once(second).chain(values) {
                    joined.extend_from_slice(separator);
                    joined.extend_from_slice(value.as_bytes());
                }
                latin1(py, &joined)
            }
        };
        environ.set_item(key, value)?;
    }

    let (server_name, server_port) = server_name_and_port(host, &info.local, scheme);
    environ.set_item(
        intern!(py, "SERVER_NAME"),
        latin1(py, server_name.as_bytes()),
    )?;
    environ.set_item(intern!(py, "SERVER_PORT"), &*server_port)?;
    match &info.peer {
        Address::Tcp(addr) => {
            let ip = addr.ip().to_canonical();
            let remote_addr = match ip {
                IpAddr::V4(v4) => PyString::new(py, &ipv4_text(v4)),
                IpAddr::V6(v6) => PyString::new(py, &v6.to_string()),
            };
            environ.set_item(intern!(py, "REMOTE_ADDR"), remote_addr)?;
            // Port 0: a client named by a proxy without its port.
            if addr.port() != 0 {
                environ.set_item(
                    intern!(py, "REMOTE_PORT"),
                    PyString::new(py, itoa::Buffer::new().format(addr.port())),
                )?;
            }
        }
        Address::Unix(_) => {
            environ.set_item(intern!(py, "REMOTE_ADDR"), intern!(py, ""))?;
        }
    }
    if let Some(tls) = &info.tls {
        environ.set_item(intern!(py, "HTTPS"), intern!(py, "on"))?;
        if let Some(sni) = &tls.sni {
            environ.set_item(intern!(py, "SSL_TLS_SNI"), sni)?;
        }
        if let Some(version) = tls.version {
            environ.set_item(intern!(py, "SSL_PROTOCOL"), version)?;
        }
    }
    environ.set_item(intern!(py, "wsgi.input"), input)?;
    Ok(environ)
}

/// Dotted-quad text of `ip`, without the `fmt` machinery (this runs for every request).
fn ipv4_text(ip: Ipv4Addr) -> String {
    let mut text = String::with_capacity(15);
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        text.push_str(itoa::Buffer::new().format(octet));
    }
    text
}

fn method<'py>(py: Python<'py>, method: &Method) -> Bound<'py, PyString> {
    match *method {
        Method::GET => intern!(py, "GET").clone(),
        Method::POST => intern!(py, "POST").clone(),
        Method::HEAD => intern!(py, "HEAD").clone(),
        _ => PyString::new(py, method.as_str()),
    }
}

/// The environ key for a field: `CONTENT_TYPE`, `CONTENT_LENGTH` or `HTTP_<NAME>`; `None`
/// for names with `_`.
fn field_key<'py>(py: Python<'py>, name: &HeaderName) -> Option<Bound<'py, PyAny>> {
    let key = match *name {
        header::CONTENT_TYPE => intern!(py, "CONTENT_TYPE"),
        header::CONTENT_LENGTH => intern!(py, "CONTENT_LENGTH"),
        header::HOST => intern!(py, "HTTP_HOST"),
        header::USER_AGENT => intern!(py, "HTTP_USER_AGENT"),
        header::ACCEPT => intern!(py, "HTTP_ACCEPT"),
        header::ACCEPT_ENCODING => intern!(py, "HTTP_ACCEPT_ENCODING"),
        header::ACCEPT_LANGUAGE => intern!(py, "HTTP_ACCEPT_LANGUAGE"),
        header::CONNECTION => intern!(py, "HTTP_CONNECTION"),
        header::COOKIE => intern!(py, "HTTP_COOKIE"),
        header::REFERER => intern!(py, "HTTP_REFERER"),
        header::CACHE_CONTROL => intern!(py, "HTTP_CACHE_CONTROL"),
        header::AUTHORIZATION => intern!(py, "HTTP_AUTHORIZATION"),
        _ => {
            let name = name.as_str();
            if name.contains('_') {
                tracing::debug!(field = name, "dropping a field whose name contains '_'");
                return None;
            }
            let mut key = String::with_capacity(5 + name.len());
            key.push_str("HTTP_");
            key.extend(name.chars().map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            }));
            return key.into_bound_py_any(py).ok();
        }
    };
    Some(key.clone().into_any())
}

/// `SERVER_NAME` and `SERVER_PORT`: from the Host value when there is one (the port
/// defaulting to the scheme's), else from the local address.
pub(crate) fn server_name_and_port<'a>(
    host: Option<&'a [u8]>,
    local: &Address,
    scheme: &str,
) -> (Cow<'a, str>, Cow<'a, str>) {
    let default_port = if scheme == "https" { "443" } else { "80" };
    if let Some(host) = host
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        // "[::1]:8080", "[::1]", "example.org:8080", "example.org"
        let (name, port) = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => (&host[..i], &host[i + 1..]),
            _ => (host, ""),
        };
        let port = if port.is_empty() {
            Cow::Borrowed(default_port)
        } else if !port.bytes().all(|b| b.is_ascii_digit()) {
            // Frameworks read SERVER_PORT as a number; a malformed one is not passed on.
            local
                .as_tcp()
                .map_or(Cow::Borrowed(default_port), |a| a.port().to_string().into())
        } else {
            Cow::Borrowed(port)
        };
        return (Cow::Borrowed(name), port);
    }
    match local {
        Address::Tcp(addr) => {
            let ip = addr.ip().to_canonical();
            let name = if ip.is_ipv6() {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            (name.into(), addr.port().to_string().into())
        }
        Address::Unix(_) => (Cow::Borrowed("localhost"), Cow::Borrowed(default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Address {
        Address::Tcp("127.0.0.1:8080".parse().unwrap())
    }

    #[test]
    fn server_name_and_port_come_from_host_then_local_address() {
        let cases: [(Option<&str>, &str, (&str, &str)); 7] = [
            (Some("example.org:8443"), "http", ("example.org", "8443")),
            (Some("example.org"), "http", ("example.org", "80")),
            (Some("example.org"), "https", ("example.org", "443")),
            (Some("[::1]:9000"), "http", ("[::1]", "9000")),
            (Some("[::1]"), "http", ("[::1]", "80")),
            (Some("example.org:xyz"), "http", ("example.org", "8080")),
            (None, "http", ("127.0.0.1", "8080")),
        ];
        for (host, scheme, (name, port)) in cases {
            assert_eq!(
                server_name_and_port(host.map(str::as_bytes), &local(), scheme),
                (Cow::Borrowed(name), Cow::Borrowed(port)),
                "{host:?}"
            );
        }
        let v6: Address = Address::Tcp("[::1]:81".parse().unwrap());
        assert_eq!(
            server_name_and_port(None, &v6, "http"),
            (Cow::Borrowed("[::1]"), Cow::Borrowed("81"))
        );
        assert_eq!(
            server_name_and_port(None, &Address::Unix(None), "http"),
            (Cow::Borrowed("localhost"), Cow::Borrowed("80"))
        );
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.168.0.9",
        ] {
            assert_eq!(ipv4_text(ip.parse().unwrap()), ip);
        }
    }

    #[test]
    fn latin1_maps_each_byte_to_one_code_point() {
        Python::initialize();
        Python::attach(|py| {
            assert_eq!(latin1(py, b"/caf\xe9").to_str().unwrap(), "/café");
            assert_eq!(
                latin1(py, "/é".as_bytes()).to_str().unwrap(),
                "/\u{c3}\u{a9}"
            );
            assert_eq!(latin1(py, b"plain").to_str().unwrap(), "plain");
        });
    }
}

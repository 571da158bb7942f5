//! The PEP 3333 `environ` dictionary, built from the request head and the connection facts.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Version};
use percent_encoding::percent_decode;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3::{IntoPyObjectExt, ffi, intern};
use torsion_endpoints::{Address, ConnectionInfo};

use super::channel::{Base, Channel, Host};

/// How many keys [`Constants::new`] adds to the template and removes again, to size its
/// table for a request's fields.
const ROOM: usize = 8;

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
        // Room for the fields each request adds. CPython grows a dict's table as keys are
        // added, keeps its size when keys are removed, and copies it whole. Growing the
        // template past its first table here, then removing the extra keys, spares every
        // environ the resize it would otherwise go through as the request's fields went in
        // (a fifth of the time spent building environ).
        let room: Vec<String> = (0..ROOM).map(|i| format!("torsion.room.{i}")).collect();
        for key in &room {
            template.set_item(key, py.None())?;
        }
        for key in &room {
            template.del_item(key)?;
        }
        Ok(Constants {
            template: template.unbind(),
        })
    }
}

/// A `str` holding `bytes` one code point per byte: PEP 3333's "native strings" for
/// header values and the path, which are latin-1 on the wire.
///
/// Made as CPython stores such a string (PEP 393: one byte a code point, the compact ASCII
/// form when every byte is below 128), by copying the bytes in: no UTF-8 decoding, which
/// took a third of the time environ spent on its strings.
///
/// # Errors
/// `MemoryError` if CPython cannot allocate the string.
pub(crate) fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let maxchar = if bytes.is_ascii() { 0x7f } else { 0xff };
    // A slice is never longer than isize::MAX bytes.
    let length = bytes.len() as ffi::Py_ssize_t;
    // SAFETY: PyUnicode_New returns a new reference to a string of `length` code points
    // of the one-byte kind (maxchar <= 0xff), with room for `length` bytes (and the NUL
    // it writes itself) at PyUnicode_DATA, or null with an exception set. The maximum is
    // exact (0x7f only when every byte is ASCII), so the string is in canonical form.
    #[allow(unsafe_code)]
    unsafe {
        let string = ffi::PyUnicode_New(length, maxchar);
        if string.is_null() {
            return Err(PyErr::fetch(py));
        }
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            ffi::PyUnicode_DATA(string).cast::<u8>(),
            bytes.len(),
        );
        Ok(Bound::from_owned_ptr(py, string).cast_into_unchecked())
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
/// would otherwise pose as `X-Forwarded-For`. The connection's own entries come from
/// [`channel`], made once per channel.
pub(crate) fn build<'py>(
    py: Python<'py>,
    parts: &Parts,
    channel: &Channel,
    constants: &Constants,
    script_name: &Bound<'py, PyString>,
    prefix: usize,
    input: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let info = &channel.info;
    let base = channel.environ.get_or_try_init(py, || {
        Ok::<_, PyErr>(Base {
            dict: self::channel(py, parts, info, constants)?.unbind(),
            host: Host::of(parts),
        })
    })?;
    let environ = base.dict.bind(py).copy()?;
    // The base holds this host's entries already when the request names the same host as
    // the channel's first request (nearly always).
    let same_host = base.host.matches(parts);
    environ.set_item(intern!(py, "REQUEST_METHOD"), method(py, &parts.method))?;
    let path = parts.uri.path();
    let decoded: std::borrow::Cow<'_, [u8]> = percent_decode(path.as_bytes()).into();
    if prefix > 0 {
        environ.set_item(intern!(py, "SCRIPT_NAME"), script_name)?;
    }
    let path_info = decoded.get(prefix..).unwrap_or_default();
    environ.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info)?)?;
    environ.set_item(
        intern!(py, "QUERY_STRING"),
        latin1(py, parts.uri.query().unwrap_or("").as_bytes())?,
    )?;
    environ.set_item(
        intern!(py, "SERVER_PROTOCOL"),
        match parts.version {
            Version::HTTP_10 => intern!(py, "HTTP/1.0"),
            Version::HTTP_2 => intern!(py, "HTTP/2"),
            Version::HTTP_09 => intern!(py, "HTTP/0.9"),
            _ => intern!(py, "HTTP/1.1"),
        },
    )?;
    // The live parameters as they are now, for the whole request.
    environ.set_item(
        intern!(py, "torsion.params"),
        crate::params::params().python(py)?,
    )?;
    if !same_host {
        set_host(py, &environ, parts, info)?;
    }
    for name in parts.headers.keys() {
        if name == header::HOST {
            // Set with the host's other entries.
            continue;
        }
        let mut values = parts.headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        let key = match field_key(py, name) {
            Some(key) => key,
            None => continue,
        };
        let value = match values.next() {
            None => latin1(py, first.as_bytes())?,
            Some(second) => {
                let separator: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
                let mut joined = first.as_bytes().to_vec();
                for value in std::iter::once(second).chain(values) {
                    joined.extend_from_slice(separator);
                    joined.extend_from_slice(value.as_bytes());
                }
                latin1(py, &joined)?
            }
        };
        environ.set_item(key, value)?;
    }
    environ.set_item(intern!(py, "wsgi.input"), input)?;
    Ok(environ)
}

/// Sets `HTTP_HOST` (from the Host field, else the target's authority; removed when the
/// request has neither), `SERVER_NAME` and `SERVER_PORT`. The target's authority names the
/// host before the Host field does (RFC 9112 §3.2.2, RFC 9113 §8.3.1). A request has at
/// most one Host field: [`crate::checks`] refuses more.
fn set_host(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    parts: &Parts,
    info: &ConnectionInfo,
) -> PyResult<()> {
    let field = parts.headers.get(header::HOST).map(HeaderValue::as_bytes);
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    match field.or(authority) {
        Some(host) => environ.set_item(intern!(py, "HTTP_HOST"), latin1(py, host)?)?,
        None => {
            if environ.contains(intern!(py, "HTTP_HOST"))? {
                environ.del_item(intern!(py, "HTTP_HOST"))?;
            }
        }
    }
    let (server_name, server_port) =
        server_name_and_port(authority.or(field), &info.local, info.scheme());
    environ.set_item(
        intern!(py, "SERVER_NAME"),
        latin1(py, server_name.as_bytes())?,
    )?;
    environ.set_item(
        intern!(py, "SERVER_PORT"),
        latin1(py, server_port.as_bytes())?,
    )
}

/// The entries of environ that one connection's requests share: the constants, and
/// `wsgi.url_scheme`, `REMOTE_ADDR` (`""` for a unix-socket peer), `REMOTE_PORT`, over
/// TLS `HTTPS`, `SSL_TLS_SNI` and `SSL_PROTOCOL` (the names Apache's mod_ssl and nginx give
/// them), and the host entries of the first request, `first`.
fn channel<'py>(
    py: Python<'py>,
    first: &Parts,
    info: &ConnectionInfo,
    constants: &Constants,
) -> PyResult<Bound<'py, PyDict>> {
    let environ = constants.template.bind(py).copy()?;
    environ.set_item(intern!(py, "wsgi.url_scheme"), info.scheme())?;
    match &info.peer {
        Address::Tcp(addr) => {
            let ip = addr.ip().to_canonical();
            let remote_addr = match ip {
                IpAddr::V4(v4) => latin1(py, ipv4_text(v4).as_bytes())?,
                IpAddr::V6(v6) => latin1(py, v6.to_string().as_bytes())?,
            };
            environ.set_item(intern!(py, "REMOTE_ADDR"), remote_addr)?;
            // Port 0: a client named by a proxy without its port.
            if addr.port() != 0 {
                environ.set_item(
                    intern!(py, "REMOTE_PORT"),
                    latin1(py, itoa::Buffer::new().format(addr.port()).as_bytes())?,
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
    set_host(py, &environ, first, info)?;
    Ok(environ)
}

/// Dotted-quad text of `ip`, without the `fmt` machinery.
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
            let cases: [(&[u8], &str); 5] = [
                (b"/caf\xe9", "/café"),
                ("/é".as_bytes(), "/\u{c3}\u{a9}"),
                (b"plain", "plain"),
                (b"", ""),
                (b"\x00\x7f\x80\xff", "\u{0}\u{7f}\u{80}\u{ff}"),
            ];
            for (bytes, text) in cases {
                let made = latin1(py, bytes).unwrap();
                assert_eq!(made.to_str().unwrap(), text, "{bytes:?}");
                // Equal to, and hashed as, the same text made by Python itself: the
                // canonical form, which dict lookups by frameworks depend on.
                let native = PyString::new(py, text);
                assert!(made.as_any().eq(native.as_any()).unwrap(), "{bytes:?}");
                assert_eq!(made.hash().unwrap(), native.hash().unwrap(), "{bytes:?}");
                assert_eq!(
                    made.call_method0("isascii")
                        .unwrap()
                        .extract::<bool>()
                        .unwrap(),
                    bytes.is_ascii()
                );
            }
        });
    }
}

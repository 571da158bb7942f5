//! What the server answers itself, before any resource sees a request: the request checks
//! of RFC 9112 and RFC 9110 that an application cannot be trusted to make, and the framing
//! a response needs that the application cannot know about.
//!
//! - Host (RFC 9112 §3.2): an HTTP/1.1 request without one, any request with two, or with
//!   a value that is not `uri-host[:port]` gets 400: a server MUST answer such requests
//!   with 400, and an application would otherwise build URLs from an attacker's text.
//! - Request targets (RFC 9112 §3.2.3, §3.2.4): the asterisk form is only for
//!   `OPTIONS *`, which the server answers itself (it asks about the server, not a
//!   resource); the authority form is only for CONNECT; and CONNECT itself, a tunnel no
//!   WSGI application can serve, gets 501.
//! - An HTTP/2 request whose field section is over [`MAX_HTTP2_FIELD_SECTION`] gets 431
//!   (RFC 6585 §5) on its stream, and the connection goes on. The HTTP/2 layer admits
//!   blocks up to [`HTTP2_HEADER_BLOCK_LIMIT`] so that such requests can be refused one
//!   stream at a time; HTTP/1.1 heads are bounded by hyper's read buffer (about 400 KiB),
//!   which answers 431 itself.
//! - An HTTP/1.0 response whose length is not known says `Connection: close`
//!   (RFC 9112 §6.3): an HTTP/1.0 client can only find its end when the connection closes.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};

use crate::body::{ResponseBody, plain, refusal};

/// The largest field section an HTTP/2 request may have, in bytes counted as RFC 9113
/// §6.5.2 counts them (name, value and 32 bytes per field, the request's pseudo-fields
/// included): 64 KiB, four times hyper's default, twice nginx's (`large_client_header_buffers
/// 4 8k`).
pub(crate) const MAX_HTTP2_FIELD_SECTION: usize = 64 * 1024;

/// The largest HTTP/2 header block (encoded, HEADERS and CONTINUATION frames together) the
/// server reads, advertised as `SETTINGS_MAX_HEADER_LIST_SIZE`: 1 MiB. A request up to it
/// but over [`MAX_HTTP2_FIELD_SECTION`] is refused on its own stream with 431; a block over
/// it ends the connection with GOAWAY (COMPRESSION_ERROR or ENHANCE_YOUR_CALM): the h2
/// crate's bound on what one connection may make the server buffer (RFC 9113 §10.5.1).
pub(crate) const HTTP2_HEADER_BLOCK_LIMIT: u32 = 1 << 20;

/// The server's own answer to `request`, when it gets one; `None` to pass it on.
pub(crate) fn answer<B>(request: &Request<B>) -> Option<Response<ResponseBody>> {
    if request.version() == Version::HTTP_2 && field_section_size(request) > MAX_HTTP2_FIELD_SECTION
    {
        return Some(plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "Request Header Fields Too Large: this server accepts at most {MAX_HTTP2_FIELD_SECTION} bytes of fields in a request.\n"
            ),
        ));
    }
    let uri = request.uri();
    if *request.method() == Method::CONNECT {
        return Some(refusal(
            StatusCode::NOT_IMPLEMENTED,
            "Not Implemented: this server does not open CONNECT tunnels.\n",
        ));
    }
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Some(bad_request(
            "the authority form of a request target (host:port) is only for CONNECT",
        ));
    }
    if uri.path() == "*" && uri.authority().is_none() {
        if *request.method() != Method::OPTIONS {
            return Some(bad_request(
                "the asterisk form of a request target (*) is only for OPTIONS",
            ));
        }
        // OPTIONS * asks what the server supports: nothing beyond the methods every
        // resource may allow; the site's resources answer OPTIONS for themselves.
        let mut response = Response::new(ResponseBody::full(Bytes::new()));
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
        );
        return Some(response);
    }
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Some(bad_request("a request may have only one Host field")),
        (None, _) if request.version() == Version::HTTP_11 => {
            Some(bad_request("an HTTP/1.1 request must have a Host field"))
        }
        (Some(host), None) if !is_host(host.as_bytes()) => Some(bad_request(
            "the Host field must be a host name or IP address with an optional :port",
        )),
        _ => None,
    }
}

/// The size of `request`'s field section as RFC 9113 §6.5.2 counts it: each field's name
/// and value plus 32 bytes, the pseudo-fields (:method, :scheme, :authority, :path)
/// included.
fn field_section_size<B>(request: &Request<B>) -> usize {
    const OVERHEAD: usize = 32;
    let uri = request.uri();
    let pseudo = [
        7 + request.method().as_str().len(),
        7 + uri.scheme_str().map_or(0, str::len),
        10 + uri.authority().map_or(0, |a| a.as_str().len()),
        5 + uri.path_and_query().map_or(0, |p| p.as_str().len()),
    ];
    let fields = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + OVERHEAD);
    pseudo.iter().map(|n| n + OVERHEAD).chain(fields).sum()
}

/// Adds `Connection: close` to an HTTP/1.0 response whose body has no known length.
///
/// The response is also marked HTTP/1.0: hyper fixes up a response to an HTTP/1.0
/// keep-alive request while it still carries the default version, 1.1, by adding
/// `keep-alive` to its Connection field; marked 1.0, the close stands.
pub(crate) fn frame_for(version: Version, response: &mut Response<ResponseBody>) {
    use http_body::Body;
    if version == Version::HTTP_10
        && response.body().size_hint().exact().is_none()
        && !response.headers().contains_key(header::CONTENT_LENGTH)
    {
        *response.version_mut() = Version::HTTP_10;
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// The bytes of a reg-name (RFC 3986 §3.2.2: unreserved, sub-delims, and `%` of
/// pct-encoded), as a table: this runs on every request.
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            );
        byte += 1;
    }
    table
};

/// Whether `value` is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a
/// reg-name, an IPv4 address, or an IPv6 literal in brackets; no userinfo, no spaces.
/// An empty value is allowed (RFC 9110 §7.2, a target with no authority).
pub(crate) fn is_host(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(literal) => {
            let Some(end) = literal.iter().position(|b| *b == b']') else {
                return false;
            };
            let (address, rest) = (&literal[..end], &literal[end + 1..]);
            let ip = std::str::from_utf8(address)
                .ok()
                .and_then(|text| text.parse::<std::net::Ipv6Addr>().ok());
            if ip.is_none() {
                return false;
            }
            match rest {
                [] => return true,
                [b':', port @ ..] => (&b""[..], Some(port)),
                _ => return false,
            }
        }
        None => match value.iter().rposition(|b| *b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        },
    };
    let reg_name = host.iter().all(|b| REG_NAME[usize::from(*b)]);
    let port = port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    reg_name && port
}

fn bad_request(reason: &str) -> Response<ResponseBody> {
    // A client that sends such requests may not frame the next one as the server would.
    refusal(
        StatusCode::BAD_REQUEST,
        &format!("Bad Request: {reason}.\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, version: Version, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder()
            .method(method)
            .uri(target)
            .version(version);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(()).unwrap()
    }

    fn status(method: &str, target: &str, version: Version, hosts: &[&str]) -> Option<u16> {
        answer(&request(method, target, version, hosts)).map(|r| r.status().as_u16())
    }

    #[test]
    fn host_is_required_once_in_http_1_1_and_must_be_a_host() {
        let v11 = Version::HTTP_11;
        assert_eq!(status("GET", "/", v11, &["example.com"]), None);
        assert_eq!(status("GET", "/", v11, &["example.com:8080"]), None);
        assert_eq!(status("GET", "/", v11, &["[::1]:8080"]), None);
        assert_eq!(status("GET", "/", v11, &["127.0.0.1"]), None);
        assert_eq!(status("GET", "/", v11, &[""]), None);
        assert_eq!(status("GET", "/", v11, &[]), Some(400));
        assert_eq!(status("GET", "/", Version::HTTP_10, &[]), None);
        assert_eq!(status("GET", "/", Version::HTTP_2, &[]), None);
        assert_eq!(status("GET", "/", v11, &["a", "b"]), Some(400));
        for bad in [
            "a b",
            "user@evil.example",
            "example.com:http",
            "[::1",
            "[zz]:80",
            "[::1]x",
            "a/b",
            "example.com:123456",
        ] {
            assert_eq!(status("GET", "/", v11, &[bad]), Some(400), "{bad:?}");
        }
    }

    #[test]
    fn request_targets_follow_their_methods() {
        let v11 = Version::HTTP_11;
        assert_eq!(status("OPTIONS", "*", v11, &["h"]), Some(200));
        assert_eq!(status("GET", "*", v11, &["h"]), Some(400));
        assert_eq!(status("GET", "example.com:443", v11, &["h"]), Some(400));
        assert_eq!(status("CONNECT", "example.com:443", v11, &["h"]), Some(501));
        assert_eq!(status("GET", "http://example.com/x", v11, &["h"]), None);
        assert_eq!(status("OPTIONS", "/x", v11, &["h"]), None);
    }

    #[test]
    fn http2_field_sections_over_the_limit_get_431_on_their_stream() {
        let with_fields = |version: Version, bytes: usize| {
            let mut request = request("GET", "/", version, &["h"]);
            for i in 0..bytes / 1000 {
                let name = http::HeaderName::try_from(format!("x-{i}")).unwrap();
                let value = HeaderValue::from_str(&"v".repeat(1000)).unwrap();
                request.headers_mut().insert(name, value);
            }
            answer(&request).map(|response| response.status().as_u16())
        };
        assert_eq!(with_fields(Version::HTTP_2, 63_000), None);
        assert_eq!(with_fields(Version::HTTP_2, 65_000), Some(431));
        // HTTP/1.1 heads are hyper's to bound.
        assert_eq!(with_fields(Version::HTTP_11, 65_000), None);
        // No Connection field on HTTP/2, where it is not allowed (RFC 9113 §8.2.2).
        let mut request = request("GET", "/", Version::HTTP_2, &["h"]);
        request
            .headers_mut()
            .insert("x", HeaderValue::from_str(&"v".repeat(70_000)).unwrap());
        assert!(
            !answer(&request)
                .unwrap()
                .headers()
                .contains_key(header::CONNECTION)
        );
    }

    #[test]
    fn options_star_lists_the_methods_and_refusals_close_the_connection() {
        let options = answer(&request("OPTIONS", "*", Version::HTTP_11, &["h"])).unwrap();
        assert!(
            options.headers()[header::ALLOW]
                .to_str()
                .unwrap()
                .contains("GET")
        );
        assert!(!options.headers().contains_key(header::CONNECTION));
        let refused = answer(&request("GET", "*", Version::HTTP_11, &["h"])).unwrap();
        assert_eq!(refused.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn http_1_0_responses_of_unknown_length_close_the_connection() {
        let (stream, _sender) = ResponseBody::stream(Bytes::from_static(b"x"), 1);
        let mut unknown = Response::new(stream);
        frame_for(Version::HTTP_10, &mut unknown);
        assert_eq!(unknown.headers()[header::CONNECTION], "close");
        let mut known = Response::new(ResponseBody::full(Bytes::from_static(b"x")));
        frame_for(Version::HTTP_10, &mut known);
        assert!(!known.headers().contains_key(header::CONNECTION));
        let (stream, _sender) = ResponseBody::stream(Bytes::from_static(b"x"), 1);
        let mut chunked = Response::new(stream);
        frame_for(Version::HTTP_11, &mut chunked);
        assert!(!chunked.headers().contains_key(header::CONNECTION));
    }

    proptest::proptest! {
        // PROPTEST_CASES raises the count for a long run; CI runs the default.
        #[test]
        fn any_host_field_and_target_get_an_answer_or_pass_without_panic(
            host in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            target in "[ -~]{0,40}",
            method in proptest::sample::select(vec!["GET", "OPTIONS", "CONNECT", "POST", "HEAD"]),
        ) {
            let mut builder = Request::builder().method(method).version(Version::HTTP_11);
            if let Ok(uri) = target.parse::<http::Uri>() {
                builder = builder.uri(uri);
            }
            if let Ok(value) = HeaderValue::from_bytes(&host) {
                builder = builder.header(header::HOST, value);
            }
            if let Ok(request) = builder.body(()) {
                let _ = answer(&request);
            }
            // A Host that passes holds only host and port characters.
            if is_host(&host) {
                proptest::prop_assert!(!host.iter().any(|b| b" @/?#\r\n".contains(b)));
            }
        }
    }
}

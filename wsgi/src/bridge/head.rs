//! The response head an application gives `start_response`, checked without Python: the
//! status line (RFC 9112 §4), field names and values (RFC 9110 §5), Content-Length
//! (RFC 9110 §8.6) and the hop-by-hop fields PEP 3333 leaves to the server.

use std::borrow::Cow;
use std::cell::RefCell;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::body::ResponseBody;

/// Why a status or a field was refused: one sentence that names the part at fault and what
/// would be accepted, raised to the application as `ValueError`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HeadError(pub(crate) String);

/// Status and fields given to `start_response`, checked, not yet sent.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    /// The reason phrase, when it differs from the status code's canonical one.
    pub(crate) reason: Option<Bytes>,
    pub(crate) headers: HeaderMap,
    /// The application's Content-Length, if it gave one.
    pub(crate) content_length: Option<u64>,
    /// The application asked for `Connection: close`.
    pub(crate) close: bool,
}

impl Head {
    /// Whether the status forbids a body (RFC 9110 §6.4.1: 1xx, 204, 304).
    pub(crate) fn has_no_body(&self) -> bool {
        self.status.is_informational()
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
    }

    /// The response hyper sends: status, reason phrase when not canonical, fields, and
    /// `Connection: close` when the application asked for it.
    pub(crate) fn into_response(self, body: ResponseBody) -> Response<ResponseBody> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        if let Some(reason) = self.reason
            && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason)
        {
            response.extensions_mut().insert(reason);
        }
        if self.close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Hop-by-hop fields belong to the connection, which is the server's (PEP 3333).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Latin-1 bytes of a native string; PEP 3333 headers are latin-1. ASCII text (nearly
/// every header) is borrowed as it is. `what` names the text in the error, and is only
/// called when there is one.
pub(crate) fn latin1_bytes<'a>(
    text: &'a str,
    what: impl FnOnce() -> String,
) -> Result<Cow<'a, [u8]>, HeadError> {
    if text.is_ascii() {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    text.chars()
        .map(|c| u8::try_from(c as u32).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Cow::Owned)
        .ok_or_else(|| {
            HeadError(format!(
                "start_response(): {} {text:?} has characters outside latin-1",
                what()
            ))
        })
}

/// Checks a status line such as `200 OK`: three digits, a final status (200 to 999), and a
/// latin-1 reason phrase without CR, LF or NUL. Returns the status and the reason phrase
/// when it is not the canonical one (which hyper would send anyway).
pub(crate) fn check_status(text: &str) -> Result<(StatusCode, Option<Bytes>), HeadError> {
    let bad_status = || {
        HeadError(format!(
            "start_response(): status {text:?} is not of the form \"200 OK\" (three digits, a space, a reason phrase)"
        ))
    };
    let (code, reason) = text.split_once(' ').unwrap_or((text, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_status());
    }
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        // 1xx are not final responses; upgrades (101) are not supported.
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(bad_status)?;
    let reason = latin1_bytes(reason, || "reason phrase".to_owned())?;
    if reason.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(bad_status());
    }
    let reason = (status.canonical_reason().map(str::as_bytes) != Some(&reason[..])
        && !reason.is_empty())
    .then(|| Bytes::from(reason.into_owned()));
    Ok((status, reason))
}

/// What the server does with a response field: passes it on, drops it (hop-by-hop), or
/// frames the body by it (Content-Length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Plain,
    HopByHop,
    ContentLength,
}

/// Names kept per Python thread (a power of two).
const SEEN_NAMES: usize = 32;
/// Values kept per Python thread (a power of two).
const SEEN_VALUES: usize = 64;
/// The longest name or value kept, in bytes: longer ones rarely repeat.
const LONGEST_SEEN: usize = 96;

type Slots<T> = Vec<Option<(Box<[u8]>, T)>>;

/// The field names and values each Python thread has checked lately, so that the fields an
/// application sends with every response (`Content-Type: text/html; charset=utf-8`, its own
/// constant headers) are checked, and their values copied, once rather than per response.
/// Direct-mapped by a hash of the exact bytes: a new entry replaces whatever shared its
/// slot; a name or value longer than [`LONGEST_SEEN`], a Content-Length and a Set-Cookie
/// value are never kept. A hit hands out a clone (a reference count for a value).
struct Seen {
    names: Slots<(HeaderName, Role)>,
    values: Slots<HeaderValue>,
}

thread_local! {
    static SEEN: RefCell<Seen> = RefCell::new(Seen {
        names: (0..SEEN_NAMES).map(|_| None).collect(),
        values: (0..SEEN_VALUES).map(|_| None).collect(),
    });
}

/// FNV-1a over `bytes`, as an index below `slots` (a power of two).
fn seen_slot(bytes: &[u8], slots: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash as usize) & (slots - 1)
}

/// The entry for `bytes` in `slots`, made by `make` (and kept) when it is not there.
fn seen_lookup<T: Clone>(
    slots: &mut Slots<T>,
    bytes: &[u8],
    make: impl FnOnce(&[u8]) -> Result<T, HeadError>,
) -> Result<T, HeadError> {
    let index = seen_slot(bytes, slots.len());
    if let Some((key, entry)) = &slots[index]
        && **key == *bytes
    {
        return Ok(entry.clone());
    }
    let entry = make(bytes)?;
    slots[index] = Some((bytes.into(), entry.clone()));
    Ok(entry)
}

/// The checked name for `bytes`, and its role; made afresh, and not kept, when longer than
/// [`LONGEST_SEEN`] or while the thread is ending.
fn seen_name(
    bytes: &[u8],
    make: impl Fn(&[u8]) -> Result<(HeaderName, Role), HeadError>,
) -> Result<(HeaderName, Role), HeadError> {
    seen(bytes, |seen| &mut seen.names, make)
}

/// The checked value for `bytes`, as [`seen_name`] does for names.
fn seen_value(
    bytes: &[u8],
    make: impl Fn(&[u8]) -> Result<HeaderValue, HeadError>,
) -> Result<HeaderValue, HeadError> {
    seen(bytes, |seen| &mut seen.values, make)
}

/// The entry for `bytes` in the `slots` of this thread's [`Seen`], or `make(bytes)`.
fn seen<T: Clone>(
    bytes: &[u8],
    slots: impl FnOnce(&mut Seen) -> &mut Slots<T>,
    make: impl Fn(&[u8]) -> Result<T, HeadError>,
) -> Result<T, HeadError> {
    if bytes.len() > LONGEST_SEEN {
        return make(bytes);
    }
    SEEN.try_with(|seen| seen_lookup(slots(&mut seen.borrow_mut()), bytes, &make))
        .unwrap_or_else(|_| make(bytes))
}

/// The response fields, checked one at a time as the application listed them.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    map: HeaderMap,
    content_length: Option<u64>,
    close: bool,
}

impl Fields {
    /// Checks and adds one `(name, value)` pair. Hop-by-hop fields are dropped (with a
    /// warning), except `Connection: close`, which is honoured; Content-Length must be
    /// digits, and a repeated one must repeat the same value.
    pub(crate) fn add(&mut self, name_text: &str, value_text: &str) -> Result<(), HeadError> {
        let (name, role) = seen_name(name_text.as_bytes(), |bytes| {
            let name = HeaderName::from_bytes(bytes).map_err(|_| {
                HeadError(format!(
                    "start_response(): header name {name_text:?} is not a valid field name (RFC 9110 §5.1: letters, digits and !#$%&'*+-.^_`|~)"
                ))
            })?;
            let role = if name == header::CONTENT_LENGTH {
                Role::ContentLength
            } else if HOP_BY_HOP.contains(&name.as_str()) {
                Role::HopByHop
            } else {
                Role::Plain
            };
            Ok((name, role))
        })?;
        let value_bytes = latin1_bytes(value_text, || format!("the value of {name_text}"))?;
        let make = |bytes: &[u8]| {
            HeaderValue::from_bytes(bytes).map_err(|_| {
                HeadError(format!(
                    "start_response(): the value of header {name_text:?} contains a control character (CR, LF or NUL are not allowed)"
                ))
            })
        };
        // Lengths and cookies rarely repeat: kept, they would only push out values that do.
        let value = if role == Role::Plain && name != header::SET_COOKIE {
            seen_value(&value_bytes, make)?
        } else {
            make(&value_bytes)?
        };
        if role == Role::HopByHop {
            if name == header::CONNECTION && value_text.trim().eq_ignore_ascii_case("close") {
                self.close = true;
            } else {
                tracing::warn!(header = %name, "dropping a hop-by-hop header the application set (PEP 3333 leaves them to the server)");
            }
            return Ok(());
        }
        if role == Role::ContentLength {
            // RFC 9110 §8.6: digits only; the same value repeated is one value; two
            // different values would frame the body two ways.
            let text = value_text.trim();
            let length = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    HeadError(format!(
                        "start_response(): Content-Length {value_text:?} is not a whole number of bytes"
                    ))
                })?;
            return match self.content_length {
                Some(earlier) if earlier != length => Err(HeadError(format!(
                    "start_response(): two different Content-Length values, {earlier} and {length}"
                ))),
                Some(_) => Ok(()),
                None => {
                    self.content_length = Some(length);
                    // Sent as the application wrote it when that is already canonical
                    // (no spaces, no leading zeros): making a new value costs as much as
                    // the rest of the head.
                    let canonical = text.len() == value_text.len()
                        && (text.len() == 1 || !text.starts_with('0'));
                    let value = if canonical {
                        value
                    } else {
                        HeaderValue::from(length)
                    };
                    self.map.insert(header::CONTENT_LENGTH, value);
                    Ok(())
                }
            };
        }
        self.map.append(name, value);
        Ok(())
    }

    /// The head with `status` and `reason` (from [`check_status`]).
    pub(crate) fn into_head(self, status: StatusCode, reason: Option<Bytes>) -> Head {
        Head {
            status,
            reason,
            headers: self.map,
            content_length: self.content_length,
            close: self.close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: &str, fields: &[(&str, &str)]) -> Result<Head, HeadError> {
        let (status, reason) = check_status(status)?;
        let mut checked = Fields::default();
        for (name, value) in fields {
            checked.add(name, value)?;
        }
        Ok(checked.into_head(status, reason))
    }

    #[test]
    fn fields_seen_before_are_checked_the_same_way_again() {
        let long = "x".repeat(LONGEST_SEEN + 1);
        let fields = [
            ("Content-Type", "text/plain"),
            ("X-Long", long.as_str()),
            ("Content-Length", "5"),
            ("Connection", "close"),
        ];
        // Twice, so the second time is answered from what this thread has seen.
        for _ in 0..2 {
            let h = head("200 OK", &fields).unwrap();
            assert_eq!(h.headers["content-type"], "text/plain");
            assert_eq!(h.headers["x-long"], long.as_str());
            assert_eq!(h.content_length, Some(5));
            assert!(h.close && !h.headers.contains_key("connection"));
        }
        // Many distinct names and values share slots; each still comes out as given, and a
        // bad one is refused whatever was seen before.
        for round in 0..2 {
            for i in 0..200 {
                let (name, value) = (format!("X-Field-{i}"), format!("value {i}"));
                let h = head("200 OK", &[(&name, &value)]).unwrap();
                assert_eq!(h.headers[name.as_str()], value.as_str(), "round {round}");
            }
        }
        assert!(head("200 OK", &[("Bad Name", "x")]).is_err());
        assert!(head("200 OK", &[("X-Ok", "bad\r\nvalue")]).is_err());
    }

    #[test]
    fn content_length_is_sent_in_canonical_form() {
        for (given, sent) in [("13", "13"), (" 13 ", "13"), ("0013", "13"), ("0", "0")] {
            let head = head("200 OK", &[("Content-Length", given)]).unwrap();
            assert_eq!(
                head.content_length,
                Some(sent.parse().unwrap()),
                "{given:?}"
            );
            assert_eq!(head.headers[header::CONTENT_LENGTH], sent, "{given:?}");
        }
        for bad in ["", "-1", "1.5", "0x10", "12 13"] {
            let err = head("200 OK", &[("Content-Length", bad)]).unwrap_err();
            assert!(err.0.contains("whole number of bytes"), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn a_repeated_content_length_must_repeat_the_same_value() {
        let same = head(
            "200 OK",
            &[("Content-Length", "5"), ("content-length", "5")],
        )
        .unwrap();
        assert_eq!(same.content_length, Some(5));
        assert_eq!(
            same.headers.get_all(header::CONTENT_LENGTH).iter().count(),
            1
        );
        let err = head(
            "200 OK",
            &[("Content-Length", "5"), ("Content-Length", "6")],
        )
        .unwrap_err();
        assert!(err.0.contains("5 and 6"), "{err:?}");
    }

    #[test]
    fn header_values_are_latin1_and_reasons_kept_only_when_not_canonical() {
        let head_ = head("299 Quite Fine", &[("X-Caf", "caf\u{e9}")]).unwrap();
        assert_eq!(head_.headers["x-caf"].as_bytes(), b"caf\xe9");
        assert_eq!(head_.reason.as_deref(), Some(&b"Quite Fine"[..]));
        assert!(head("200 OK", &[]).unwrap().reason.is_none());
        let err = head("200 OK", &[("X-Snow", "\u{2603}")]).unwrap_err();
        assert!(err.0.contains("the value of X-Snow"), "{err:?}");
    }

    #[test]
    fn statuses_must_be_final_three_digit_codes_without_control_characters() {
        for bad in [
            "OK 200",
            "20 OK",
            "2000 OK",
            "100 Continue",
            "101 Switching",
            "200 O\rK",
            "abc OK",
        ] {
            let err = head(bad, &[]).unwrap_err();
            assert!(err.0.contains("is not of the form"), "{bad:?}: {err:?}");
        }
        assert_eq!(
            head("404 Not Found", &[]).unwrap().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(head("200 ", &[]).unwrap().reason, None);
        // A bare code is accepted (as before the split; PEP 3333 asks for a phrase).
        assert_eq!(head("200", &[]).unwrap().status, StatusCode::OK);
    }

    #[test]
    fn hop_by_hop_fields_are_dropped_but_connection_close_is_honoured() {
        let head = head(
            "200 OK",
            &[
                ("Transfer-Encoding", "chunked"),
                ("Keep-Alive", "timeout=5"),
                ("Connection", " Close "),
                ("X-Kept", "1"),
            ],
        )
        .unwrap();
        assert!(head.close);
        assert_eq!(head.headers.len(), 1);
        assert_eq!(head.headers["x-kept"], "1");
    }

    #[test]
    fn names_and_values_are_checked_against_rfc_9110() {
        let err = head("200 OK", &[("Bad Name", "x")]).unwrap_err();
        assert!(err.0.contains("not a valid field name"), "{err:?}");
        let err = head("200 OK", &[("X-Split", "a\r\nSet-Cookie: b")]).unwrap_err();
        assert!(err.0.contains("control character"), "{err:?}");
    }

    #[test]
    fn bodiless_statuses_are_known() {
        for (status, none) in [
            ("204 No Content", true),
            ("304 Not Modified", true),
            ("200 OK", false),
            ("404 Not Found", false),
        ] {
            assert_eq!(head(status, &[]).unwrap().has_no_body(), none, "{status}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_status_and_fields_are_checked_without_panic(
            status in "\\PC{0,40}",
            fields in proptest::collection::vec(("\\PC{0,20}", "\\PC{0,40}"), 0..8),
        ) {
            let _ = head(&status, &fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect::<Vec<_>>());
        }
    }
}

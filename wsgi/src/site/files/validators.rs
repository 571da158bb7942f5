//! Validators and conditional requests for files (RFC 9110 §8.8 and §13): a strong entity
//! tag and Last-Modified per representation, and the preconditions evaluated in the order
//! §13.2.2 gives.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, header};

/// A representation's validators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Validators {
    /// A strong entity tag, quotes included: `"<size>-<mtime>"` in hex, nanoseconds of the
    /// modification time, so that any write that changes the size or the time changes it.
    pub(crate) etag: String,
    /// The modification time, to whole seconds as HTTP dates carry it.
    pub(crate) last_modified: SystemTime,
}

impl Validators {
    /// The validators of a file of `len` bytes modified at `modified`.
    pub(crate) fn new(len: u64, modified: SystemTime) -> Validators {
        let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        Validators {
            etag: format!("\"{len:x}-{:x}\"", since.as_nanos()),
            last_modified: UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        }
    }

    /// `Last-Modified`'s value (an IMF-fixdate).
    pub(crate) fn last_modified_text(&self) -> String {
        httpdate::fmt_http_date(self.last_modified)
    }
}

/// What the preconditions of a request decide (RFC 9110 §13.2.2).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Go on with the request.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since in the
/// order of RFC 9110 §13.2.2, for a resource that exists with `validators`. A date that
/// does not parse is ignored, as §13.1.3 and §13.1.4 require.
pub(crate) fn evaluate(
    method: &Method,
    headers: &HeaderMap,
    validators: &Validators,
) -> Precondition {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let date = |name| text(name).and_then(|v| httpdate::parse_http_date(v.trim()).ok());
    // Step 1, else step 2.
    if let Some(list) = text(header::IF_MATCH) {
        if !list_matches(list, &validators.etag, Comparison::Strong) {
            return Precondition::Failed;
        }
    } else if let Some(since) = date(header::IF_UNMODIFIED_SINCE)
        && validators.last_modified > since
    {
        return Precondition::Failed;
    }
    let safe = matches!(*method, Method::GET | Method::HEAD);
    // Step 3, else step 4.
    if let Some(list) = text(header::IF_NONE_MATCH) {
        if list_matches(list, &validators.etag, Comparison::Weak) {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe
        && let Some(since) = date(header::IF_MODIFIED_SINCE)
        && validators.last_modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether a Range request may be served as ranges (RFC 9110 §13.1.5): true without
/// If-Range; with it, only for a strong match of the entity tag, or a date equal to
/// Last-Modified. Anything else (a weak tag, another date, garbage) means the whole
/// representation.
pub(crate) fn if_range_holds(headers: &HeaderMap, validators: &Validators) -> bool {
    let Some(value) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(value) = value.to_str().map(str::trim) else {
        return false;
    };
    if value.starts_with('"') {
        return value == validators.etag;
    }
    if value.starts_with("W/") {
        return false;
    }
    httpdate::parse_http_date(value).is_ok_and(|date| date == validators.last_modified)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Both tags strong and equal (RFC 9110 §8.8.3.2).
    Strong,
    /// Equal once `W/` is set aside.
    Weak,
}

/// Whether an If-Match or If-None-Match value (`*`, or a list of entity tags) matches
/// `etag`, a strong tag. Malformed members match nothing.
fn list_matches(list: &str, etag: &str, comparison: Comparison) -> bool {
    if list.trim() == "*" {
        return true;
    }
    list.split(',').map(str::trim).any(|member| {
        let (weak, tag) = match member.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, member),
        };
        let well_formed = tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"');
        well_formed && tag == etag && !(weak && comparison == Comparison::Strong)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators() -> Validators {
        Validators::new(1234, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    fn decide(method: Method, fields: &[(&str, &str)]) -> Precondition {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        evaluate(&method, &headers, &validators())
    }

    #[test]
    fn the_entity_tag_is_strong_and_changes_with_size_and_time() {
        let v = validators();
        assert_eq!(
            v.etag,
            format!("\"4d2-{:x}\"", 1_700_000_000u128 * 1_000_000_000)
        );
        assert_ne!(Validators::new(1235, v.last_modified).etag, v.etag);
        let later = v.last_modified + Duration::from_nanos(1);
        assert_ne!(Validators::new(1234, later).etag, v.etag);
        assert_eq!(v.last_modified_text(), "Tue, 14 Nov 2023 22:13:20 GMT");
    }

    #[test]
    fn preconditions_follow_rfc_9110_section_13_2_2() {
        use Precondition::*;
        let etag = validators().etag;
        let weak = format!("W/{etag}");
        let listed = format!("\"other\", {etag}");
        let date = "Tue, 14 Nov 2023 22:13:20 GMT";
        let before = "Tue, 14 Nov 2023 22:13:19 GMT";
        type Case<'a> = (Method, Vec<(&'a str, &'a str)>, Precondition);
        let cases: Vec<Case<'_>> = vec![
            (Method::GET, vec![], Proceed),
            // If-None-Match: weak comparison, 304 for GET and HEAD.
            (Method::GET, vec![("if-none-match", &etag)], NotModified),
            (Method::HEAD, vec![("if-none-match", &weak)], NotModified),
            (Method::GET, vec![("if-none-match", &listed)], NotModified),
            (Method::GET, vec![("if-none-match", "*")], NotModified),
            // `*` is only valid alone.
            (
                Method::GET,
                vec![("if-none-match", "\"other\", *")],
                Proceed,
            ),
            (Method::GET, vec![("if-none-match", "\"other\"")], Proceed),
            // If-Modified-Since, ignored when If-None-Match is present.
            (Method::GET, vec![("if-modified-since", date)], NotModified),
            (Method::GET, vec![("if-modified-since", before)], Proceed),
            (
                Method::GET,
                vec![("if-none-match", "\"other\""), ("if-modified-since", date)],
                Proceed,
            ),
            (
                Method::GET,
                vec![("if-modified-since", "yesterday")],
                Proceed,
            ),
            // If-Match: strong comparison, 412.
            (Method::GET, vec![("if-match", &etag)], Proceed),
            (Method::GET, vec![("if-match", "*")], Proceed),
            (Method::GET, vec![("if-match", &weak)], Failed),
            (Method::GET, vec![("if-match", "\"other\"")], Failed),
            // If-Unmodified-Since, ignored when If-Match is present.
            (Method::GET, vec![("if-unmodified-since", before)], Failed),
            (Method::GET, vec![("if-unmodified-since", date)], Proceed),
            (
                Method::GET,
                vec![("if-match", &etag), ("if-unmodified-since", before)],
                Proceed,
            ),
            (
                Method::GET,
                vec![("if-unmodified-since", "garbage")],
                Proceed,
            ),
            // Step 1 before step 3.
            (
                Method::GET,
                vec![("if-match", "\"other\""), ("if-none-match", &etag)],
                Failed,
            ),
            // If-None-Match on an unsafe method fails.
            (Method::POST, vec![("if-none-match", &etag)], Failed),
        ];
        for (method, fields, expected) in cases {
            assert_eq!(
                decide(method.clone(), &fields),
                expected,
                "{method} {fields:?}"
            );
        }
    }

    #[test]
    fn if_range_needs_a_strong_tag_or_the_exact_date() {
        let v = validators();
        let holds = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_RANGE, value.parse().unwrap());
            if_range_holds(&headers, &v)
        };
        assert!(if_range_holds(&HeaderMap::new(), &v));
        assert!(holds(&v.etag));
        assert!(!holds(&format!("W/{}", v.etag)));
        assert!(!holds("\"other\""));
        assert!(holds("Tue, 14 Nov 2023 22:13:20 GMT"));
        assert!(!holds("Tue, 14 Nov 2023 22:13:21 GMT"));
        assert!(!holds("garbage"));
    }
}

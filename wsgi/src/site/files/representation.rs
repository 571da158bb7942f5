//! Which representation of a file to send, and how to label it: the content type from the
//! file's extension, and the content coding of a precompressed sibling the client accepts
//! (RFC 9110 §8.3, §8.4 and §12.5.3).

use std::collections::HashMap;
use std::path::Path;

/// Precompressed siblings, in the server's order of preference: the coding's name in
/// Accept-Encoding and Content-Encoding, and the suffix of the sibling file (`app.js.br`).
pub(crate) const CODINGS: [(&str, &str); 3] = [("br", "br"), ("zstd", "zst"), ("gzip", "gz")];

/// The codings of [`CODINGS`] the client accepts, best first: by q-value, then in the
/// server's order. An absent Accept-Encoding accepts none (the identity representation
/// serves everyone); `*` stands for any coding not named; `x-gzip` is `gzip` (RFC 9110
/// §12.5.3); `q=0` refuses.
pub(crate) fn acceptable(accept_encoding: Option<&str>) -> Vec<&'static str> {
    let Some(value) = accept_encoding else {
        return Vec::new();
    };
    let mut named: Vec<(String, u16)> = Vec::new();
    for member in value.split(',') {
        let mut params = member.split(';');
        let coding = params.next().unwrap_or("").trim().to_ascii_lowercase();
        if coding.is_empty() {
            continue;
        }
        let coding = if coding == "x-gzip" {
            "gzip".to_owned()
        } else {
            coding
        };
        let q = params
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .find_map(quality)
            .unwrap_or(1000);
        named.push((coding, q));
    }
    let star = named.iter().find(|(c, _)| c == "*").map(|(_, q)| *q);
    let mut chosen: Vec<(u16, usize, &'static str)> = CODINGS
        .iter()
        .enumerate()
        .filter_map(|(order, (coding, _))| {
            let q = named
                .iter()
                .find(|(c, _)| c == coding)
                .map(|(_, q)| *q)
                .or(star)?;
            (q > 0).then_some((q, order, *coding))
        })
        .collect();
    chosen.sort_by_key(|(q, order, _)| (std::cmp::Reverse(*q), *order));
    chosen.into_iter().map(|(_, _, coding)| coding).collect()
}

/// A q-value in thousandths (RFC 9110 §12.4.2), or None if malformed.
fn quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The sibling suffix of a coding of [`CODINGS`].
pub(crate) fn suffix(coding: &str) -> &'static str {
    CODINGS
        .iter()
        .find(|(c, _)| *c == coding)
        .map_or("", |(_, suffix)| suffix)
}

/// The Content-Type of `path`: an override for its extension (keys lower case, without
/// the dot), else `mime_guess`'s table, else the override for the key `""` (Twisted's
/// default type, `--mime-type TYPE`), else `application/octet-stream`; text types, JavaScript and JSON get `charset=utf-8` when
/// they name no charset.
pub(crate) fn content_type(path: &Path, overrides: &HashMap<String, String>) -> String {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let chosen = extension
        .as_deref()
        .and_then(|e| overrides.get(e).cloned())
        .or_else(|| {
            extension
                .as_deref()
                .and_then(|e| mime_guess::from_ext(e).first_raw())
                .map(str::to_owned)
        })
        .or_else(|| overrides.get("").cloned())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let textual = chosen.starts_with("text/")
        || chosen.starts_with("application/javascript")
        || chosen.starts_with("application/json");
    if textual && !chosen.to_ascii_lowercase().contains("charset=") {
        format!("{chosen}; charset=utf-8")
    } else {
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codings_are_chosen_by_quality_then_the_servers_order() {
        assert_eq!(acceptable(None), Vec::<&str>::new());
        assert_eq!(acceptable(Some("")), Vec::<&str>::new());
        assert_eq!(
            acceptable(Some("gzip, deflate, br, zstd")),
            ["br", "zstd", "gzip"]
        );
        assert_eq!(acceptable(Some("gzip;q=1.0, br;q=0.5")), ["gzip", "br"]);
        assert_eq!(acceptable(Some("br;q=0, gzip")), ["gzip"]);
        assert_eq!(acceptable(Some("*")), ["br", "zstd", "gzip"]);
        assert_eq!(acceptable(Some("*;q=0.5, gzip")), ["gzip", "br", "zstd"]);
        assert_eq!(acceptable(Some("*;q=0, br")), ["br"]);
        assert_eq!(acceptable(Some("x-gzip")), ["gzip"]);
        assert_eq!(acceptable(Some("identity")), Vec::<&str>::new());
        assert_eq!(acceptable(Some("GZIP; Q=0.3, br;q=0.300")), ["br", "gzip"]);
        // A malformed q-value counts as absent (1).
        assert_eq!(acceptable(Some("gzip;q=2, br;q=0.9")), ["gzip", "br"]);
    }

    #[test]
    fn types_come_from_the_extension_with_utf8_for_text() {
        let none = HashMap::new();
        let of = |name: &str, overrides: &HashMap<String, String>| {
            content_type(Path::new(name), overrides)
        };
        assert_eq!(of("index.html", &none), "text/html; charset=utf-8");
        assert_eq!(of("APP.CSS", &none), "text/css; charset=utf-8");
        assert_eq!(of("app.js", &none), "text/javascript; charset=utf-8");
        assert_eq!(of("data.json", &none), "application/json; charset=utf-8");
        assert_eq!(of("logo.png", &none), "image/png");
        assert_eq!(of("archive", &none), "application/octet-stream");
        assert_eq!(of("x.unknownext", &none), "application/octet-stream");
        let overrides = HashMap::from([
            ("foo".to_owned(), "text/x-foo".to_owned()),
            ("png".to_owned(), "image/x-png".to_owned()),
            ("txt".to_owned(), "text/plain; charset=latin-1".to_owned()),
        ]);
        assert_eq!(of("a.foo", &overrides), "text/x-foo; charset=utf-8");
        assert_eq!(of("a.png", &overrides), "image/x-png");
        assert_eq!(of("a.txt", &overrides), "text/plain; charset=latin-1");
        let default = HashMap::from([(String::new(), "text/plain".to_owned())]);
        assert_eq!(of("README", &default), "text/plain; charset=utf-8");
        assert_eq!(of("a.png", &default), "image/png");
    }
}

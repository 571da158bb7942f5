//! From the part of a request path after the mount prefix to a path inside the served
//! directory, refusing every form of escape before the file system is asked anything.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A request path resolved inside the directory: the relative path (no `..`, no `.`, no
/// empty or hidden segment), and whether the request named it as a directory (a trailing
/// slash).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) relative: PathBuf,
    pub(crate) as_directory: bool,
}

/// Resolves `raw` (the request's path as sent) and `rest` (the percent-decoded path after
/// the mount prefix) to a path inside the directory, or `None` for a path that is never
/// served, which the caller answers 404 without saying why:
/// - an encoded `/`, `\` or NUL anywhere in the raw path (`%2F`, `%5C`, `%00`): a name
///   would otherwise hide a separator from the checks;
/// - a `.` or `..` segment, a backslash or a NUL in any segment;
/// - a segment starting with `.` (a dot-file or dot-directory) unless `dotfiles`.
///
/// Empty segments (`a//b`) are skipped, as nginx merges slashes.
pub(crate) fn resolve(raw: &str, rest: &[u8], dotfiles: bool) -> Option<Resolved> {
    let lower = raw.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'f') | (b'5', b'c') | (b'0', b'0')
            )
    });
    if lower {
        return None;
    }
    let mut relative = PathBuf::new();
    for segment in rest.split(|b| *b == b'/') {
        if segment.is_empty() {
            continue;
        }
        if segment == b"." || segment == b".." || segment.contains(&b'\\') || segment.contains(&0) {
            return None;
        }
        if segment[0] == b'.' && !dotfiles {
            return None;
        }
        relative.push(OsStr::from_bytes(segment));
    }
    Some(Resolved {
        relative,
        as_directory: rest.is_empty() || rest.ends_with(b"/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(raw: &str, dotfiles: bool) -> Option<(String, bool)> {
        let rest = percent_encoding::percent_decode(raw.as_bytes()).collect::<Vec<u8>>();
        resolve(raw, &rest, dotfiles)
            .map(|r| (r.relative.to_string_lossy().into_owned(), r.as_directory))
    }

    #[test]
    fn escapes_are_refused_before_the_file_system_is_asked() {
        // (path after the prefix, as sent) -> refused
        let refused = [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/%2e%2e/etc/passwd",
            "/..%2fetc/passwd",
            "/..%2Fetc%2Fpasswd",
            "/a%2f..%2f..%2fetc",
            "/..%5c..%5cetc",
            "/a\\..\\b",
            "/file%00.txt",
            "/./a",
            "/a/.",
            "/.env",
            "/.git/config",
            "/a/.hidden/b",
            "/%2e%65nv",
        ];
        for path in refused {
            assert_eq!(resolved(path, false), None, "{path}");
        }
    }

    #[test]
    fn plain_paths_resolve_inside_the_directory() {
        assert_eq!(resolved("", false), Some((String::new(), true)));
        assert_eq!(resolved("/", false), Some((String::new(), true)));
        assert_eq!(resolved("/a.css", false), Some(("a.css".into(), false)));
        assert_eq!(
            resolved("/img/x.png", false),
            Some(("img/x.png".into(), false))
        );
        assert_eq!(resolved("/img/", false), Some(("img".into(), true)));
        assert_eq!(
            resolved("//img//x.png", false),
            Some(("img/x.png".into(), false))
        );
        assert_eq!(
            resolved("/caf%C3%A9.txt", false),
            Some(("café.txt".into(), false))
        );
        assert_eq!(resolved("/a%20b", false), Some(("a b".into(), false)));
        // Dot-files when asked for, never dot segments.
        assert_eq!(
            resolved("/.well-known/x", true),
            Some((".well-known/x".into(), false))
        );
        assert_eq!(resolved("/..", true), None);
    }

    proptest::proptest! {
        #[test]
        fn no_input_resolves_outside_the_directory(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            dotfiles in proptest::bool::ANY,
        ) {
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let rest: Vec<u8> = percent_encoding::percent_decode(raw.as_bytes()).collect();
            if let Some(resolved) = resolve(&raw, &rest, dotfiles) {
                use std::path::Component;
                for component in resolved.relative.components() {
                    proptest::prop_assert!(matches!(component, Component::Normal(_)), "{:?}", resolved);
                    let name = component.as_os_str().as_bytes();
                    proptest::prop_assert!(!name.contains(&0) && !name.contains(&b'\\'));
                    proptest::prop_assert!(dotfiles || !name.starts_with(b"."));
                }
            }
        }
    }
}

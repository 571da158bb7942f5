//! Properties over arbitrary input: nothing panics, and quoting round-trips.

use proptest::prelude::*;
use torsion_endpoints::{Descriptor, Endpoint, quote};

/// Strings rich in the grammar's special characters.
fn tricky() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(vec![':', '=', '\\', 'a', '0', '/', '.', ' ', 'é', '\0']),
            1 => any::<char>(),
        ],
        0..24,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        let _ = Descriptor::parse(&text);
        let _ = Endpoint::parse(&text);
    }

    #[test]
    fn arbitrary_arguments_to_every_kind_never_panic(
        kind in prop::sample::select(vec!["tcp", "TCP6", "unix", "systemd", "tcp6"]),
        tail in tricky(),
    ) {
        let text = format!("{kind}:{tail}");
        if let Ok(endpoint) = Endpoint::parse(&text) {
            // Whatever parses prints back to an equal endpoint.
            let canonical = endpoint.to_string();
            prop_assert_eq!(Endpoint::parse(&canonical).unwrap(), endpoint);
        }
    }

    #[test]
    fn quoted_arguments_parse_back(
        kind in "[a-z][a-z0-9]{0,6}",
        args in prop::collection::vec(tricky(), 0..5),
        kwargs in prop::collection::vec((tricky(), tricky()), 0..5),
    ) {
        let mut text = quote(&kind).into_owned();
        for arg in &args {
            text.push(':');
            text.push_str(&quote(arg));
        }
        for (key, value) in &kwargs {
            text.push_str(&format!(":{}={}", quote(key), quote(value)));
        }
        let parsed = Descriptor::parse(&text).unwrap();
        prop_assert_eq!(parsed.kind(), kind.as_str());
        prop_assert_eq!(parsed.args(), args.as_slice());
        for (key, _) in &kwargs {
            // The last value given for a key wins.
            let last = kwargs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            prop_assert_eq!(parsed.kwarg(key), last);
        }
        // And the canonical form reads back to the same descriptor.
        prop_assert_eq!(Descriptor::parse(&parsed.to_string()).unwrap(), parsed);
    }

    #[test]
    fn a_quoted_path_is_one_unix_address(path in "/[^\0]{1,40}") {
        let endpoint = Endpoint::parse(&format!("unix:{}", quote(&path))).unwrap();
        let unix = endpoint.downcast_ref::<torsion_endpoints::kinds::UnixEndpoint>().unwrap();
        prop_assert_eq!(unix.path(), std::path::Path::new(&path));
    }
}

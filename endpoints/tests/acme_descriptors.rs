//! `txacme:`, `le:` and `lets:` descriptors: what they take, what they pass on to the inner
//! endpoint, how they print, and the errors they give.

#![cfg(feature = "acme")]

use std::time::Duration;

use torsion_endpoints::acme::{AcmeEndpoint, Challenge, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
use torsion_endpoints::kinds::TcpEndpoint;
use torsion_endpoints::{Endpoint, Error};

fn acme(text: &str) -> AcmeEndpoint {
    let endpoint = Endpoint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let acme = endpoint.downcast_ref::<AcmeEndpoint>().unwrap().clone();
    assert_eq!(
        Endpoint::parse(&endpoint.to_string()).unwrap(),
        endpoint,
        "{endpoint} parses back"
    );
    acme
}

#[test]
fn the_issues_example_uses_lets_encrypt_with_tls_alpn_01() {
    let e = acme("txacme:/srv/certs:tcp:443");
    assert_eq!(e.path().to_str(), Some("/srv/certs"));
    assert_eq!(e.settings().directory_url, LETS_ENCRYPT);
    assert_eq!(e.settings().challenge, Challenge::TlsAlpn01);
    assert_eq!(e.settings().timeout, Duration::from_secs(120));
    assert!(e.settings().domains.is_empty() && e.settings().email.is_none());
    assert_eq!(e.inner().to_string(), "tcp:443");
    assert_eq!(
        Endpoint::parse("txacme:/srv/certs:tcp:443")
            .unwrap()
            .to_string(),
        "txacme:/srv/certs:tcp:443"
    );
}

#[test]
fn le_and_lets_choose_production_and_staging() {
    assert_eq!(acme("le:/c:tcp:443").settings().directory_url, LETS_ENCRYPT);
    assert_eq!(
        acme("lets:/c:tcp:443").settings().directory_url,
        LETS_ENCRYPT_STAGING
    );
    assert_eq!(
        Endpoint::parse("LETS:/c:tcp:443").unwrap().to_string(),
        "lets:/c:tcp:443"
    );
}

#[test]
fn acme_keywords_are_consumed_and_the_rest_go_to_the_inner_endpoint() {
    let e = acme(
        r"txacme:/c:directory=https\://127.0.0.1\:14000/dir:email=ops@example.com:cacert=/etc/pebble.pem:challenge=http-01:domains=A.example.com, b.example.com:timeout=30:tcp:8443:interface=127.0.0.1:backlog=9",
    );
    let s = e.settings();
    assert_eq!(s.directory_url, "https://127.0.0.1:14000/dir");
    assert_eq!(s.email.as_deref(), Some("ops@example.com"));
    assert_eq!(
        s.cacert.as_deref().and_then(|p| p.to_str()),
        Some("/etc/pebble.pem")
    );
    assert_eq!(s.challenge, Challenge::Http01);
    assert_eq!(s.domains, ["a.example.com", "b.example.com"]);
    assert_eq!(s.timeout, Duration::from_secs(30));
    let tcp = e.inner().downcast_ref::<TcpEndpoint>().unwrap();
    assert_eq!(
        e.inner().to_string(),
        "tcp:8443:interface=127.0.0.1:backlog=9",
        "{tcp:?}"
    );
}

#[test]
fn acme_wraps_any_inner_endpoint() {
    let e = acme("txacme:/c:unix:/run/tls.sock:mode=600");
    assert_eq!(e.inner().kind(), "unix");
}

/// Checks that each descriptor is refused with an error naming its keyword and saying
/// what would be accepted.
fn refused(cases: &[(&str, &str, &str)]) {
    for &(text, keyword, accepted) in cases {
        match Endpoint::parse(text) {
            Err(Error::InvalidValue {
                argument, expected, ..
            }) => {
                assert_eq!(argument, keyword, "{text}");
                assert!(expected.contains(accepted), "{text}: {expected}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn bad_values_name_the_keyword_and_what_is_accepted() {
    refused(&[
        (
            "txacme:/c:challenge=dns-01:tcp:443",
            "challenge",
            "tls-alpn-01 or http-01",
        ),
        (
            "txacme:/c:directory=ftp\\://x:tcp:443",
            "directory",
            "ACME directory URL",
        ),
        ("txacme:/c:email=nobody:tcp:443", "email", "e-mail address"),
        (
            "txacme:/c:domains=*.example.com:tcp:443",
            "domains",
            "no wildcards",
        ),
        (
            "txacme:/c:domains=localhost:tcp:443",
            "domains",
            "host names",
        ),
        (
            "txacme:/c:timeout=0:tcp:443",
            "timeout",
            "whole number of seconds",
        ),
        (
            "txacme:/c:timeout=soon:tcp:443",
            "timeout",
            "whole number of seconds",
        ),
    ]);
}

#[test]
fn missing_parts_are_errors_with_the_usage() {
    for (text, argument) in [
        ("txacme:", "DIRECTORY"),
        ("le::tcp:443", "DIRECTORY"),
        ("lets:/c", "endpoint descriptor"),
    ] {
        match Endpoint::parse(text) {
            Err(Error::MissingArgument {
                argument: found,
                usage,
                ..
            }) => {
                assert_eq!(found, argument, "{text}");
                assert!(usage.contains("/srv/certs:tcp:443"), "{usage}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // An unknown keyword reaches the inner endpoint, which names it.
    let err = Endpoint::parse("txacme:/c:colour=blue:tcp:443").unwrap_err();
    assert!(
        matches!(&err, Error::UnknownKeyword { keyword, kind, .. } if keyword == "colour" && kind == "tcp"),
        "{err}"
    );
}

#[cfg(feature = "redis")]
#[test]
fn a_fleets_store_is_given_with_its_prefix_ca_and_lock_and_prints_back() {
    let e = acme(
        r"txacme:/srv/certs:store=rediss\://\:s3cret@10.0.0.5\:6380/2:prefix=site1\:acme:storeca=/etc/redis-ca.pem:lock=30:tcp:443",
    );
    let s = e.settings();
    assert_eq!(s.store.as_deref(), Some("rediss://:s3cret@10.0.0.5:6380/2"));
    assert_eq!(s.prefix, "site1:acme");
    assert_eq!(
        s.store_ca.as_deref().and_then(|p| p.to_str()),
        Some("/etc/redis-ca.pem")
    );
    assert_eq!(s.lock, Duration::from_secs(30));
    assert_eq!(e.inner().to_string(), "tcp:443");
    // The defaults are not printed.
    let plain = acme(r"le:/c:store=redis\://127.0.0.1\:6379/0:tcp:443");
    assert_eq!(
        plain.settings().prefix,
        torsion_endpoints::acme::DEFAULT_PREFIX
    );
    assert_eq!(plain.settings().lock, torsion_endpoints::acme::DEFAULT_LOCK);
    let printed = Endpoint::parse(r"le:/c:store=redis\://127.0.0.1\:6379/0:tcp:443")
        .unwrap()
        .to_string();
    assert!(
        printed.contains(r"store=redis\://127.0.0.1\:6379/0"),
        "{printed}"
    );
    assert!(
        !printed.contains("prefix=") && !printed.contains("lock="),
        "{printed}"
    );
}

#[cfg(feature = "redis")]
#[test]
fn bad_store_settings_name_the_keyword_and_what_is_accepted() {
    refused(&[
        (
            r"txacme:/c:store=http\://10.0.0.5:tcp:443",
            "store",
            "redis://[:password@]host[:port][/db]",
        ),
        (
            r"txacme:/c:store=redis\://10.0.0.5\:notaport:tcp:443",
            "store",
            "Redis URL",
        ),
        (
            "txacme:/c:prefix=site*:tcp:443",
            "prefix",
            "letters, digits",
        ),
        (
            "txacme:/c:lock=0:tcp:443",
            "lock",
            "whole number of seconds",
        ),
        ("txacme:/c:storeca=:tcp:443", "storeca", "PEM file"),
    ]);
    // Nor is it in the descriptor the error quotes, whichever keyword is at fault.
    let err = Endpoint::parse(r"txacme:/c:store=redis\://\:s3cret@h\:6379/0:lock=0:tcp:443")
        .unwrap_err()
        .to_string();
    assert!(err.contains("lock") && !err.contains("s3cret"), "{err}");
    let e = acme(r"txacme:/c:store=redis\://\:s3cret@h\:6379/0:tcp:443");
    assert!(!format!("{:?}", e.settings()).contains("s3cret"));
    // The refused value is named with its password left out.
    match Endpoint::parse(r"txacme:/c:store=redis\://\:s3cret@h\:99999999/0:tcp:443") {
        Err(Error::InvalidValue { value, .. }) => {
            assert_eq!(value, "redis://:***@h:99999999/0");
        }
        other => panic!("{other:?}"),
    }
}

#[cfg(not(feature = "redis"))]
#[test]
fn a_store_needs_the_redis_feature() {
    let err = Endpoint::parse(r"txacme:/c:store=redis\://127.0.0.1\:6379:tcp:443").unwrap_err();
    assert!(err.to_string().contains("feature redis"), "{err}");
}

//! Properties over arbitrary input: nothing panics, quoting round-trips, and every built-in
//! kind prints a parsed endpoint in a form that parses back to the same endpoint, with the
//! same settings (not only an equal printed form: a setting the printer dropped would print
//! the same twice and go unnoticed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
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

/// Every registered kind: the four built without features, and those of `tls` and `acme`.
fn every_kind() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut kinds = vec!["tcp", "TCP6", "unix", "systemd", "tcp6"];
    #[cfg(feature = "tls")]
    kinds.extend(["ssl", "txsni", "tls", "TLS"]);
    #[cfg(feature = "acme")]
    kinds.extend(["txacme", "le", "lets"]);
    kinds
}

/// A file or directory path, never empty, with the characters a descriptor must quote
/// (`:`, `=`, `\`), spaces, and now and then any character at all.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(vec![
                '/', 'a', 'Z', '0', '.', '-', '_', ':', '=', '\\', ' ', 'é',
            ]),
            1 => any::<char>(),
        ],
        1..24,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// An IPv4 or IPv6 address, the unspecified ones included.
fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<[u16; 8]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

fn backlog() -> impl Strategy<Value = u32> {
    prop_oneof![Just(50u32), 0..=i32::MAX as u32]
}

/// A descriptor's text: `kind` (in upper case if `upper`), then `params`, given in the
/// kind's positional order (`None`: left out). The first `positional` of them are written
/// as positionals, as far as none is left out before them; the rest as keywords, in the
/// order of their keys in `order`. Every value is quoted.
fn descriptor_text(
    kind: &str,
    upper: bool,
    params: &[(&str, Option<String>)],
    positional: usize,
    order: &[u8],
) -> String {
    let mut text = if upper {
        kind.to_uppercase()
    } else {
        kind.to_owned()
    };
    let leading = params
        .iter()
        .take_while(|(_, value)| value.is_some())
        .count()
        .min(positional);
    for (_, value) in &params[..leading] {
        text.push(':');
        text.push_str(&quote(value.as_deref().unwrap()));
    }
    let mut keywords: Vec<(u8, &str, &str)> = params[leading..]
        .iter()
        .enumerate()
        .filter_map(|(i, (key, value))| {
            let value = value.as_deref()?;
            Some((order.get(i).copied().unwrap_or(0), *key, value))
        })
        .collect();
    keywords.sort_by_key(|(rank, _, _)| *rank);
    for (_, key, value) in keywords {
        text.push_str(&format!(":{key}={}", quote(value)));
    }
    text
}

/// Parses `text`, checks the endpoint with `check`, prints it, parses that, and checks the
/// result again: it must be equal, with the same settings (its `Debug` form shows every
/// field, where equality compares only what is printed), and print the same.
fn round_trip(
    text: &str,
    check: impl Fn(&Endpoint) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let endpoint = Endpoint::parse(text)
        .map_err(|err| TestCaseError::fail(format!("{text:?} does not parse: {err}")))?;
    check(&endpoint).map_err(|err| TestCaseError::fail(format!("{text:?}: {err}")))?;
    let canonical = endpoint.to_string();
    let again = Endpoint::parse(&canonical).map_err(|err| {
        TestCaseError::fail(format!(
            "{text:?} prints as {canonical:?}, which does not parse: {err}"
        ))
    })?;
    check(&again)
        .map_err(|err| TestCaseError::fail(format!("{text:?} printed as {canonical:?}: {err}")))?;
    prop_assert_eq!(&again, &endpoint);
    prop_assert_eq!(format!("{again:?}"), format!("{endpoint:?}"));
    prop_assert_eq!(again.to_string(), canonical);
    Ok(())
}

/// The text of a valid `tcp:`, `tcp6:`, `unix:` or `systemd:` descriptor, in any of the
/// ways it may be written.
fn plain() -> impl Strategy<Value = String> {
    let order = prop::collection::vec(any::<u8>(), 4);
    let tcp = (
        prop_oneof![
            // tcp: takes either family; tcp6: IPv6 only.
            prop::option::of(any_ip()).prop_map(|ip| (false, ip)),
            prop::option::of(any_ip().prop_filter("IPv6", IpAddr::is_ipv6))
                .prop_map(|ip| (true, ip)),
        ],
        any::<u16>(),
        prop::option::of(backlog()),
        0..4usize,
        order.clone(),
        any::<bool>(),
    )
        .prop_map(
            |((six, interface), port, backlog, positional, order, upper)| {
                let port = Some(port.to_string());
                let interface = interface.map(|ip| ip.to_string());
                let backlog = backlog.map(|b| b.to_string());
                if six {
                    let params = [
                        ("port", port),
                        ("backlog", backlog),
                        ("interface", interface),
                    ];
                    descriptor_text("tcp6", upper, &params, positional, &order)
                } else {
                    let params = [
                        ("port", port),
                        ("interface", interface),
                        ("backlog", backlog),
                    ];
                    descriptor_text("tcp", upper, &params, positional, &order)
                }
            },
        );
    let unix = (
        path(),
        prop::option::of(0..=0o7777u32),
        prop::option::of(backlog()),
        prop::option::of(0..3u8),
        0..5usize,
        order.clone(),
        any::<bool>(),
    )
        .prop_map(
            |(address, mode, backlog, lockfile, positional, order, upper)| {
                let params = [
                    ("address", Some(address)),
                    ("mode", mode.map(|m| format!("{m:o}"))),
                    ("backlog", backlog.map(|b| b.to_string())),
                    ("lockfile", lockfile.map(|l| l.to_string())),
                ];
                descriptor_text("unix", upper, &params, positional, &order)
            },
        );
    let systemd = (
        prop::sample::select(vec!["INET", "INET6", "UNIX", "inet6"]),
        prop_oneof![
            any::<u16>().prop_map(|i| (Some(i.to_string()), None)),
            "[a-zA-Z0-9_.-]{1,12}".prop_map(|name| (None, Some(name))),
        ],
        0..2usize,
        order,
    )
        .prop_map(|(domain, (index, name), positional, order)| {
            let params = [
                ("domain", Some(domain.to_owned())),
                ("index", index),
                ("name", name),
            ];
            descriptor_text("systemd", false, &params, positional, &order)
        });
    prop_oneof![tcp, unix, systemd]
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
        kind in prop::sample::select(every_kind()),
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

    #[test]
    fn tcp_tcp6_unix_and_systemd_print_what_parses_back(text in plain()) {
        round_trip(&text, |_| Ok(()))?;
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use torsion_endpoints::tls::{MinimumVersion, SslEndpoint, TlsDirEndpoint, TxsniEndpoint};
    use torsion_endpoints::{Endpoint, quote};

    use super::{backlog, descriptor_text, path, plain, round_trip, tricky};

    /// An interface for `ssl:` and `tls:`, `::` included (their printers once dropped it,
    /// so it read back as 0.0.0.0, IPv4 only).
    fn interface() -> impl Strategy<Value = IpAddr> {
        super::any_ip()
    }

    /// What an `ssl:` descriptor says, and how it is written.
    #[derive(Clone, Debug)]
    pub(super) struct Ssl {
        port: u16,
        private_key: String,
        cert_key: Option<String>,
        method: Option<&'static str>,
        interface: Option<IpAddr>,
        backlog: Option<u32>,
        chain: Option<String>,
        dh: Option<String>,
        positional: usize,
        order: Vec<u8>,
        upper: bool,
    }

    pub(super) fn ssl() -> impl Strategy<Value = Ssl> {
        (
            (
                any::<u16>(),
                path(),
                prop::option::of(path()),
                prop::option::of(prop::sample::select(vec![
                    "TLSv1_2_METHOD",
                    "TLS_METHOD",
                    "SSLv23_METHOD",
                    "TLSv1_3_METHOD",
                ])),
                prop::option::of(interface()),
                prop::option::of(backlog()),
                prop::option::of(path()),
                prop::option::of(tricky()),
            ),
            (
                0..9usize,
                prop::collection::vec(any::<u8>(), 8),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (port, private_key, cert_key, method, interface, backlog, chain, dh),
                    (positional, order, upper),
                )| Ssl {
                    port,
                    private_key,
                    cert_key,
                    method,
                    interface,
                    backlog,
                    chain,
                    dh,
                    positional,
                    order,
                    upper,
                },
            )
    }

    impl Ssl {
        pub(super) fn text(&self) -> String {
            let params = [
                ("port", Some(self.port.to_string())),
                ("privateKey", Some(self.private_key.clone())),
                ("certKey", self.cert_key.clone()),
                ("sslmethod", self.method.map(str::to_owned)),
                ("interface", self.interface.map(|ip| ip.to_string())),
                ("backlog", self.backlog.map(|b| b.to_string())),
                ("extraCertChain", self.chain.clone()),
                ("dhParameters", self.dh.clone()),
            ];
            descriptor_text("ssl", self.upper, &params, self.positional, &self.order)
        }

        fn check(&self, endpoint: &Endpoint) -> Result<(), TestCaseError> {
            let ssl = endpoint
                .downcast_ref::<SslEndpoint>()
                .ok_or_else(|| TestCaseError::fail(format!("not ssl: {endpoint:?}")))?;
            prop_assert_eq!(ssl.tcp().port(), self.port);
            prop_assert_eq!(
                ssl.tcp().interface(),
                self.interface.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            );
            prop_assert_eq!(ssl.tcp().backlog(), self.backlog.unwrap_or(1024));
            prop_assert_eq!(ssl.private_key(), Path::new(&self.private_key));
            prop_assert_eq!(
                ssl.cert_key(),
                Path::new(self.cert_key.as_ref().unwrap_or(&self.private_key))
            );
            let minimum = match self.method {
                Some("TLSv1_3_METHOD") => MinimumVersion::Tls13,
                _ => MinimumVersion::Tls12,
            };
            prop_assert_eq!(ssl.minimum_version(), minimum);
            // No accessor for these two: the printed descriptor must carry them.
            let printed = endpoint.descriptor();
            prop_assert_eq!(printed.kwarg("extraCertChain"), self.chain.as_deref());
            prop_assert_eq!(printed.kwarg("dhParameters"), self.dh.as_deref());
            Ok(())
        }
    }

    /// What a `tls:` descriptor says, and how it is written.
    #[derive(Clone, Debug)]
    pub(super) struct TlsDir {
        directory: String,
        port: Option<u16>,
        interface: Option<IpAddr>,
        backlog: Option<u32>,
        positional: usize,
        order: Vec<u8>,
        upper: bool,
    }

    pub(super) fn tls_dir() -> impl Strategy<Value = TlsDir> {
        (
            path(),
            prop::option::of(prop_oneof![Just(443u16), any::<u16>()]),
            prop::option::of(interface()),
            prop::option::of(backlog()),
            0..5usize,
            prop::collection::vec(any::<u8>(), 4),
            any::<bool>(),
        )
            .prop_map(
                |(directory, port, interface, backlog, positional, order, upper)| TlsDir {
                    directory,
                    port,
                    interface,
                    backlog,
                    positional,
                    order,
                    upper,
                },
            )
    }

    impl TlsDir {
        pub(super) fn text(&self) -> String {
            let params = [
                ("path", Some(self.directory.clone())),
                ("port", self.port.map(|p| p.to_string())),
                ("backlog", self.backlog.map(|b| b.to_string())),
                ("interface", self.interface.map(|ip| ip.to_string())),
            ];
            descriptor_text("tls", self.upper, &params, self.positional, &self.order)
        }

        fn check(&self, endpoint: &Endpoint) -> Result<(), TestCaseError> {
            let tls = endpoint
                .downcast_ref::<TlsDirEndpoint>()
                .ok_or_else(|| TestCaseError::fail(format!("not tls: {endpoint:?}")))?;
            let expected = super::home_expanded(&self.directory);
            prop_assert_eq!(tls.directory(), Path::new(&expected));
            prop_assert_eq!(tls.tcp().port(), self.port.unwrap_or(443));
            // Twisted's tls: listens on :: (IPv6 and IPv4) unless told otherwise.
            prop_assert_eq!(
                tls.tcp().interface(),
                self.interface
                    .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
            );
            prop_assert_eq!(tls.tcp().backlog(), self.backlog.unwrap_or(1024));
            Ok(())
        }
    }

    /// The text of a descriptor another kind can wrap: a plain kind, `ssl:`, `tls:`, or a
    /// `txsni:` around one of those.
    pub(super) fn inner() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            3 => plain(),
            1 => ssl().prop_map(|s| s.text()),
            1 => tls_dir().prop_map(|t| t.text()),
        ];
        leaf.prop_recursive(2, 4, 1, |inner| {
            (path(), inner)
                .prop_map(|(directory, inner)| format!("txsni:{}:{inner}", quote(&directory)))
        })
    }

    /// Checks that `wrapped` is the endpoint `inner` gives on its own.
    pub(super) fn check_inner(wrapped: &Endpoint, inner: &str) -> Result<(), TestCaseError> {
        let alone = Endpoint::parse(inner)
            .map_err(|err| TestCaseError::fail(format!("{inner:?} alone: {err}")))?;
        prop_assert_eq!(wrapped, &alone);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn ssl_prints_what_parses_back(ssl in ssl()) {
            round_trip(&ssl.text(), |endpoint| ssl.check(endpoint))?;
        }

        #[test]
        fn tls_prints_what_parses_back(tls in tls_dir()) {
            round_trip(&tls.text(), |endpoint| tls.check(endpoint))?;
        }

        #[test]
        fn txsni_prints_what_parses_back(
            directory in path(),
            inner in inner(),
            upper in any::<bool>(),
        ) {
            let kind = if upper { "TXSNI" } else { "txsni" };
            let text = format!("{kind}:{}:{inner}", quote(&directory));
            round_trip(&text, |endpoint| {
                let txsni = endpoint
                    .downcast_ref::<TxsniEndpoint>()
                    .ok_or_else(|| TestCaseError::fail(format!("not txsni: {endpoint:?}")))?;
                let expected = super::home_expanded(&directory);
                prop_assert_eq!(txsni.directory(), Path::new(&expected));
                check_inner(txsni.inner(), &inner)
            })?;
        }
    }
}

#[cfg(feature = "acme")]
mod acme {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use torsion_endpoints::acme::{
        AcmeEndpoint, AcmeSettings, Challenge, LETS_ENCRYPT, LETS_ENCRYPT_STAGING,
    };
    use torsion_endpoints::{Endpoint, quote};

    use super::path;
    use super::tls::{check_inner, inner};

    /// A host name such as `A.example-1.com`: two to four labels of letters, digits and
    /// inner hyphens.
    fn host() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", 2..5)
            .prop_map(|labels| labels.join("."))
    }

    fn directory_url() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(LETS_ENCRYPT.to_owned()),
            Just(LETS_ENCRYPT_STAGING.to_owned()),
            (
                prop::sample::select(vec!["https", "http"]),
                host(),
                prop::option::of(any::<u16>()),
                "[a-zA-Z0-9/=_.-]{0,20}",
            )
                .prop_map(|(scheme, host, port, rest)| {
                    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                    format!("{scheme}://{host}{port}/{rest}")
                }),
        ]
    }

    /// An address with `@` and no blank, whose local part has characters to quote.
    fn email() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(
                prop::sample::select(vec!['a', 'Z', '0', '.', '+', '-', ':', '=', '\\', 'é']),
                1..12,
            ),
            host(),
        )
            .prop_map(|(local, host)| format!("{}@{host}", local.into_iter().collect::<String>()))
    }

    /// What an ACME descriptor says, and how it is written.
    #[derive(Clone, Debug)]
    struct Acme {
        kind: &'static str,
        directory: String,
        url: Option<String>,
        email: Option<String>,
        cacert: Option<String>,
        challenge: Option<&'static str>,
        /// The names, and whether to pad each with blanks in the text.
        domains: Option<Vec<(String, bool)>>,
        timeout: Option<u64>,
        inner: String,
        order: Vec<u8>,
        keywords_first: bool,
    }

    fn acme() -> impl Strategy<Value = Acme> {
        (
            (
                prop::sample::select(vec!["txacme", "le", "lets", "TXACME", "Lets"]),
                path(),
                prop::option::of(directory_url()),
                prop::option::of(email()),
                prop::option::of(path()),
                prop::option::of(prop::sample::select(vec![
                    "tls-alpn-01",
                    "http-01",
                    "HTTP-01",
                    "Tls-Alpn-01",
                ])),
                prop::option::of(prop::collection::vec((host(), any::<bool>()), 0..4)),
                prop::option::of(prop_oneof![Just(120u64), 1..=86_400u64]),
            ),
            (
                inner(),
                prop::collection::vec(any::<u8>(), 6),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (kind, directory, url, email, cacert, challenge, domains, timeout),
                    (inner, order, keywords_first),
                )| Acme {
                    kind,
                    directory,
                    url,
                    email,
                    cacert,
                    challenge,
                    domains,
                    timeout,
                    inner,
                    order,
                    keywords_first,
                },
            )
    }

    impl Acme {
        fn text(&self) -> String {
            let domains = self.domains.as_ref().map(|names| {
                names
                    .iter()
                    .map(|(name, pad)| {
                        if *pad {
                            format!(" {name} ")
                        } else {
                            name.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let mut keywords: Vec<(u8, &str, String)> = [
                ("directory", self.url.clone()),
                ("email", self.email.clone()),
                ("cacert", self.cacert.clone()),
                ("challenge", self.challenge.map(str::to_owned)),
                ("domains", domains),
                ("timeout", self.timeout.map(|t| t.to_string())),
            ]
            .into_iter()
            .enumerate()
            .filter_map(|(i, (key, value))| Some((self.order[i], key, value?)))
            .collect();
            keywords.sort_by_key(|(rank, _, _)| *rank);
            let keywords: String = keywords
                .iter()
                .map(|(_, key, value)| format!(":{key}={}", quote(value)))
                .collect();
            let directory = quote(&self.directory);
            if self.keywords_first {
                format!("{}:{directory}{keywords}:{}", self.kind, self.inner)
            } else {
                format!("{}:{directory}:{}{keywords}", self.kind, self.inner)
            }
        }

        fn settings(&self) -> AcmeSettings {
            let kind = self.kind.to_lowercase();
            let mut settings = AcmeSettings::new(if kind == "lets" {
                LETS_ENCRYPT_STAGING
            } else {
                LETS_ENCRYPT
            });
            if let Some(url) = &self.url {
                settings.directory_url = url.clone();
            }
            settings.email = self.email.clone();
            settings.cacert = self.cacert.as_ref().map(PathBuf::from);
            if let Some(challenge) = self.challenge {
                settings.challenge = match challenge.to_lowercase().as_str() {
                    "http-01" => Challenge::Http01,
                    _ => Challenge::TlsAlpn01,
                };
            }
            settings.domains = self
                .domains
                .iter()
                .flatten()
                .map(|(name, _)| name.to_lowercase())
                .collect();
            if let Some(timeout) = self.timeout {
                settings.timeout = Duration::from_secs(timeout);
            }
            settings
        }

        fn check(&self, endpoint: &Endpoint) -> Result<(), TestCaseError> {
            let acme = endpoint
                .downcast_ref::<AcmeEndpoint>()
                .ok_or_else(|| TestCaseError::fail(format!("not ACME: {endpoint:?}")))?;
            prop_assert_eq!(endpoint.kind(), self.kind.to_lowercase());
            prop_assert_eq!(acme.path(), Path::new(&self.directory));
            prop_assert_eq!(acme.settings(), &self.settings());
            check_inner(acme.inner(), &self.inner)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn txacme_le_and_lets_print_what_parses_back(acme in acme()) {
            super::round_trip(&acme.text(), |endpoint| acme.check(endpoint))?;
        }
    }
}

/// `path` as `txsni:` and `tls:` read it: a leading `~` is the home directory.
#[allow(dead_code)]
fn home_expanded(path: &str) -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    match path.strip_prefix('~') {
        Some(rest) if (rest.is_empty() || rest.starts_with('/')) && !home.is_empty() => {
            format!("{}{rest}", home.trim_end_matches('/'))
        }
        _ => path.to_owned(),
    }
}

/// Certificate and key loading never panics, whatever the files hold: random bytes, PEM
/// armour around garbage, truncated PEM.
#[cfg(feature = "tls")]
mod pem {
    use proptest::prelude::*;

    fn pem_like() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            (
                prop::sample::select(vec![
                    "CERTIFICATE",
                    "PRIVATE KEY",
                    "RSA PRIVATE KEY",
                    "EC PRIVATE KEY"
                ]),
                "[A-Za-z0-9+/=\n]{0,300}",
            )
                .prop_map(|(label, body)| {
                    format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n").into_bytes()
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn loading_any_file_as_key_and_certificate_is_an_error_or_a_key(
            key in pem_like(),
            cert in pem_like(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (key_path, cert_path) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
            std::fs::write(&key_path, &key).unwrap();
            std::fs::write(&cert_path, &cert).unwrap();
            let _ = torsion_endpoints::tls::load_certified_key(&key_path, &cert_path, None);
            #[cfg(feature = "acme")]
            {
                let _ = torsion_endpoints::acme::CertificateFacts::from_pem(&[key, cert].concat());
            }
        }
    }
}

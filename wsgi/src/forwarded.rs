//! Proxies in front: which peers are trusted to say who the client is (gunicorn's
//! `forwarded_allow_ips`), and what they say, from RFC 7239's `Forwarded` or, without it,
//! `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`.
//!
//! From a trusted peer, the client's address becomes the connection's peer (so
//! `REMOTE_ADDR` and the access log show it), `proto=https` makes `wsgi.url_scheme` https,
//! and a forwarded host becomes the request's Host. The client is found as nginx's
//! `real_ip_recursive on` finds it: walking the list of addresses from the right (the hop
//! nearest to this server), past every address that is itself trusted. From any other peer
//! the fields are passed to the application untouched and trusted for nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};
use torsion_endpoints::{Address, ConnectionInfo};

/// The peers whose forwarding fields are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardedTrust {
    networks: Vec<(IpAddr, u8)>,
    unix: bool,
    everyone: bool,
}

impl std::str::FromStr for ForwardedTrust {
    type Err = String;

    /// Parses a comma-separated list of IP networks (`10.0.0.0/8`, `fd00::/8`), single
    /// addresses (`127.0.0.1`, `::1`), `unix` (peers on unix sockets), or `*` (everyone).
    fn from_str(text: &str) -> Result<ForwardedTrust, String> {
        let mut trust = ForwardedTrust::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "*" => trust.everyone = true,
                "unix" => trust.unix = true,
                _ => trust.networks.push(network(item)?),
            }
        }
        Ok(trust)
    }
}

/// `addr/len` or `addr`, with the address's host bits cleared.
fn network(text: &str) -> Result<(IpAddr, u8), String> {
    let bad = || {
        format!(
            "{text:?} is not an IP network: expected an address such as 10.0.0.1 or ::1, a network such as 10.0.0.0/8 or fd00::/8, unix, or *"
        )
    };
    let (address, length) = match text.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().map_err(|_| bad())?;
    let bits = if address.is_ipv4() { 32 } else { 128 };
    let length = match length {
        Some(length) => length
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= bits)
            .ok_or_else(bad)?,
        None => bits,
    };
    Ok((mask(address, length), length))
}

fn mask(address: IpAddr, length: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(length)).unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(length)).unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

impl ForwardedTrust {
    /// Whether no peer is trusted.
    pub fn is_empty(&self) -> bool {
        !self.everyone && !self.unix && self.networks.is_empty()
    }

    fn trusts_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.everyone
            || self.networks.iter().any(|(network, length)| {
                network.is_ipv4() == ip.is_ipv4() && mask(ip, *length) == *network
            })
    }

    fn trusts(&self, peer: &Address) -> bool {
        match peer {
            Address::Tcp(addr) => self.trusts_ip(addr.ip()),
            Address::Unix(_) => self.unix || self.everyone,
        }
    }

    /// What a trusted peer says of `request`: the connection facts as the client's (a new
    /// value, or `None` when nothing changes), with the request's Host set to a forwarded
    /// host. Requests from peers not trusted are left as they are.
    pub(crate) fn apply<B>(
        &self,
        request: &mut Request<B>,
        info: &Arc<ConnectionInfo>,
    ) -> Option<Arc<ConnectionInfo>> {
        if !self.trusts(&info.peer) {
            return None;
        }
        let said = match forwarded(request.headers()) {
            Some(elements) => self.read_forwarded(&elements),
            None => self.read_x_forwarded(request.headers()),
        };
        if said.client.is_none() && said.https.is_none() && said.host.is_none() {
            return None;
        }
        if let Some(host) = said.host {
            request.headers_mut().insert(header::HOST, host);
            // The Host field names the host once the target has no authority.
            if request.uri().authority().is_some()
                && let Some(path) = request.uri().path_and_query()
                && let Ok(origin) = Uri::try_from(path.as_str())
            {
                *request.uri_mut() = origin;
            }
        }
        let mut facts = ConnectionInfo::clone(info);
        if let Some(client) = said.client {
            facts.peer = Address::Tcp(client);
        }
        match said.https {
            Some(true) => facts.tls = Some(facts.tls.take().unwrap_or_default()),
            Some(false) => facts.tls = None,
            None => {}
        }
        Some(Arc::new(facts))
    }

    fn read_forwarded(&self, elements: &[Vec<(String, String)>]) -> Said {
        let pick = self.pick(
            elements
                .iter()
                .map(|pairs| value(pairs, "for").and_then(node)),
        );
        let element = pick.map_or(elements.last(), |i| elements.get(i));
        let Some(element) = element else {
            return Said::default();
        };
        Said {
            client: pick.and_then(|i| value(&elements[i], "for").and_then(node)),
            https: value(element, "proto").and_then(proto),
            host: value(element, "host").and_then(host),
        }
    }

    fn read_x_forwarded(&self, headers: &HeaderMap) -> Said {
        let list = |name: &'static str| -> Vec<String> {
            headers
                .get_all(HeaderName::from_static(name))
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect()
        };
        let addresses: Vec<Option<SocketAddr>> =
            list("x-forwarded-for").iter().map(|v| node(v)).collect();
        let pick = self.pick(addresses.iter().copied());
        Said {
            client: pick.and_then(|i| addresses[i]),
            https: list("x-forwarded-proto").last().and_then(|p| proto(p)),
            host: list("x-forwarded-host").last().and_then(|h| host(h)),
        }
    }

    /// The client among the hops, walking from the nearest past trusted addresses: the
    /// index of the first address not trusted, or of the farthest address when all are.
    /// A hop that is not an address (`unknown`, an obfuscated name) ends the walk there.
    fn pick(
        &self,
        hops: impl DoubleEndedIterator<Item = Option<SocketAddr>> + ExactSizeIterator,
    ) -> Option<usize> {
        let count = hops.len();
        let mut farthest = None;
        for (i, hop) in hops.enumerate().rev() {
            let address = hop?;
            farthest = Some(i);
            if !self.trusts_ip(address.ip()) {
                return Some(i);
            }
        }
        farthest.filter(|_| count > 0)
    }
}

/// What a proxy said.
#[derive(Default)]
struct Said {
    client: Option<SocketAddr>,
    https: Option<bool>,
    host: Option<HeaderValue>,
}

/// The elements of the Forwarded fields (RFC 7239 §4), each a list of (lower-case name,
/// unquoted value) pairs; `None` without the field, or when it does not parse (a
/// malformed field is not believed at all).
fn forwarded(headers: &HeaderMap) -> Option<Vec<Vec<(String, String)>>> {
    let mut elements = Vec::new();
    let mut any = false;
    for value in headers.get_all(header::FORWARDED) {
        any = true;
        let text = value.to_str().ok()?;
        for element in split_outside_quotes(text, ',') {
            let mut pairs = Vec::new();
            for pair in split_outside_quotes(&element, ';') {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (name, value) = pair.split_once('=')?;
                let value = value.trim();
                let value = match value.strip_prefix('"') {
                    Some(quoted) => quoted
                        .strip_suffix('"')?
                        .replace("\\\"", "\"")
                        .replace("\\\\", "\\"),
                    None => value.to_owned(),
                };
                pairs.push((name.trim().to_ascii_lowercase(), value));
            }
            if !pairs.is_empty() {
                elements.push(pairs);
            }
        }
    }
    (any && !elements.is_empty()).then_some(elements)
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A node (RFC 7239 §6) that is an address: `192.0.2.60`, `192.0.2.60:4711`,
/// `[2001:db8::17]`, `[2001:db8::17]:4711`, or a bare IPv6 address as X-Forwarded-For
/// writes it. The port is 0 when none is given.
fn node(text: &str) -> Option<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

fn proto(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "https" => Some(true),
        "http" => Some(false),
        _ => None,
    }
}

/// A forwarded host, if it is a valid Host value.
fn host(text: &str) -> Option<HeaderValue> {
    crate::checks::is_host(text.as_bytes())
        .then(|| HeaderValue::from_str(text).ok())
        .flatten()
        .filter(|_| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(peer: &str) -> Arc<ConnectionInfo> {
        Arc::new(ConnectionInfo::new(
            Address::Tcp("127.0.0.1:8080".parse().unwrap()),
            Address::Tcp(peer.parse().unwrap()),
        ))
    }

    /// (REMOTE_ADDR, scheme, Host) after `apply`.
    fn seen(trust: &str, peer: &str, fields: &[(&str, &str)]) -> (String, &'static str, String) {
        let trust: ForwardedTrust = trust.parse().unwrap();
        let mut request = Request::builder().uri("/x").header("host", "backend:8000");
        for (name, value) in fields {
            request = request.header(*name, *value);
        }
        let mut request = request.body(()).unwrap();
        let info = info(peer);
        let facts = trust.apply(&mut request, &info).unwrap_or(info);
        let remote = match &facts.peer {
            Address::Tcp(addr) => addr.ip().to_string(),
            Address::Unix(_) => "unix".into(),
        };
        let host = request.headers()[header::HOST].to_str().unwrap().to_owned();
        (remote, facts.scheme(), host)
    }

    #[test]
    fn trust_lists_parse_networks_addresses_unix_and_star() {
        let trust: ForwardedTrust = "10.0.0.0/8, 192.168.1.7, fd00::/8, ::1, unix"
            .parse()
            .unwrap();
        for ip in [
            "10.1.2.3",
            "192.168.1.7",
            "fd12::1",
            "::1",
            "::ffff:10.9.9.9",
        ] {
            assert!(trust.trusts_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.1", "192.168.1.8", "fe80::1", "127.0.0.1"] {
            assert!(!trust.trusts_ip(ip.parse().unwrap()), "{ip}");
        }
        assert!(trust.trusts(&Address::Unix(None)));
        assert!(
            "*".parse::<ForwardedTrust>()
                .unwrap()
                .trusts_ip("8.8.8.8".parse().unwrap())
        );
        assert!("".parse::<ForwardedTrust>().unwrap().is_empty());
        for bad in ["10.0.0.0/33", "example.com", "10.0.0/8", "::1/129"] {
            assert!(bad.parse::<ForwardedTrust>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_trusted_proxy_names_the_client_scheme_and_host() {
        let trust = "127.0.0.1";
        let proxy = "127.0.0.1:40000";
        // X-Forwarded-*.
        assert_eq!(
            seen(
                trust,
                proxy,
                &[
                    ("x-forwarded-for", "203.0.113.9"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "www.example.com")
                ]
            ),
            ("203.0.113.9".into(), "https", "www.example.com".into())
        );
        // RFC 7239, quoted IPv6 with a port, two proxies: the scheme and host are those the
        // proxy nearest the client recorded with it.
        assert_eq!(
            seen(
                trust,
                proxy,
                &[(
                    "forwarded",
                    "for=\"[2001:db8:cafe::17]:4711\";proto=https;host=example.org, for=127.0.0.1"
                )]
            ),
            ("2001:db8:cafe::17".into(), "https", "example.org".into())
        );
        assert_eq!(
            seen(
                trust,
                proxy,
                &[(
                    "forwarded",
                    "for=198.51.100.17;proto=https;host=example.org"
                )]
            ),
            ("198.51.100.17".into(), "https", "example.org".into())
        );
        // Forwarded wins over X-Forwarded-For.
        assert_eq!(
            seen(
                trust,
                proxy,
                &[
                    ("forwarded", "for=198.51.100.17"),
                    ("x-forwarded-for", "203.0.113.9")
                ]
            )
            .0,
            "198.51.100.17"
        );
        // Walking past trusted hops: the nearest untrusted address is the client, not the
        // farthest one a client could have written itself.
        assert_eq!(
            seen(
                "127.0.0.1,10.0.0.0/8",
                proxy,
                &[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")]
            )
            .0,
            "203.0.113.9"
        );
        // A host that is not a host is not believed.
        assert_eq!(
            seen(trust, proxy, &[("x-forwarded-host", "a b")]).2,
            "backend:8000"
        );
    }

    #[test]
    fn an_untrusted_peer_changes_nothing() {
        let fields = [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4;proto=https"),
        ];
        assert_eq!(
            seen("10.0.0.0/8", "127.0.0.1:40000", &fields),
            ("127.0.0.1".into(), "http", "backend:8000".into())
        );
        assert_eq!(seen("", "127.0.0.1:40000", &fields).0, "127.0.0.1");
    }
}

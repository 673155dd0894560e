//! Who is asking: the client address of each request, and whether that
//! client is "local".
//!
//! The request path starts here (see [`crate::web`] for the rest):
//!
//! 1. peer: the socket's remote address, which [`crate::server`] puts in
//!    every request's extensions as `ConnectInfo<SocketAddr>`. A request
//!    without one (in-process tests driving the router) has no address: it
//!    is a stranger, never local, and never rate limited (there is nothing
//!    to key a limit on, and such requests never come from a socket).
//! 2. client: the peer itself, unless the peer is in `TRUSTED_PROXIES`; then
//!    the right-most address of `X-Forwarded-For` that is not a trusted proxy
//!    (each proxy appends the address it saw, so everything left of the
//!    first untrusted hop may be forged by the client), else `X-Real-IP`,
//!    else the peer. A header that does not parse is ignored, never trusted.
//! 3. local: the client is inside `LOCAL_NETWORKS`.
//!
//! What this must never do: believe a forwarded header from a peer that is
//! not a trusted proxy. With `TRUSTED_PROXIES` empty (the default) no header
//! can change who a client is.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use ipnet::IpNet;

/// A list of networks, as `TRUSTED_PROXIES` and `LOCAL_NETWORKS` are
/// written: comma-separated CIDRs or single addresses; empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<IpNet>);

impl FromStr for Networks {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut networks = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(addr) => IpNet::from(addr),
                    Err(_) => {
                        return Err(format!(
                            "{item:?} is neither a CIDR (e.g. 10.0.0.0/8) nor an address"
                        ));
                    }
                },
            };
            networks.push(net);
        }
        Ok(Self(networks))
    }
}

impl std::fmt::Display for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&items.join(","))
    }
}

impl Networks {
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0.iter().any(|net| net.contains(&addr))
    }
}

/// The default of `LOCAL_NETWORKS`: loopback, RFC 1918, link-local and
/// IPv6 unique-local and link-local.
pub const DEFAULT_LOCAL_NETWORKS: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16,fc00::/7,fe80::/10";

/// An IPv4 client reached over an IPv6 socket (`::ffff:a.b.c.d`) is that
/// IPv4 client, for the network lists and for the limits alike.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// How client addresses are decided; built once from the settings.
#[derive(Debug, Clone)]
pub struct ClientPolicy {
    pub trusted_proxies: Networks,
    pub local_networks: Networks,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        Self {
            trusted_proxies: Networks::default(),
            local_networks: DEFAULT_LOCAL_NETWORKS
                .parse()
                .expect("the default list parses"),
        }
    }
}

/// The client of one request, decided by the router's `guard` middleware;
/// extracting it never fails (a request that somehow lacks it is a
/// stranger).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Client {
    /// None when the request came from no socket (in-process tests).
    pub addr: Option<IpAddr>,
    /// Inside `LOCAL_NETWORKS`.
    pub local: bool,
}

impl ClientPolicy {
    pub fn identify(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Client {
        let Some(peer) = peer.map(|p| canonical(p.ip())) else {
            return Client::default();
        };
        let addr = if self.trusted_proxies.contains(peer) {
            self.forwarded_client(headers).unwrap_or(peer)
        } else {
            peer
        };
        Client {
            addr: Some(addr),
            local: self.local_networks.contains(addr),
        }
    }

    /// The right-most untrusted hop of every `X-Forwarded-For` header (a
    /// request may carry several; they form one list in order), else
    /// `X-Real-IP`. None when every hop is a trusted proxy or a hop does not
    /// parse: then the peer is the client.
    fn forwarded_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if !hops.is_empty() {
            for hop in hops.iter().rev() {
                let addr = canonical(parse_hop(hop)?);
                if !self.trusted_proxies.contains(addr) {
                    return Some(addr);
                }
            }
            return None;
        }
        let real = headers.get("x-real-ip")?.to_str().ok()?;
        parse_hop(real.trim()).map(canonical)
    }
}

/// One hop as proxies write it: `203.0.113.7`, `2001:db8::1`, or with a
/// port, `203.0.113.7:5000` or `[2001:db8::1]:5000`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The peer of a request, when it came from a socket.
pub fn peer(parts_extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &str) -> ClientPolicy {
        ClientPolicy {
            trusted_proxies: trusted.parse().unwrap(),
            ..ClientPolicy::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn peer(addr: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(addr.parse().unwrap(), 40000))
    }

    #[test]
    fn without_trusted_proxies_forwarded_headers_are_ignored() {
        let client = policy("").identify(
            peer("127.0.0.2"),
            &headers(&[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-real-ip", "10.0.0.1"),
            ]),
        );
        assert_eq!(client.addr, Some("127.0.0.2".parse().unwrap()));
        assert!(client.local);
    }

    #[test]
    fn a_trusted_proxy_names_the_right_most_untrusted_hop() {
        let policy = policy("10.0.0.0/8");
        let client = policy.identify(
            peer("10.1.2.3"),
            &headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.9.9.9")]),
        );
        assert_eq!(client.addr, Some("203.0.113.7".parse().unwrap()));
        assert!(!client.local);
    }

    #[test]
    fn a_garbage_hop_leaves_the_proxy_as_the_client() {
        let client = policy("10.0.0.0/8").identify(
            peer("10.1.2.3"),
            &headers(&[("x-forwarded-for", "203.0.113.7, not-an-address")]),
        );
        assert_eq!(client.addr, Some("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn x_real_ip_is_used_without_x_forwarded_for_and_ports_are_dropped() {
        let policy = policy("10.0.0.0/8");
        let client = policy.identify(peer("10.1.2.3"), &headers(&[("x-real-ip", "203.0.113.7")]));
        assert_eq!(client.addr, Some("203.0.113.7".parse().unwrap()));
        let client = policy.identify(
            peer("10.1.2.3"),
            &headers(&[("x-forwarded-for", "[2001:db8::1]:443")]),
        );
        assert_eq!(client.addr, Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn no_peer_is_a_stranger() {
        let client = ClientPolicy::default().identify(None, &headers(&[]));
        assert_eq!(client, Client::default());
        assert!(!client.local);
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let client = ClientPolicy::default().identify(peer("::ffff:127.0.0.1"), &headers(&[]));
        assert_eq!(client.addr, Some("127.0.0.1".parse().unwrap()));
        assert!(client.local);
    }

    #[test]
    fn network_lists_parse_cidrs_addresses_and_nothing() {
        assert_eq!("".parse::<Networks>().unwrap(), Networks(vec![]));
        let nets: Networks = " 10.1.2.3/8 , 192.0.2.1, ::1".parse().unwrap();
        assert_eq!(nets.to_string(), "10.0.0.0/8,192.0.2.1/32,::1/128");
        assert!("10.0.0.0/33".parse::<Networks>().is_err());
        assert!("nginx".parse::<Networks>().is_err());
    }
}

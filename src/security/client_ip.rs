//! Who is on the other end: the socket peer, unless that peer is a proxy we trust.
//!
//! `X-Forwarded-For` is written by whoever sends the request, so it is read only when the peer
//! is in `TRUSTED_PROXIES`, and then from the right: the first address that is not one of our
//! proxies is the client. actix's `realip_remote_addr()` takes the leftmost entry, which any
//! client can set, and is never used for anything that matters.
//!
//! Two views of that client, both resolved once per request by `telemetry::request_context`:
//! its full address (`ClientIp`, for the logs and the audit trail) and the key everything that
//! counts per client uses (`ClientKey`: the rate limits and the login monitor).

use std::{
    fmt,
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest,
    dev::{Payload, ServiceRequest},
};
use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client IP `telemetry::request_context` resolved for this request.
    pub fn of(request: &impl HttpMessage) -> Option<IpAddr> {
        request.extensions().get::<Self>().map(|ip| ip.0)
    }
}

/// One client, as everything that counts per client sees it: an IPv4 address, or the IPv6
/// network of `CLIENT_IPV6_PREFIX_LEN` bits around the address. One IPv6 subscriber is
/// usually given a whole /64 (often more), so rotating addresses inside it must not make a new
/// client: not for a fresh rate-limit budget, nor for looking like many sources to the login
/// monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(Ipv4Addr),
    V6 { network: Ipv6Addr, prefix_len: u8 },
}

impl ClientKey {
    pub fn new(ip: IpAddr, ipv6_prefix_len: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => {
                let host_bits = 128u32.saturating_sub(u32::from(ipv6_prefix_len));
                let network = u128::from(v6)
                    .checked_shr(host_bits)
                    .and_then(|bits| bits.checked_shl(host_bits))
                    .unwrap_or(0);
                Self::V6 {
                    network: network.into(),
                    prefix_len: ipv6_prefix_len.min(128),
                }
            }
        }
    }

    /// The key `telemetry::request_context` resolved for this request (every request passes
    /// there; the unspecified address would stand in for one that had not).
    pub fn of(request: &impl HttpMessage) -> Self {
        request
            .extensions()
            .get::<Self>()
            .copied()
            .unwrap_or(Self::V4(Ipv4Addr::UNSPECIFIED))
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(address) => address.fmt(f),
            Self::V6 {
                network,
                prefix_len,
            } => write!(f, "{network}/{prefix_len}"),
        }
    }
}

/// For handlers that count per client (the login monitor).
impl FromRequest for ClientKey {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(req)))
    }
}

/// Finds the client of each request: who to believe (`TRUSTED_PROXIES`) and how to group
/// IPv6 addresses (`CLIENT_IPV6_PREFIX_LEN`).
#[derive(Debug, Clone)]
pub struct ClientResolver {
    trusted_proxies: Vec<IpNet>,
    ipv6_prefix_len: u8,
}

impl ClientResolver {
    pub fn new(trusted_proxies: Vec<IpNet>, ipv6_prefix_len: u8) -> Self {
        Self {
            trusted_proxies,
            ipv6_prefix_len,
        }
    }

    pub fn resolve(&self, req: &ServiceRequest) -> (ClientIp, ClientKey) {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |addr| addr.ip());
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok());
        let ip = client_address(peer, forwarded, &self.trusted_proxies);
        (ClientIp(ip), ClientKey::new(ip, self.ipv6_prefix_len))
    }
}

fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let chain: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !trusted(&client) {
                    break;
                }
            }
            // A hop we cannot read ends the chain we can vouch for.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let client = client_address(ip("203.0.113.9"), ["10.9.9.9"].into_iter(), &nets(&[]));
        assert_eq!(client, ip("203.0.113.9"));
        let client = client_address(
            ip("203.0.113.9"),
            ["1.2.3.4"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        let proxies = nets(&["10.0.0.0/8"]);
        let client = client_address(
            ip("10.0.0.2"),
            ["6.6.6.6, 198.51.100.7", "10.0.0.1"].into_iter(),
            &proxies,
        );
        assert_eq!(
            client,
            ip("198.51.100.7"),
            "6.6.6.6 was written by the client"
        );
    }

    #[test]
    fn a_garbled_hop_stops_the_walk() {
        let client = client_address(
            ip("10.0.0.2"),
            ["198.51.100.7, not-an-ip"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(client, ip("10.0.0.2"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_reported_as_ipv4() {
        let client = client_address(ip("::ffff:192.0.2.1"), std::iter::empty(), &[]);
        assert_eq!(client, ip("192.0.2.1"));
    }

    #[test]
    fn an_ipv6_client_is_its_network_and_an_ipv4_client_its_address() {
        let key = |address: &str, prefix_len| ClientKey::new(ip(address), prefix_len);
        assert_eq!(
            key("2001:db8:1:2:aaaa::1", 64),
            key("2001:db8:1:2:bbbb::2", 64)
        );
        assert_ne!(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64));
        assert_eq!(key("2001:db8:1:2::1", 48), key("2001:db8:1:3::1", 48));
        assert_ne!(key("2001:db8::1", 128), key("2001:db8::2", 128));
        assert_ne!(key("192.0.2.1", 64), key("192.0.2.2", 64));
        assert_eq!(key("::ffff:192.0.2.1", 64), key("192.0.2.1", 64));
        assert_eq!(
            key("2001:db8:1:2:aaaa::1", 64).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(key("192.0.2.1", 64).to_string(), "192.0.2.1");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Whatever a client writes in X-Forwarded-For, an untrusted peer stays the client,
            /// and behind a trusted proxy the answer is the peer or an address from the header.
            #[test]
            fn the_client_is_the_peer_or_a_forwarded_hop(header in "\\PC{0,120}", trusted in any::<bool>()) {
                let peer: IpAddr = "10.0.0.2".parse().unwrap();
                let proxies = if trusted { nets(&["10.0.0.0/8"]) } else { vec![] };
                let client = client_address(peer, std::iter::once(header.as_str()), &proxies);
                if trusted {
                    let hops: Vec<IpAddr> = header
                        .split(',')
                        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
                        .map(|ip| ip.to_canonical())
                        .collect();
                    prop_assert!(client == peer || hops.contains(&client));
                } else {
                    prop_assert_eq!(client, peer);
                }
            }
        }
    }
}

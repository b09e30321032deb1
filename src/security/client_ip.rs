//! Who is on the other end: the socket peer, unless that peer is a proxy we trust.
//!
//! `X-Forwarded-For` is written by whoever sends the request, so it is read only when the peer
//! is in `TRUSTED_PROXIES`, and then from the right: the first address that is not one of our
//! proxies is the client. actix's `realip_remote_addr()` takes the leftmost entry, which any
//! client can set, and is never used for anything that matters.

use std::net::IpAddr;

use actix_web::{HttpMessage, dev::ServiceRequest};
use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    pub fn resolve(req: &ServiceRequest, trusted_proxies: &[IpNet]) -> Self {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |addr| addr.ip());
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok());
        Self(client_address(peer, forwarded, trusted_proxies))
    }

    /// The client IP `telemetry::request_context` resolved for this request.
    pub fn of(request: &impl HttpMessage) -> Option<IpAddr> {
        request.extensions().get::<Self>().map(|ip| ip.0)
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

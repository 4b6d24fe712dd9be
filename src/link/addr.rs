//! Which addresses a node advertises, accepts in descriptors and dials, and
//! in what order it tries a peer's addresses.
//!
//! Every address has a scope: how far it reaches. A node has a narrowest
//! scope it works in ([`Scope`]); it never advertises, dials or relays to an
//! address narrower than that, and never to one that reaches nobody
//! (unspecified, multicast, link-local, reserved, documentation ranges, port
//! 0). On the public internet that keeps a lying descriptor or an EXTEND
//! from turning a relay against its own host or LAN (loopback, private
//! ranges); a test network on one host, or a LAN, widens the scope on
//! purpose. Address classes follow RFC 6890's special-purpose registries.
//!
//! Dial order follows Happy Eyeballs (RFC 8305, section 4): the families
//! interleave, IPv6 first, each in the order the descriptor gives (its
//! owner's preference).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::wire::NodeAddr;

/// How far an address reaches, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// This host only: 127.0.0.0/8, ::1.
    Loopback,
    /// A private network: RFC 1918, shared address space (100.64.0.0/10),
    /// benchmarking (198.18.0.0/15), unique local IPv6 (fc00::/7).
    Private,
    /// The public internet: everything not named here.
    Global,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Loopback => "loopback",
            Scope::Private => "private",
            Scope::Global => "global",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "loopback" => Ok(Scope::Loopback),
            "private" => Ok(Scope::Private),
            "global" => Ok(Scope::Global),
            _ => Err(format!(
                "{s:?} is not an address scope (global, private or loopback)"
            )),
        }
    }
}

/// The IPv4 address inside an IPv4-mapped IPv6 address (as a dual-stack
/// socket reports IPv4 peers), or the address itself.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The scope of `ip`, or `None` for an address that reaches no peer:
/// unspecified, multicast, broadcast, link-local (meaningless off its own
/// link), "this network" (0.0.0.0/8), reserved (240.0.0.0/4), the
/// documentation ranges, and the IPv6 forms that only embed or translate
/// other addresses.
pub fn scope(ip: IpAddr) -> Option<Scope> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => scope_v4(v4),
        IpAddr::V6(v6) => scope_v6(v6),
    }
}

fn scope_v4(ip: Ipv4Addr) -> Option<Scope> {
    let o = ip.octets();
    if ip.is_loopback() {
        return Some(Scope::Loopback);
    }
    let never = o[0] == 0
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_link_local()
        || ip.is_documentation()
        || o[0] >= 240;
    if never {
        return None;
    }
    let private = ip.is_private()
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || (o[0] == 198 && (o[1] & 0xfe) == 18);
    Some(if private {
        Scope::Private
    } else {
        Scope::Global
    })
}

fn scope_v6(ip: Ipv6Addr) -> Option<Scope> {
    if ip.is_loopback() {
        return Some(Scope::Loopback);
    }
    let s = ip.segments();
    let never = ip.is_unspecified()
        || ip.is_multicast()
        // fe80::/10, link-local unicast.
        || (s[0] & 0xffc0) == 0xfe80
        // 2001:db8::/32, documentation.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // ::/96 (deprecated IPv4-compatible) and 64:ff9b::/96 (NAT64):
        // other addresses in disguise.
        || s[..6].iter().all(|&x| x == 0)
        || (s[0] == 0x64 && s[1] == 0xff9b);
    if never {
        return None;
    }
    // fc00::/7, unique local.
    Some(if (s[0] & 0xfe00) == 0xfc00 {
        Scope::Private
    } else {
        Scope::Global
    })
}

/// What a node will advertise and dial: addresses of `min` scope or wider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub min: Scope,
}

impl Policy {
    pub fn new(min: Scope) -> Policy {
        Policy { min }
    }

    /// Whether `addr` may be advertised or dialled.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        addr.port() != 0 && scope(addr.ip()).is_some_and(|s| s >= self.min)
    }

    /// Why `addr` may not be advertised, or `None` when it may.
    pub fn refusal(&self, addr: SocketAddr) -> Option<String> {
        if addr.port() == 0 {
            return Some(format!("{addr} has port 0, which nobody can dial"));
        }
        match scope(addr.ip()) {
            None => Some(format!(
                "{} reaches no peer (unspecified, multicast, link-local, reserved or \
                 documentation address)",
                addr.ip()
            )),
            Some(s) if s < self.min => Some(format!(
                "{} is a {} address, narrower than this node's address scope ({})",
                addr.ip(),
                s.name(),
                self.min.name()
            )),
            Some(_) => None,
        }
    }

    /// The addresses of `addrs` to try, in order, from a socket bound to
    /// `local`: only those the policy allows and the socket can reach (an
    /// IPv4 socket reaches no IPv6 peer; an IPv6 socket bound to the
    /// unspecified address is dual-stack), IPv6 and IPv4 interleaved with
    /// IPv6 first, duplicates dropped.
    pub fn dial_order(&self, addrs: &[NodeAddr], local: SocketAddr) -> Vec<SocketAddr> {
        let (v4_ok, v6_ok) = match local.ip() {
            IpAddr::V4(_) => (true, false),
            IpAddr::V6(ip) => (ip.is_unspecified(), true),
        };
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for a in addrs {
            let a = canonical(a.0);
            if !self.allows(a) {
                continue;
            }
            let (list, ok) = if a.is_ipv4() {
                (&mut v4, v4_ok)
            } else {
                (&mut v6, v6_ok)
            };
            if ok && !list.contains(&a) {
                list.push(a);
            }
        }
        let mut out = Vec::with_capacity(v4.len() + v6.len());
        let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => return out,
                (x, y) => out.extend(x.into_iter().chain(y)),
            }
        }
    }

    /// Whether any of `addrs` could be dialled from `local`.
    pub fn reachable(&self, addrs: &[NodeAddr], local: SocketAddr) -> bool {
        !self.dial_order(addrs, local).is_empty()
    }
}

/// The narrowest scope among `addrs`, if any has one: what a node given
/// these addresses (to listen on, advertise or bootstrap from) must work
/// in.
pub fn narrowest(addrs: impl IntoIterator<Item = IpAddr>) -> Option<Scope> {
    addrs.into_iter().filter_map(scope).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn na(s: &str) -> NodeAddr {
        NodeAddr(sa(s))
    }

    #[test]
    fn scopes_follow_the_special_purpose_registries() {
        let cases = [
            ("127.0.0.1", Some(Scope::Loopback)),
            ("127.9.9.9", Some(Scope::Loopback)),
            ("::1", Some(Scope::Loopback)),
            ("::ffff:127.0.0.1", Some(Scope::Loopback)),
            ("10.1.2.3", Some(Scope::Private)),
            ("172.16.0.1", Some(Scope::Private)),
            ("172.31.255.255", Some(Scope::Private)),
            ("172.32.0.1", Some(Scope::Global)),
            ("192.168.1.1", Some(Scope::Private)),
            ("100.64.0.1", Some(Scope::Private)),
            ("100.127.255.255", Some(Scope::Private)),
            ("100.128.0.1", Some(Scope::Global)),
            ("198.18.0.1", Some(Scope::Private)),
            ("198.20.0.1", Some(Scope::Global)),
            ("fd00::1", Some(Scope::Private)),
            ("8.8.8.8", Some(Scope::Global)),
            ("::ffff:8.8.8.8", Some(Scope::Global)),
            ("2a00:1450::1", Some(Scope::Global)),
            ("0.0.0.0", None),
            ("0.1.2.3", None),
            ("::", None),
            ("169.254.1.1", None),
            ("fe80::1", None),
            ("224.0.0.1", None),
            ("ff02::1", None),
            ("255.255.255.255", None),
            ("240.0.0.1", None),
            ("192.0.2.1", None),
            ("203.0.113.9", None),
            ("2001:db8::1", None),
            ("::1.2.3.4", None),
            ("64:ff9b::1.2.3.4", None),
        ];
        for (ip, want) in cases {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(scope(ip), want, "{ip}");
        }
    }

    #[test]
    fn a_policy_refuses_narrower_scopes_and_port_zero() {
        let global = Policy::new(Scope::Global);
        assert!(global.allows(sa("8.8.8.8:7000")));
        assert!(!global.allows(sa("10.0.0.1:7000")));
        assert!(!global.allows(sa("127.0.0.1:7000")));
        assert!(!global.allows(sa("8.8.8.8:0")));
        assert!(global.refusal(sa("10.0.0.1:7000")).is_some());
        assert!(global.refusal(sa("0.0.0.0:7000")).is_some());
        assert_eq!(global.refusal(sa("8.8.8.8:7000")), None);
        let private = Policy::new(Scope::Private);
        assert!(private.allows(sa("10.0.0.1:7000")));
        assert!(private.allows(sa("8.8.8.8:7000")));
        assert!(!private.allows(sa("127.0.0.1:7000")));
        let local = Policy::new(Scope::Loopback);
        assert!(local.allows(sa("127.0.0.1:7000")));
        assert!(!local.allows(sa("0.0.0.0:7000")));
        assert!(!local.allows(sa("[fe80::1]:7000")));
    }

    #[test]
    fn dial_order_interleaves_families_ipv6_first_and_keeps_what_the_socket_reaches() {
        let p = Policy::new(Scope::Private);
        let addrs = [
            na("10.0.0.1:1"),
            na("10.0.0.2:1"),
            na("[fd00::1]:1"),
            na("127.0.0.1:1"),
            na("10.0.0.1:1"),
            na("[::ffff:10.0.0.3]:1"),
        ];
        assert_eq!(
            p.dial_order(&addrs, sa("[::]:0")),
            vec![
                sa("[fd00::1]:1"),
                sa("10.0.0.1:1"),
                sa("10.0.0.2:1"),
                sa("10.0.0.3:1")
            ]
        );
        assert_eq!(
            p.dial_order(&addrs, sa("0.0.0.0:0")),
            vec![sa("10.0.0.1:1"), sa("10.0.0.2:1"), sa("10.0.0.3:1")]
        );
        assert_eq!(
            p.dial_order(&addrs, sa("[fd00::9]:0")),
            vec![sa("[fd00::1]:1")]
        );
        assert!(!Policy::new(Scope::Global).reachable(&addrs, sa("[::]:0")));
    }

    #[test]
    fn the_narrowest_scope_of_what_a_node_was_given() {
        let ips = ["8.8.8.8", "10.0.0.1", "0.0.0.0"].map(|s| s.parse::<IpAddr>().expect("ip"));
        assert_eq!(narrowest(ips), Some(Scope::Private));
        assert_eq!(narrowest(["0.0.0.0".parse().expect("ip")]), None);
    }
}

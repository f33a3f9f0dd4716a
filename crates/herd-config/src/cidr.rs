//! CIDR blocks and allow/deny lists (squid-style ACLs): parsed once at load, matched on
//! the request path with a few integer compares and no allocation.

use std::fmt;
use std::net::IpAddr;

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`. A bare address is a single
/// host (/32 or /128). Stored masked, as a 128-bit integer, so matching is two compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    v6: bool,
    /// Network address, host bits zero (an IPv4 block in the low 32 bits).
    network: u128,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let t = text.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| {
            format!("\"{text}\" is not an IP address or CIDR block; write e.g. \"10.0.0.0/8\" or \"::1/128\"")
        })?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "\"{text}\": prefix length \"/{p}\" must be 0-{max} for this address"
                    ))
                }
            },
        };
        let (v6, raw) = bits(ip);
        let network = raw & mask(v6, prefix);
        if network != raw {
            return Err(format!(
                "\"{text}\" has host bits set after /{prefix}; write the network address \"{}/{prefix}\"",
                Cidr { v6, network, prefix }.network_ip()
            ));
        }
        Ok(Cidr {
            v6,
            network,
            prefix,
        })
    }

    /// An IPv4-mapped IPv6 client (`::ffff:10.1.2.3`, as a dual-stack socket reports it)
    /// matches IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, raw) = bits(canonical(ip));
        v6 == self.v6 && raw & mask(v6, self.prefix) == self.network
    }

    fn network_ip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(self.network.into())
        } else {
            IpAddr::V4((self.network as u32).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network_ip(), self.prefix)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

fn mask(v6: bool, prefix: u8) -> u128 {
    let (width, full) = if v6 {
        (128, u128::MAX)
    } else {
        (32, u128::from(u32::MAX))
    };
    if prefix == 0 {
        0
    } else {
        full & (full << (width - u32::from(prefix)))
    }
}

/// `allow` / `deny` lists: deny wins; when `allow` is non-empty anything not in it is denied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpAcl {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl IpAcl {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.0.0.0")));
        assert!(c.contains(ip("10.255.255.255")));
        assert!(!c.contains(ip("11.0.0.0")));
        assert!(!c.contains(ip("9.255.255.255")));
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let c = Cidr::parse("192.168.1.128/25").unwrap();
        assert!(c.contains(ip("192.168.1.200")));
        assert!(!c.contains(ip("192.168.1.127")));
    }

    #[test]
    fn host_and_whole_space() {
        let host = Cidr::parse("127.0.0.1/32").unwrap();
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        assert_eq!(Cidr::parse("127.0.0.1").unwrap(), host);
        let any4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(any4.contains(ip("1.2.3.4")));
        assert!(any4.contains(ip("255.255.255.255")));
        assert!(
            !any4.contains(ip("::1")),
            "an IPv4 block never matches IPv6"
        );
        let any6 = Cidr::parse("::/0").unwrap();
        assert!(any6.contains(ip("2001:db8::1")));
        assert!(!any6.contains(ip("1.2.3.4")));
    }

    #[test]
    fn ipv6_blocks() {
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains(ip("2001:db8:ffff::1")));
        assert!(!c.contains(ip("2001:db9::1")));
        let one = Cidr::parse("::1/128").unwrap();
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        assert_eq!(Cidr::parse("::1").unwrap(), one);
        let c = Cidr::parse("fe80::/10").unwrap();
        assert!(c.contains(ip("febf::1")));
        assert!(!c.contains(ip("fec0::1")));
    }

    #[test]
    fn mapped_ipv4_clients_match_ipv4_blocks() {
        let c = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(c.contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0-32"));
        assert!(Cidr::parse("::/129").unwrap_err().contains("0-128"));
        assert!(Cidr::parse("10.0.0/8").unwrap_err().contains("not an IP"));
        assert!(Cidr::parse("").is_err());
        assert!(Cidr::parse("10.0.0.0/x").is_err());
        assert!(Cidr::parse("10.0.0.0/-1").is_err());
        let e = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert!(e.contains("\"10.0.0.0/8\""), "{e}");
    }

    #[test]
    fn deny_wins_and_allow_closes() {
        let acl = IpAcl {
            allow: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            deny: vec![Cidr::parse("10.0.0.5").unwrap()],
        };
        assert!(acl.permits(ip("10.1.1.1")));
        assert!(!acl.permits(ip("10.0.0.5")));
        assert!(!acl.permits(ip("192.168.0.1")));
        let deny_only = IpAcl {
            allow: vec![],
            deny: vec![Cidr::parse("127.0.0.1/32").unwrap()],
        };
        assert!(!deny_only.permits(ip("127.0.0.1")));
        assert!(deny_only.permits(ip("127.0.0.2")));
        assert!(IpAcl::default().permits(ip("1.1.1.1")));
    }
}

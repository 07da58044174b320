//! Which addresses a capture may reach (docs/capture.md). Link-local and cloud metadata addresses
//! are always refused; private, loopback and other internal ranges only when
//! `capture.allow_private` lists them — for monitors of the YAML file and API clients alike.
//! Checked on resolved addresses, by [`super::egress`], which connects to what it checked.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("only http and https URLs can be captured")]
    Scheme,
    #[error("{host} resolves to {ip}, a link-local or cloud metadata address, which is never captured")]
    Forbidden { host: String, ip: IpAddr },
    #[error("{host} resolves to {ip}, a private address; list it in capture.allow_private to capture it")]
    Private { host: String, ip: IpAddr },
    #[error("cannot resolve {host}")]
    Unresolvable { host: String },
    #[error("{host}:{port} is a control port of vigil or its browser, which pages never reach")]
    Reserved { host: String, port: u16 },
}

impl PolicyError {
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::Unresolvable { .. } => "dns_failure",
            _ => "url_not_allowed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Link-local (incl. 169.254.169.254), unspecified, multicast, broadcast, metadata services.
    Forbidden,
    /// Loopback, RFC 1918, carrier-grade NAT, unique local IPv6, documentation/benchmark ranges.
    Private,
    Public,
}

/// The IPv4 address an IPv6 address carries, where the network would reach that IPv4 address:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and
/// 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let seg = v6.segments();
    let tail = std::net::Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(tail)
    } else if seg[0] == 0x2002 {
        Some(std::net::Ipv4Addr::new((seg[1] >> 8) as u8, seg[1] as u8, (seg[2] >> 8) as u8, seg[2] as u8))
    } else if seg[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback() {
        Some(tail)
    } else {
        None
    }
}

/// The address as the network sees it: an IPv6 form of an IPv4 address is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub fn classify(ip: IpAddr) -> Class {
    let ip = canonical(ip);
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || o[0] == 0
                // Alibaba Cloud's metadata service, Oracle Cloud's, Azure's WireServer.
                || v4 == std::net::Ipv4Addr::new(100, 100, 100, 200)
                || v4 == std::net::Ipv4Addr::new(192, 0, 0, 192)
                || v4 == std::net::Ipv4Addr::new(168, 63, 129, 16)
            {
                Class::Forbidden
            } else if v4.is_loopback()
                || v4.is_private()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
            {
                Class::Private
            } else {
                Class::Public
            }
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            // AWS's and Google Cloud's metadata services over IPv6.
            let metadata = ["fd00:ec2::254", "fd20:ce::254"]
                .iter()
                .any(|m| v6 == m.parse::<std::net::Ipv6Addr>().expect("valid"));
            if v6.is_unspecified() || v6.is_multicast() || (seg[0] & 0xffc0) == 0xfe80 || metadata {
                Class::Forbidden
            } else if v6.is_loopback() || (seg[0] & 0xfe00) == 0xfc00 {
                Class::Private
            } else {
                Class::Public
            }
        }
    }
}

/// Whether `ip` is a loopback address, in any of its forms.
pub fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

/// Whether `ip` may be reached.
pub fn allowed(ip: IpAddr, allow_private: &[IpNet]) -> Result<(), Class> {
    match classify(ip) {
        Class::Forbidden => Err(Class::Forbidden),
        Class::Private if allow_private.iter().any(|n| n.contains(&ip) || n.contains(&canonical(ip))) => {
            Ok(())
        }
        Class::Private => Err(Class::Private),
        Class::Public => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classes() {
        for f in [
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
            "168.63.129.16",
            "fd20:ce::254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::169.254.169.254",
        ] {
            assert_eq!(classify(ip(f)), Class::Forbidden, "{f}");
        }
        for p in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
        ] {
            assert_eq!(classify(ip(p)), Class::Private, "{p}");
        }
        for p in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"] {
            assert_eq!(classify(ip(p)), Class::Public, "{p}");
        }
    }

    #[test]
    fn allow_list() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert_eq!(allowed(ip("127.0.0.1"), &allow), Ok(()));
        assert_eq!(allowed(ip("10.0.0.1"), &allow), Err(Class::Private));
        assert_eq!(allowed(ip("::ffff:10.0.0.1"), &allow), Err(Class::Private));
        assert_eq!(allowed(ip("::ffff:127.0.0.1"), &allow), Ok(()), "the IPv4 it carries is allowed");
        // Never, whatever the configuration says.
        let everything: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        assert_eq!(allowed(ip("169.254.169.254"), &everything), Err(Class::Forbidden));
        assert_eq!(allowed(ip("fd00:ec2::254"), &everything), Err(Class::Forbidden));
    }

    #[tokio::test]
    async fn resolved_addresses_are_checked() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let policy = |allow: &[&str]| {
            super::super::egress::Policy::system(
                &allow.iter().map(|n| n.parse().unwrap()).collect::<Vec<IpNet>>(),
            )
        };
        assert!(matches!(
            policy(&["0.0.0.0/0"]).check_url(&u("http://169.254.169.254/latest/meta-data")).await,
            Err(PolicyError::Forbidden { .. })
        ));
        assert!(matches!(
            policy(&[]).check_url(&u("http://localhost:8080/")).await,
            Err(PolicyError::Private { .. })
        ));
        assert_eq!(policy(&["127.0.0.0/8", "::1/128"]).check_url(&u("http://localhost:8080/")).await, Ok(()));
        assert!(matches!(policy(&[]).check_url(&u("http://[::1]/")).await, Err(PolicyError::Private { .. })));
        assert_eq!(policy(&[]).check_url(&u("file:///etc/passwd")).await, Err(PolicyError::Scheme));
    }
}

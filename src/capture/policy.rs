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

pub fn classify(ip: IpAddr) -> Class {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || o[0] == 0
                // Alibaba Cloud's metadata service, Oracle Cloud's.
                || v4 == std::net::Ipv4Addr::new(100, 100, 100, 200)
                || v4 == std::net::Ipv4Addr::new(192, 0, 0, 192)
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
            let metadata = v6 == "fd00:ec2::254".parse::<std::net::Ipv6Addr>().expect("valid");
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

/// Whether `ip` may be reached.
pub fn allowed(ip: IpAddr, allow_private: &[IpNet]) -> Result<(), Class> {
    match classify(ip) {
        Class::Forbidden => Err(Class::Forbidden),
        Class::Private if allow_private.iter().any(|n| n.contains(&ip)) => Ok(()),
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

//! Which addresses a capture may reach (docs/architecture.md §10). Link-local and cloud metadata
//! addresses are always refused; private, loopback and other internal ranges only for monitors of
//! the YAML file (trusted) or when `capture.allow_private` lists them. Checked on the resolved
//! addresses.

use std::net::IpAddr;

use ipnet::IpNet;
use url::Url;

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

/// Whether `ip` may be captured.
pub fn allowed(ip: IpAddr, trusted: bool, allow_private: &[IpNet]) -> Result<(), Class> {
    match classify(ip) {
        Class::Forbidden => Err(Class::Forbidden),
        Class::Private if trusted || allow_private.iter().any(|n| n.contains(&ip)) => Ok(()),
        Class::Private => Err(Class::Private),
        Class::Public => Ok(()),
    }
}

/// Resolves the URL's host and checks every address it resolves to.
pub async fn check_url(url: &Url, trusted: bool, allow_private: &[IpNet]) -> Result<(), PolicyError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(PolicyError::Scheme);
    }
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| PolicyError::Unresolvable { host: host.clone() })?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(PolicyError::Unresolvable { host });
    }
    for ip in addrs {
        match allowed(ip, trusted, allow_private) {
            Ok(()) => {}
            Err(Class::Forbidden) => return Err(PolicyError::Forbidden { host, ip }),
            Err(_) => return Err(PolicyError::Private { host, ip }),
        }
    }
    Ok(())
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
    fn allow_list_and_trust() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert_eq!(allowed(ip("127.0.0.1"), false, &allow), Ok(()));
        assert_eq!(allowed(ip("10.0.0.1"), false, &allow), Err(Class::Private));
        assert_eq!(allowed(ip("10.0.0.1"), true, &allow), Ok(()));
        // Never, whoever asks.
        let everything: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap()];
        assert_eq!(allowed(ip("169.254.169.254"), true, &everything), Err(Class::Forbidden));
    }

    #[tokio::test]
    async fn resolved_addresses_are_checked() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(matches!(
            check_url(&u("http://169.254.169.254/latest/meta-data"), true, &[]).await,
            Err(PolicyError::Forbidden { .. })
        ));
        assert!(matches!(
            check_url(&u("http://localhost:8080/"), false, &[]).await,
            Err(PolicyError::Private { .. })
        ));
        assert_eq!(check_url(&u("http://localhost:8080/"), true, &[]).await, Ok(()));
        assert!(matches!(check_url(&u("http://[::1]/"), false, &[]).await, Err(PolicyError::Private { .. })));
    }
}

//! `vigil check --config FILE`: validate, print the monitors with their next fire times, and warn
//! of what is valid but will not work (a monitor on a private address the policy refuses).

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::capture::policy::{Class, allowed};
use crate::config::Config;

pub fn run(path: &Path) -> ExitCode {
    match crate::config::load(path) {
        Ok(config) => {
            print!("{}", crate::config::report::table(&config, chrono::Utc::now()));
            for w in warnings(&config) {
                eprintln!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            let n = errors.0.len();
            eprintln!("{}: {n} error{}", path.display(), if n == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
    }
}

/// Enabled monitors whose address (an IP address, or `localhost`) the built-in capture's address
/// policy refuses: every run of theirs would fail `url_not_allowed`. (A host name is resolved
/// only when captured; a capture provider has its own policy.)
fn warnings(config: &Config) -> Vec<String> {
    if config.capture.provider.is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in config.monitors.iter().filter(|m| m.enabled) {
        // `localhost` may resolve to either loopback address (/etc/hosts), and every address a
        // name resolves to must be allowed.
        let ips = match m.url.host() {
            Some(url::Host::Ipv4(v4)) => vec![IpAddr::V4(v4)],
            Some(url::Host::Ipv6(v6)) => vec![IpAddr::V6(v6)],
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
                vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)]
            }
            _ => continue,
        };
        for ip in ips {
            match allowed(ip, &config.capture.allow_private) {
                Ok(()) => {}
                Err(Class::Private) => out.push(format!(
                    "monitor {}: {ip} is a private address; its captures are refused (url_not_allowed) \
                     unless capture.allow_private covers it (e.g. \"{ip}/{}\")",
                    m.name,
                    if ip.is_ipv4() { 32 } else { 128 }
                )),
                Err(_) => out.push(format!(
                    "monitor {}: {ip} is an address vigil never captures (link-local, metadata service…)",
                    m.name
                )),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_monitor_on_a_private_address_the_policy_refuses_is_warned_of() {
        let yaml = |allow: &str| {
            format!(
                "capture: {{allow_private: [{allow}]}}\nmonitors:\n  - {{name: local, url: \"http://127.0.0.1:8000/\"}}\n\
                 \x20 - {{name: box, url: \"http://localhost/\"}}\n  - {{name: public, url: \"https://example.com/\"}}\n\
                 \x20 - {{name: meta, url: \"http://169.254.169.254/\"}}\n"
            )
        };
        let config = crate::config::parse(&yaml(""), "m.yaml", &|_| None).unwrap();
        let w = super::warnings(&config);
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(
            w[0].starts_with("monitor local: 127.0.0.1 is a private address")
                && w[0].contains("127.0.0.1/32")
        );
        assert!(w[1].starts_with("monitor box: 127.0.0.1 is a private address"), "{w:#?}");
        assert!(
            w[2].starts_with("monitor box: ::1 is a private address") && w[2].contains("::1/128"),
            "{w:#?}"
        );
        assert!(
            w[3].starts_with("monitor meta: 169.254.169.254 is an address vigil never captures"),
            "{w:#?}"
        );
        let config = crate::config::parse(&yaml("127.0.0.0/8"), "m.yaml", &|_| None).unwrap();
        let w = super::warnings(&config);
        assert_eq!(w.len(), 2, "localhost's ::1, and the metadata service: {w:#?}");
        let config = crate::config::parse(&yaml("127.0.0.0/8, \"::1/128\""), "m.yaml", &|_| None).unwrap();
        assert_eq!(super::warnings(&config).len(), 1, "only the metadata service is left");
    }
}

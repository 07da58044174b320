//! The outgoing HTTP client every feature uses (webhook deliveries, the capture client, the
//! processor's downloads, Slack): no redirects followed, a timeout per request, vigil's user agent.

use std::time::Duration;

/// A client with `timeout` per request that never follows redirects.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a TLS provider is installed at start")
}

/// An error and its causes on one line (`a: b: c`), for logs and recorded attempts.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

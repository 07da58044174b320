//! The outgoing HTTP client every feature uses (webhook deliveries, the capture client, the
//! processor's downloads, Slack): no redirects followed, a timeout per request, vigil's user agent.

use std::time::Duration;

/// A client with `timeout` per request that never follows redirects.
pub fn client(timeout: Duration) -> reqwest::Client {
    builder(timeout).build().expect("a TLS provider is installed at start")
}

/// The settings every client of vigil's shares, for a client that needs more of its own.
pub fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
}

/// Why [`body_within`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("{}", error_chain(.0))]
    Failed(#[from] reqwest::Error),
}

/// The response's body, read chunk by chunk and abandoned past `limit` bytes: a peer that
/// streams without a `Content-Length` cannot make vigil buffer more than that.
pub async fn body_within(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes on one line (`a: b: c`), for logs and recorded attempts.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut last = s.clone();
    let mut cur = e.source();
    while let Some(c) = cur {
        // A cause its error already quoted (sqlx's "error returned from database: (code: 14) …"
        // has the SQLite error as its source) is said once.
        let said = c.to_string();
        if !last.ends_with(&said) {
            s.push_str(": ");
            s.push_str(&said);
        }
        last = said;
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("error returned from database: {0}")]
    struct Quoting(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("(code: 26) file is not a database")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the database vigil.db")]
    struct Outer(#[source] Quoting);

    #[test]
    fn a_cause_its_error_already_quoted_is_said_once() {
        assert_eq!(
            super::error_chain(&Outer(Quoting(Inner))),
            "cannot open the database vigil.db: error returned from database: (code: 26) file is not a database"
        );
    }
}

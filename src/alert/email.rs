//! Email for the `alerts:` destinations with `email:`: an event from the webhook outbox as a
//! message — the summary (with what changed in words) as its subject, the page and review links, and the diff
//! image inline — sent over SMTP with lettre. Building the message is pure; sending it is one
//! SMTP session per message, bounded by the webhook timeout.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use super::message::escape;
use crate::config::{EmailTarget, SmtpTls};

/// Subjects are cut to this many characters.
const SUBJECT_CHARS: usize = 150;

/// Why a message was not sent, and whether trying again can help.
#[derive(Debug)]
pub enum MailError {
    /// A network failure, a timeout, a 4xx answer: try again on the schedule.
    Retry(String),
    /// A 5xx answer (no such recipient, refused sender), an unbuildable message: a person has to act.
    Fatal(String),
}

pub struct Mailer {
    /// `smtp://server:port`, the outbox rows' URL.
    address: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Mailer {
    /// `target` was checked by the config (its addresses parse).
    pub fn new(target: &EmailTarget, timeout: Duration) -> Result<Mailer, String> {
        let tls = |server: &str| {
            TlsParameters::builder(server.to_owned()).build_rustls().map_err(|e| format!("TLS: {e}"))
        };
        let tls = match target.tls {
            SmtpTls::Starttls => Tls::Required(tls(&target.server)?),
            SmtpTls::Tls => Tls::Wrapper(tls(&target.server)?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&target.server)
            .port(target.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&target.username, &target.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let parse = |s: &String| s.parse::<Mailbox>().map_err(|e| format!("{s}: {e}"));
        Ok(Mailer {
            address: target.address(),
            transport: builder.build(),
            from: parse(&target.from)?,
            to: target.to.iter().map(parse).collect::<Result<_, _>>()?,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `event` (an outbox payload) with `diff`, the diff PNG, inline when there is one.
    /// A server that refuses the message for good with the image (too large) gets it without.
    pub async fn send(&self, event: &str, diff: Option<Vec<u8>>) -> Result<(), MailError> {
        let with_image = diff.is_some();
        let first = self.send_one(event, diff).await;
        match first {
            // 552: the message is too large (the image); anything else fails the same without it.
            Err(MailError::Fatal(e)) if with_image && e.starts_with("SMTP: 552") => {
                tracing::warn!(error = %e, "the message with its image was refused; sending it without");
                self.send_one(event, None).await
            }
            other => other,
        }
    }

    async fn send_one(&self, event: &str, diff: Option<Vec<u8>>) -> Result<(), MailError> {
        let message = message(&self.from, &self.to, event, diff).map_err(MailError::Fatal)?;
        let cut = |e: lettre::transport::smtp::Error| e.to_string().chars().take(500).collect::<String>();
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(MailError::Fatal(format!("SMTP: {}", cut(e)))),
            Err(e) => Err(MailError::Retry(format!("SMTP: {}", cut(e)))),
        }
    }
}

/// The message for one event: a plain-text part and an HTML part with the diff inline.
pub fn message(
    from: &Mailbox,
    to: &[Mailbox],
    event: &str,
    diff: Option<Vec<u8>>,
) -> Result<Message, String> {
    let event: Value = serde_json::from_str(event).map_err(|e| format!("unreadable event: {e}"))?;
    let data = &event["data"];
    let text = |key: &str| data[key].as_str().unwrap_or_default().to_owned();
    let summary = match event["type"].as_str() {
        Some("baseline.approved") => format!(
            "{} ({}): new baseline approved by {}",
            text("monitor"),
            text("viewport"),
            text("approved_by")
        ),
        _ => text("summary"),
    };
    let subject: String =
        format!("[vigil] {summary}").chars().filter(|c| !c.is_control()).take(SUBJECT_CHARS).collect();
    let mut lines = vec![summary.clone()];
    if !text("url").is_empty() {
        lines.push(format!("Page: {}", text("url")));
    }
    lines.push(format!("Review: {}", text("review_url")));
    let plain = lines.join("\n\n") + "\n";
    let link = escape(&text("review_url")).replace('"', "&quot;");
    let mut html = format!("<p>{}</p>", escape(&summary));
    if !text("url").is_empty() {
        html.push_str(&format!("<p>Page: {}</p>", escape(&text("url"))));
    }
    html.push_str(&format!("<p><a href=\"{link}\">Open the review</a></p>"));
    let body = match diff {
        Some(png) => {
            html.push_str("<p><img src=\"cid:diff\" alt=\"the diff: changed pixels in red\" style=\"max-width:100%\"></p>");
            MultiPart::related().singlepart(SinglePart::html(html)).singlepart(
                Attachment::new_inline("diff".to_owned())
                    .body(png, ContentType::parse("image/png").expect("valid")),
            )
        }
        None => MultiPart::related().singlepart(SinglePart::html(html)),
    };
    let mut builder = Message::builder().from(from.clone()).subject(subject);
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    builder
        .multipart(MultiPart::alternative().singlepart(SinglePart::plain(plain)).multipart(body))
        .map_err(|e| format!("cannot build the message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_mailed_with_its_words_link_and_image() {
        let event = serde_json::json!({"type": "run.changed", "timestamp": "2026-12-02T05:00:00.000Z", "data": {
            "summary": "pricing changed (1280x800): $49 → $79 · 0.02% of pixels differ\r\nBcc: x@evil.example",
            "url": "https://example.com/<pricing>", "review_url": "http://vigil/runs/run_1\"><script>",
        }});
        let from: Mailbox = "vigil <vigil@example.com>".parse().unwrap();
        let to: Vec<Mailbox> = vec!["web@example.com".parse().unwrap()];
        let m = message(&from, &to, &event.to_string(), Some(vec![0x89, b'P', b'N', b'G'])).unwrap();
        let raw = String::from_utf8_lossy(&m.formatted()).into_owned();
        // One Subject line, with no header smuggled in by the page's words.
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert_eq!(headers.lines().filter(|l| l.starts_with("Subject:")).count(), 1, "{raw}");
        assert!(!headers.lines().any(|l| l.starts_with("Bcc:")), "{raw}");
        assert!(raw.contains("Content-ID: <diff>"), "{raw}");
        assert!(raw.contains("cid:diff") && raw.contains("image/png"), "{raw}");
        let html = raw.split("text/html").nth(1).unwrap();
        assert!(!html.contains("<script>") && !html.contains("<pricing>"), "HTML escaped: {raw}");
        assert!(html.contains("&lt;pricing&gt;"), "{raw}");
        // Without an image: no inline part.
        let plain = message(&from, &to, &event.to_string(), None).unwrap();
        assert!(!String::from_utf8_lossy(&plain.formatted()).contains("cid:diff"));
    }

    #[test]
    fn an_approval_says_who() {
        let event = serde_json::json!({"type": "baseline.approved", "data": {
            "monitor": "home", "viewport": "1280x800", "approved_by": "Dana", "review_url": "http://v/runs/r"}});
        let from: Mailbox = "vigil@example.com".parse().unwrap();
        let m = message(&from, std::slice::from_ref(&from), &event.to_string(), None).unwrap();
        let raw = String::from_utf8_lossy(&m.formatted()).into_owned();
        assert!(raw.contains("Subject: [vigil] home (1280x800): new baseline approved by Dana"), "{raw}");
        assert!(message(&from, &[], "not json", None).is_err());
    }
}

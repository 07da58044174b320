//! Discord and Microsoft Teams destinations: an event rendered in the format of their incoming
//! webhooks — a Discord message with one embed, a Teams (Workflows) message with one Adaptive
//! Card. Pure: the JSON is built here and queued as it will be sent.
//!
//! What comes from the page or the capture (words, error messages) must not reach anyone: Discord
//! is told to parse no mentions (`allowed_mentions.parse: []`, so `@everyone` in a page stays
//! text), and Markdown is escaped in both, so a page cannot add a link.

use serde_json::{Value, json};

use crate::diff::text::TextChange;

/// Discord's limits: embed title 256, description 4,096, content 2,000 characters.
const DISCORD_TITLE: usize = 256;
const DISCORD_DESCRIPTION: usize = 4_000;
/// Kept well under Teams' 28 KB card limit.
const TEAMS_TEXT: usize = 4_000;

/// The lines an event says, from its body (`{"type", "timestamp", "data"}`): a title and the
/// details, unescaped.
fn said(event: &Value) -> (String, Vec<String>, String) {
    let data = &event["data"];
    let text = |key: &str| data[key].as_str().unwrap_or_default().to_owned();
    let title = match event["type"].as_str() {
        Some("baseline.approved") => {
            format!(
                "{} ({}): new baseline approved by {}",
                text("monitor"),
                text("viewport"),
                text("approved_by")
            )
        }
        _ => text("summary"),
    };
    let mut lines = Vec::new();
    if let Some(changes) = data["text_changes"].as_array() {
        let words: Vec<String> = changes
            .iter()
            .filter_map(|c| c["text"].as_array())
            .flatten()
            .filter_map(|t| serde_json::from_value::<TextChange>(t.clone()).ok())
            .map(|t| t.to_string())
            .take(10)
            .collect();
        lines.extend(words);
    }
    // The same change on several pages: which.
    if let Some(runs) = data["runs"].as_array().filter(|r| r.len() > 1) {
        for run in runs.iter().take(12) {
            let (monitor, viewport) = (run["monitor"].as_str(), run["viewport"].as_str());
            lines.push(format!("on {} {}", monitor.unwrap_or_default(), viewport.unwrap_or_default()));
        }
    }
    (title, lines, text("review_url"))
}

/// The monitor's page URL (from the config: linked as it is).
fn page(event: &Value) -> Option<String> {
    event["data"]["url"].as_str().filter(|u| !u.is_empty()).map(|u| format!("Page: {u}"))
}

/// Markdown that Discord and Teams would act on, made literal, and URLs that they would link
/// broken with a zero-width space after `://`.
fn escape_markdown(s: &str) -> String {
    escape_chars(s).replace("://", ":/\u{200b}/")
}

fn escape_chars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '(' | ')' | '<' | '>' | '#' | '@' | '!'
        ) {
            out.push('\\');
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

fn cut(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A Discord incoming-webhook message for `event`.
pub fn discord(event: &Value) -> Value {
    let (title, lines, review) = said(event);
    let colour = match event["type"].as_str() {
        Some("run.failed") => 0xd93025,
        Some("run.recovered" | "baseline.approved") => 0x188038,
        _ => 0xf29900,
    };
    let description: Vec<String> =
        page(event).into_iter().chain(lines.iter().map(|l| escape_markdown(l))).collect();
    json!({
        "username": "vigil",
        "allowed_mentions": {"parse": []},
        "embeds": [{
            "title": cut(&escape_markdown(&title), DISCORD_TITLE),
            "url": review,
            "description": cut(&description.join("\n"), DISCORD_DESCRIPTION),
            "color": colour,
        }],
    })
}

/// A Teams (Workflows "post to a channel when a webhook request is received") message for
/// `event`: one Adaptive Card.
pub fn teams(event: &Value) -> Value {
    let (title, lines, review) = said(event);
    let mut body = vec![json!({
        "type": "TextBlock", "text": cut(&escape_markdown(&title), TEAMS_TEXT),
        "weight": "Bolder", "size": "Medium", "wrap": true,
    })];
    for line in page(event).into_iter().chain(lines.iter().map(|l| escape_markdown(l))) {
        body.push(json!({"type": "TextBlock", "text": cut(&line, TEAMS_TEXT), "wrap": true}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": [{"type": "Action.OpenUrl", "title": "Open review", "url": review}],
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Value {
        json!({"type": "run.changed", "timestamp": "2026-12-02T05:00:00.000Z", "data": {
            "summary": "pricing changed (1280x800): @everyone [win](http://evil.example) · 0.02% of pixels differ",
            "url": "https://example.com/pricing", "review_url": "http://vigil/runs/run_1",
            "text_changes": [{"region": {"x": 0, "y": 0, "width": 1, "height": 1}, "text": [
                {"kind": "replaced", "before": "$49", "after": "$79"}, {"kind": "added", "text": "<@123>"}]}],
        }})
    }

    #[test]
    fn discord_mentions_nobody_and_links_nothing_from_the_page() {
        let m = discord(&change());
        assert_eq!(m["allowed_mentions"]["parse"], json!([]));
        let embed = &m["embeds"][0];
        assert_eq!(embed["url"], "http://vigil/runs/run_1");
        let title = embed["title"].as_str().unwrap();
        assert!(title.starts_with("pricing changed"));
        assert!(title.contains("\\@everyone \\[win\\]\\(http:/\u{200b}/evil.example\\)"), "{title}");
        let description = embed["description"].as_str().unwrap();
        assert!(description.contains("$49 → $79"), "{description}");
        assert!(description.contains("\\<\\@123\\>"), "{description}");
        let long = json!({"type": "run.failed", "data": {"summary": "x".repeat(5000), "review_url": "u"}});
        assert_eq!(discord(&long)["embeds"][0]["title"].as_str().unwrap().chars().count(), DISCORD_TITLE);
    }

    #[test]
    fn teams_gets_an_adaptive_card_with_the_review_link() {
        let m = teams(&change());
        let card = &m["attachments"][0];
        assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(card["content"]["actions"][0]["url"], "http://vigil/runs/run_1");
        let title = card["content"]["body"][0]["text"].as_str().unwrap();
        assert!(
            title.contains("\\[win\\]\\(http:/\u{200b}/evil.example\\)"),
            "no link from the page: {title}"
        );
        assert_eq!(
            card["content"]["body"][1]["text"], "Page: https://example.com/pricing",
            "the config's URL stays a link"
        );
    }
}

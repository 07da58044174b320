//! The alert's wording, checked without Slack.

use super::*;

#[test]
fn changes_always_alert_failures_once_per_streak_and_recoveries_once() {
    use Verdict::*;
    assert_eq!(alert_kind(Changed, &[Changed], 3), Some(AlertKind::Changed));
    assert_eq!(alert_kind(Failed, &[Unchanged], 3), Some(AlertKind::Failed), "a streak starts");
    assert_eq!(alert_kind(Failed, &[], 3), Some(AlertKind::Failed));
    assert_eq!(alert_kind(Failed, &[Failed], 3), None, "the streak goes on");
    assert_eq!(alert_kind(Unchanged, &[Failed], 3), Some(AlertKind::Recovered));
    assert_eq!(alert_kind(BaselineCreated, &[Failed], 3), Some(AlertKind::Recovered));
    assert_eq!(alert_kind(Ignored, &[Failed], 3), Some(AlertKind::Recovered), "captured, a known change");
    assert_eq!(alert_kind(Ignored, &[Unchanged], 3), None);
    assert_eq!(alert_kind(Unchanged, &[Unchanged], 3), None);
    assert_eq!(alert_kind(Approved, &[Failed], 3), None, "a person's decision alerts no one");
    assert_eq!(alert_kind(Unstable, &[Unchanged], 3), None, "one unsettled capture");
    assert_eq!(alert_kind(Unstable, &[Unstable, Unchanged], 3), None);
    assert_eq!(
        alert_kind(Unstable, &[Unstable, Unstable, Unchanged], 3),
        Some(AlertKind::Unstable),
        "the third"
    );
    assert_eq!(alert_kind(Unstable, &[Unstable, Unstable, Unstable], 3), None, "once a streak");
    assert_eq!(alert_kind(Unstable, &[], 1), Some(AlertKind::Unstable));
    assert_eq!(alert_kind(Unchanged, &[Unstable], 3), None, "no recovery alert for settling");
    assert_eq!(alert_kind(Unstable, &[Failed], 3), Some(AlertKind::Recovered), "captured again");
    assert_eq!(alert_kind(Unstable, &[Failed], 1), Some(AlertKind::Unstable), "it says more than recovered");
    assert_eq!(alert_kind(Unchanged, &[Unstable, Failed], 3), None, "recovered already");
    assert_eq!(alert_kind(Failed, &[Unstable, Failed], 3), Some(AlertKind::Failed), "a new streak");
}

pub(crate) fn changed() -> AlertPayload {
    AlertPayload {
        kind: AlertKind::Changed,
        monitor: "pricing".into(),
        url: "https://example.com/pricing?a=1&b=2".into(),
        viewport: "1280x800".into(),
        run_id: "run_01J0000000000000000000000".into(),
        channel: None,
        slack: true,
        diff_pixels: Some(4096),
        total_pixels: Some(1_024_000),
        diff_ratio: Some(0.004),
        size_changed: false,
        regions: (0..7).map(|i| Region { x: i * 10, y: 20, width: 30, height: 40 }).collect(),
        changes: Vec::new(),
        headline: None,
        pages: None,
        clipped: false,
        unstable_runs: None,
        error: None,
        review_url: "http://vigil.local:8080/runs/run_01J0000000000000000000000".into(),
        images: Vec::new(),
        group_until: None,
        hold_until: None,
        group: None,
    }
}

#[test]
fn an_alert_says_first_what_the_words_say_changed() {
    use crate::diff::text::TextChange;
    let regions =
        vec![Region { x: 0, y: 20, width: 30, height: 40 }, Region { x: 0, y: 90, width: 9, height: 9 }];
    let changes = vec![
        RegionChange {
            region: regions[0],
            text: vec![TextChange::Replaced { before: "$49".into(), after: "<!channel> $79".into() }],
            too_many_words: false,
        },
        RegionChange { region: regions[1], text: Vec::new(), too_many_words: false },
    ];
    let alert = AlertPayload { headline: headline(&changes, HEADLINE_CHARS), changes, regions, ..changed() };
    assert!(
        alert.summary().starts_with("pricing changed (1280x800): $49 → <!channel> $79 · "),
        "{}",
        alert.summary()
    );
    assert!(
        alert.fallback_text().contains("$49 → &lt;!channel&gt; $79"),
        "page text escaped: {}",
        alert.fallback_text()
    );
    let json = serde_json::to_value(alert.blocks()).unwrap();
    assert_eq!(json[0]["type"], "header");
    assert_eq!(json[0]["text"]["type"], "plain_text", "no mrkdwn, no mentions from the page");
    assert_eq!(json[0]["text"]["text"], "pricing: $49 → <!channel> $79");
    let listed = json[2]["text"]["text"].as_str().unwrap();
    assert!(listed.contains("• 0, 20 — 30 × 40: $49 → &lt;!channel&gt; $79\n"), "{listed}");
    assert!(listed.contains("• 0, 90 — 9 × 9: image or graphic change\n"), "{listed}");
}

#[test]
fn a_page_full_of_ampersands_keeps_the_alert_within_slacks_limits() {
    use crate::diff::text::TextChange;
    let regions: Vec<Region> = (0..7).map(|i| Region { x: i, y: 0, width: 1, height: 1 }).collect();
    let amps = "&".repeat(100);
    let changes = regions
        .iter()
        .map(|r| RegionChange {
            region: *r,
            text: (0..10)
                .map(|_| TextChange::Replaced { before: amps.clone(), after: amps.clone() })
                .collect(),
            too_many_words: false,
        })
        .collect::<Vec<_>>();
    let alert = AlertPayload {
        headline: headline(&changes, HEADLINE_CHARS),
        changes,
        regions,
        size_changed: true,
        ..changed()
    };
    let json = serde_json::to_value(alert.blocks()).unwrap();
    let section = json[2]["text"]["text"].as_str().unwrap();
    assert!(section.chars().count() <= 3000, "{} characters", section.chars().count());
    assert_eq!(json[2]["text"]["verbatim"], true);
    assert!(json[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    assert!(alert.fallback_text().chars().count() < 4000);
}

#[test]
fn changed_alert_has_facts_regions_and_its_buttons() {
    let json = serde_json::to_value(changed().blocks()).unwrap();
    let blocks = json.as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], "Visual change: pricing");
    let fields: Vec<&str> =
        blocks[1]["fields"].as_array().unwrap().iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert!(fields.contains(&"*Viewport*\n1280x800"), "{fields:?}");
    assert!(fields.contains(&"*Changed*\n0.40% (4096 of 1024000 px)"), "{fields:?}");
    assert!(fields.iter().any(|f| f.contains("a=1&amp;b=2")), "URL text escaped: {fields:?}");
    let regions = blocks[2]["text"]["text"].as_str().unwrap();
    assert!(regions.contains("• 0, 20 — 30 × 40"), "{regions}");
    assert!(regions.contains("and 2 more"), "{regions}");
    let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    let buttons = actions["elements"].as_array().unwrap();
    assert_eq!(buttons[0]["action_id"], APPROVE_ACTION);
    assert_eq!(buttons[0]["value"], "run_01J0000000000000000000000");
    assert_eq!(buttons[0]["style"], "primary");
    assert_eq!(buttons[1]["action_id"], REJECT_ACTION);
    assert_eq!(
        (buttons[1]["value"].as_str(), buttons[1]["style"].as_str()),
        (buttons[0]["value"].as_str(), Some("danger"))
    );
    assert_eq!(
        (buttons[2]["action_id"].as_str(), buttons[2]["value"].as_str()),
        (Some(MUTE_ACTION), Some("pricing"))
    );
    assert_eq!(buttons[3]["url"], "http://vigil.local:8080/runs/run_01J0000000000000000000000");
}

#[test]
fn failed_alert_explains_the_error_and_offers_no_approval() {
    let mut p = changed();
    p.kind = AlertKind::Failed;
    p.error = Some(r#"{"code":"navigation_timeout","message":"page did not load in 30s"}"#.into());
    assert_eq!(
        p.summary(),
        "pricing (1280x800) cannot be captured: page did not load in 30s (navigation_timeout)"
    );
    let json = serde_json::to_string(&p.blocks()).unwrap();
    assert!(json.contains("page did not load in 30s"));
    assert!(!json.contains(APPROVE_ACTION));
}

#[test]
fn percentages_never_round_a_change_to_zero() {
    assert_eq!(percent(0.0), "0%");
    assert_eq!(percent(0.0000123), "0.0012%");
    assert_eq!(percent(0.0345), "3.45%");
    assert_eq!(percent(1.0), "100.00%");
}

#[test]
fn payload_round_trips_through_the_outbox() {
    let p = changed();
    let back: AlertPayload = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    assert!(p.summary().starts_with("pricing changed (1280x800): 0.40%"));
}

#[test]
fn page_derived_text_is_escaped_and_every_part_stays_within_slacks_limits() {
    // A 1,236-character URL with a `|`, and an error a hostile page wrote.
    let url = format!("https://example.com/a|b?q={}", "&".repeat(1200));
    let failed = AlertPayload {
        kind: AlertKind::Failed,
        url: url.clone(),
        error: Some(
            serde_json::json!({
                "code": "http_error",
                "message": format!("the page answered HTTP 500 <!channel> <https://evil.example|Approve now> {}", "&".repeat(5000))
            })
            .to_string(),
        ),
        ..changed()
    };
    let json = serde_json::to_value(failed.blocks()).unwrap();
    let blocks = json.as_array().unwrap();
    assert!(blocks.len() <= 50);
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    for field in blocks[1]["fields"].as_array().unwrap() {
        assert!(field["text"].as_str().unwrap().chars().count() <= 2000, "{field}");
    }
    let text = json.to_string();
    assert!(
        !text.contains("<!channel>") && !text.contains("<https://evil"),
        "page text reached Slack as markup"
    );
    for block in blocks.iter().filter(|b| b["type"] == "section") {
        if let Some(t) = block["text"]["text"].as_str() {
            assert!(t.chars().count() <= 3000, "section text of {}", t.chars().count());
        }
    }
    let fallback = failed.fallback_text();
    assert!(!fallback.contains("<!channel>") && fallback.contains("&lt;!channel&gt;"), "{fallback}");
    assert!(fallback.chars().count() <= 3000);
    // A URL short enough is a link whose target keeps its `|` encoded.
    let short = AlertPayload { url: "https://example.com/a|b".into(), ..changed() };
    let json = serde_json::to_value(short.blocks()).unwrap().to_string();
    assert!(json.contains("<https://example.com/a%7Cb|https://example.com/a|b>"), "{json}");
}

#[test]
fn a_pdf_change_says_which_page_and_a_new_page_count_instead_of_a_size_change() {
    use crate::diff::pdf::PageReport;
    let page =
        AlertPayload { pages: Some(PageReport { before: 3, after: 3, changed: vec![2] }), ..changed() };
    assert_eq!(page.summary(), "pricing changed (1280x800): 0.40% of pixels differ, page 2 of 3 changed");
    let longer = AlertPayload {
        size_changed: true,
        pages: Some(PageReport { before: 3, after: 4, changed: vec![4] }),
        ..changed()
    };
    assert!(longer.summary().ends_with(", page 4 changed; 4 pages, 3 before"), "{}", longer.summary());
    let blocks = serde_json::to_string(&longer.blocks()).unwrap();
    assert!(blocks.contains("*PDF*: page 4 changed; 4 pages, 3 before."), "{blocks}");
    assert!(!blocks.contains("The page size changed"), "{blocks}");
}

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn errors(yaml: &str) -> Vec<String> {
    match parse(yaml, "m.yaml", &no_env) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn minimal_file_gets_defaults() {
    let c = parse("monitors:\n  - name: home\n    url: https://example.com/\n", "m.yaml", &no_env).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.public_url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!(c.storage.database_url.expose(), "sqlite://vigil.db");
    let m = &c.monitors[0];
    assert_eq!(m.name.as_str(), "home");
    assert_eq!(m.viewports[0].key(), "1280x800");
    assert_eq!(m.schedule.six_fields, "0 0 * * * *");
    assert_eq!(m.threshold.ratio, Some(monitor::DEFAULT_THRESHOLD_RATIO));
    assert!(m.enabled && m.full_page);
    assert_eq!(c.webhook.retry_schedule.len(), 8);
    assert!(c.slack.is_none());
}

#[test]
fn defaults_merge_into_monitors() {
    let yaml = r#"
defaults:
  schedule: "*/5 * * * *"
  viewports: [1280x800, {width: 390, height: 844, scale: 3, mobile: true}]
  threshold: 2%
  hide: [".cookie-banner"]
monitors:
  - name: home
    url: https://example.com/
  - name: pricing
    url: https://example.com/pricing
    max_diff_pixels: 500
    hide: []
"#;
    let c = parse(yaml, "m.yaml", &no_env).unwrap();
    let (home, pricing) = (&c.monitors[0], &c.monitors[1]);
    assert_eq!(home.schedule.source, "*/5 * * * *");
    assert_eq!(home.viewports.iter().map(|v| v.key()).collect::<Vec<_>>(), ["1280x800", "390x844@3x-mobile"]);
    assert_eq!(home.threshold, Threshold { ratio: Some(0.02), max_diff_pixels: None });
    assert_eq!(home.hide, [".cookie-banner"]);
    // Setting one limit replaces both inherited limits.
    assert_eq!(pricing.threshold, Threshold { ratio: None, max_diff_pixels: Some(500) });
    assert!(pricing.hide.is_empty());
}

#[test]
fn messages_speak_of_the_file_not_of_the_parser() {
    let retention = errors("storage: {retention: 0s}\nmonitors: []\n");
    assert_eq!(retention, ["m.yaml:1:22: storage.retention: expected a duration from 1h to 3650d (got 0s)"]);
    let twice = errors("monitors: []\nmonitors: []\n");
    assert!(twice[0].contains("duplicate") && !twice[0].contains("DuplicateKeyPolicy"), "{twice:?}");
}

#[test]
fn a_schedule_that_never_fires_is_refused() {
    let at = |schedule: &str| {
        format!("monitors:\n  - name: home\n    url: https://example.com/\n    schedule: \"{schedule}\"\n")
    };
    assert_eq!(
        errors(&at("0 0 31 2 *")),
        ["m.yaml:4:15: monitors[0].schedule: the schedule \"0 0 31 2 *\" never fires (no date matches it)"]
    );
    // 29 February comes every four years.
    assert!(parse(&at("0 0 29 2 *"), "m.yaml", &no_env).is_ok());
    let bad = errors(&at("61 * * * *"));
    assert!(bad[0].contains("minute 0-59"), "says what each field takes: {bad:?}");
}

#[test]
fn three_mistakes_three_errors_with_positions() {
    let yaml = "monitors:\n  - name: home\n    url: https://example.com/\n    schedule: \"61 * * * *\"\n    threshold: two\n    colour: red\n";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].starts_with("m.yaml:4:15: monitors[0].schedule: invalid cron expression"), "{}", errs[0]);
    assert_eq!(
        errs[1],
        "m.yaml:5:16: monitors[0].threshold: expected a percentage like \"2%\" (got \"two\")"
    );
    assert!(errs[2].starts_with("m.yaml:6:5: monitors[0].colour: unknown key;"), "{}", errs[2]);
}

#[test]
fn unknown_keys_suggest_the_closest() {
    let errs = errors("sever:\n  listen: 127.0.0.1:1\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("did you mean \"server\"?"), "{}", errs[0]);
}

#[test]
fn unset_variable_is_named() {
    let yaml = "slack:\n  bot_token: ${SLACK_BOT_TOKEN}\n  channel: \"#alerts\"\n";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("m.yaml:2:14: slack.bot_token: environment variable SLACK_BOT_TOKEN is not set"),
        "{}",
        errs[0]
    );
    let env = |n: &str| (n == "SLACK_BOT_TOKEN").then(|| "xoxb-1".to_owned());
    let c = parse(yaml, "m.yaml", &env).unwrap();
    assert_eq!(c.slack.unwrap().bot_token.expose(), "xoxb-1");
}

#[test]
fn slack_timeout_and_retry_schedule_have_defaults_and_bounds() {
    let base = "slack:\n  bot_token: xoxb-1\n  channel: C0123\n";
    let c = parse(base, "m.yaml", &no_env).unwrap().slack.unwrap();
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.retry_schedule, super::DEFAULT_SLACK_RETRY_SCHEDULE.to_vec());
    let c =
        parse(&format!("{base}  timeout: 1s\n  retry_schedule: [200ms, 1s]\n"), "m.yaml", &no_env).unwrap();
    let c = c.slack.unwrap();
    assert_eq!(c.timeout, Duration::from_secs(1));
    assert_eq!(c.retry_schedule, vec![Duration::from_millis(200), Duration::from_secs(1)]);
    let errs = errors(&format!("{base}  timeout: 1ms\n  retry_schedule: []\n"));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("m.yaml:4:12: slack.timeout:"), "{}", errs[0]);
    assert!(
        errs[1].starts_with("m.yaml:5:19: slack.retry_schedule: expected at least one attempt"),
        "{}",
        errs[1]
    );
}

#[test]
fn interpolation_works_in_quoted_strings_and_defaults() {
    let yaml = "storage:\n  database_url: \"${DB:-sqlite://other.db}\"\n";
    let c = parse(yaml, "m.yaml", &no_env).unwrap();
    assert_eq!(c.storage.database_url.expose(), "sqlite://other.db");
}

#[test]
fn names_must_be_unique_slugs() {
    let yaml = "monitors:\n  - {name: home, url: \"https://a.example/\"}\n  - {name: home, url: \"https://b.example/\"}\n  - {name: Bad/Name, url: \"https://c.example/\"}\n";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].contains("monitors[1].name: duplicate monitor name \"home\" (first used on line 2)"),
        "{}",
        errs[0]
    );
    assert!(errs[1].contains("monitors[2].name: expected a name of 1-64 lowercase"), "{}", errs[1]);
}

#[test]
fn urls_must_be_http() {
    let errs = errors(
        "monitors:\n  - name: x\n    url: file:///etc/passwd\n  - name: y\n    url: javascript:alert(1)\n",
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().all(|e| e.contains("expected an http:// or https:// URL")));
}

#[test]
fn bounds_are_enforced() {
    let yaml = r#"
monitors:
  - name: x
    url: https://example.com/
    viewports: [100000x800, 10x10, "wide"]
    threshold: 150%
    pixel_threshold: 2
    delay: 5 minutes
    timeout: forever
"#;
    let errs = errors(yaml);
    assert_eq!(errs.len(), 7, "{errs:#?}");
}

#[test]
fn missing_required_keys() {
    let errs = errors("monitors:\n  - schedule: \"* * * * *\"\n");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].contains("monitors[0].name: missing"));
    assert!(errs[1].contains("monitors[0].url: missing"));
}

#[test]
fn yaml_syntax_error_has_position() {
    let errs = errors("monitors:\n  - name: [unclosed\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("m.yaml:"), "{}", errs[0]);
    assert!(!errs[0].starts_with("m.yaml:0:0"), "{}", errs[0]);
}

#[test]
fn webhook_secret_format_is_checked_without_echoing_it() {
    let errs = errors("webhook:\n  secret: hunter2\n");
    assert_eq!(errs.len(), 1);
    assert!(!errs[0].contains("hunter2"));
    let ok = "webhook:\n  secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n";
    assert!(parse(ok, "m.yaml", &no_env).is_ok());
}

#[test]
fn masks_and_auth_shapes() {
    let yaml = r##"
monitors:
  - name: x
    url: https://example.com/
    mask: ["#clock", {x: 0, y: 0, width: 120, height: 40}]
    headers: {Authorization: "Bearer ${T:-t}"}
    cookies: [{name: session, value: abc, domain: example.com}]
    basic_auth: {username: u, password: p}
"##;
    let c = parse(yaml, "m.yaml", &no_env).unwrap();
    let m = &c.monitors[0];
    assert_eq!(m.mask, [Mask::Selector("#clock".into()), Mask::Rect { x: 0, y: 0, width: 120, height: 40 }]);
    assert_eq!(m.headers["Authorization"].expose(), "Bearer t");
    assert_eq!(m.cookies[0].value.expose(), "abc");
    assert_eq!(m.basic_auth.as_ref().unwrap().password.expose(), "p");
}

#[test]
fn ten_thousand_monitors_are_accepted() {
    let mut yaml = String::from("monitors:\n");
    for i in 0..10_000 {
        yaml.push_str(&format!(
            "  - name: site-{i}\n    url: https://example.com/{i}\n    mask: [\"#a\", {{x: 0, y: 0, width: 1, height: 1}}]\n    headers: {{A: b}}\n"
        ));
    }
    let c = parse(&yaml, "m.yaml", &no_env).unwrap();
    assert_eq!(c.monitors.len(), 10_000);
}

#[test]
fn min_free_reads_sizes_and_shares_and_defaults_to_5_percent_capped_at_1_gib() {
    let read = |v: &str| {
        parse(&format!("storage:\n  min_free: {v}\n"), "m.yaml", &no_env).map(|c| c.storage.min_free)
    };
    assert_eq!(read("2GiB").unwrap(), MinFree::Bytes(2 << 30));
    assert_eq!(read("500MB").unwrap(), MinFree::Bytes(500_000_000));
    assert_eq!(read("1048576").unwrap(), MinFree::Bytes(1 << 20));
    assert_eq!(read("\"10%\"").unwrap(), MinFree::Ratio(0.1));
    for bad in ["lots", "-3", "\"150%\"", "5 parsecs"] {
        let errors = errors(&format!("storage:\n  min_free: {bad}\n"));
        assert!(
            errors.iter().any(|e| e.contains("storage.min_free") && e.contains("a size like")),
            "{bad}: {errors:?}"
        );
    }
    let c = parse("monitors: []\n", "m.yaml", &no_env).unwrap();
    assert_eq!(c.storage.min_free, MinFree::Default);
    // 5 % of a 64 MB volume; 1 GiB of a 2 TB one.
    assert_eq!(MinFree::Default.bytes(64_000_000), 3_200_000);
    assert_eq!(MinFree::Default.bytes(2_000_000_000_000), 1 << 30);
    assert_eq!(MinFree::Ratio(0.1).bytes(1000), 100);
}

#[test]
fn blobs_live_under_data_dir_by_default_or_where_storage_blobs_says() {
    let c = parse("storage:\n  data_dir: /srv/v\n", "m.yaml", &no_env).unwrap();
    assert!(matches!(&c.storage.blobs, BlobLocation::Files(d) if d == std::path::Path::new("/srv/v/blobs")));
    let c = parse("storage:\n  blobs: file:///mnt/images\n", "m.yaml", &no_env).unwrap();
    assert!(matches!(&c.storage.blobs, BlobLocation::Files(d) if d == std::path::Path::new("/mnt/images")));
    let yaml = "storage:\n  blobs: s3://vigil-images/prod/eu\n  s3:\n    endpoint: http://127.0.0.1:9000\n    region: eu-west-1\n    secret_access_key: ${S3_SECRET}\n";
    let env = |k: &str| (k == "S3_SECRET").then(|| "hush".to_owned());
    let c = parse(yaml, "m.yaml", &env).unwrap();
    let BlobLocation::S3(s3) = &c.storage.blobs else { panic!("{:?}", c.storage.blobs) };
    assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("vigil-images", "prod/eu"));
    assert_eq!(s3.endpoint.as_ref().map(|u| u.as_str()), Some("http://127.0.0.1:9000/"));
    assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s3.secret_access_key.as_ref().map(|s| s.expose()), Some("hush"));
    assert!(!format!("{:?}", c.storage.blobs).contains("hush"), "the secret never prints");
    for (bad, says) in [
        ("blobs: s3://AB/x", "bucket of 3 to 63"),
        ("blobs: s3://ok-bucket/a/../b", "plain path segments"),
        ("blobs: gs://bucket", "a blob location like"),
        ("blobs: file://", "a blob location like"),
        ("s3:\n    region: x", "only read with `blobs: s3://"),
        ("blobs: s3://ok-bucket\n  s3:\n    endpoint: ftp://x", "http:// or https:// URL"),
        ("blobs: s3://ok-bucket\n  s3:\n    regoin: x", "regoin"),
    ] {
        let errors = errors(&format!("storage:\n  {bad}\n"));
        assert!(errors.iter().any(|e| e.contains(says)), "{bad}: {errors:?}");
    }
}

#[test]
fn run_deadline_must_outlast_every_capture_attempt() {
    let c = parse("monitors: []\n", "m.yaml", &no_env).unwrap();
    assert_eq!(c.capture.run_deadline, Duration::from_secs(3600));
    let errors = errors(
        "capture:\n  job_timeout: 60s\n  max_attempts: 3\n  reconcile_after: 60s\n  run_deadline: 4m\n",
    );
    assert!(
        errors.iter().any(|e| e.contains("capture.run_deadline") && e.contains("at least")),
        "{errors:?}"
    );
    let c = parse(
        "capture:\n  job_timeout: 60s\n  max_attempts: 3\n  reconcile_after: 60s\n  run_deadline: 5m\n",
        "m.yaml",
        &no_env,
    )
    .unwrap();
    assert_eq!(c.capture.run_deadline, Duration::from_secs(300));
}

#[test]
fn warm_tabs_are_on_unless_turned_off() {
    let base = "monitors:\n  - name: home\n    url: https://example.com/\n";
    assert!(parse(base, "m.yaml", &no_env).unwrap().capture.warm_tabs);
    let off = format!("capture:\n  warm_tabs: false\n{base}");
    assert!(!parse(&off, "m.yaml", &no_env).unwrap().capture.warm_tabs);
    let bad = errors(&format!("capture:\n  warm_tabs: 3\n{base}"));
    assert!(bad.iter().any(|e| e.contains("capture.warm_tabs")), "{bad:?}");
}

#[test]
fn tokens_may_carry_the_name_reviews_are_recorded_with() {
    let yaml = "auth:\n  api_tokens:\n    - plain-token-0123456789\n    - {name: Dana Reviewer, token: named-token-0123456789}\nmonitors: []\n";
    let c = parse(yaml, "m.yaml", &no_env).unwrap();
    let tokens: Vec<&str> = c.auth.api_tokens.iter().map(|t| t.expose()).collect();
    assert_eq!(tokens, ["plain-token-0123456789", "named-token-0123456789"]);
    assert_eq!(c.auth.reviewers, [None, Some("Dana Reviewer".to_owned())]);
    let errs = errors(
        "auth:\n  api_tokens:\n    - {name: \"\", token: named-token-0123456789}\n    - {name: Eve}\n    - {name: Bob, token: short, colour: red}\nmonitors: []\n",
    );
    assert!(errs.iter().any(|e| e.contains("auth.api_tokens[0].name") && e.contains("1 to 64")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("auth.api_tokens[1].token") && e.contains("missing")), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.contains("auth.api_tokens[2].token") && e.contains("16 characters")),
        "{errs:?}"
    );
    assert!(errs.iter().any(|e| e.contains("auth.api_tokens[2].colour")), "{errs:?}");
    let errs = errors(
        "auth:\n  api_tokens: [{name: \"Dana\\u202e\", token: named-token-0123456789}, named-token-0123456789]\nmonitors: []\n",
    );
    assert!(errs.iter().any(|e| e.contains("auth.api_tokens[0].name")), "a bidi override: {errs:?}");
    let errs = errors(
        "auth:\n  api_tokens: [{name: Dana, token: named-token-0123456789}, named-token-0123456789]\nmonitors: []\n",
    );
    assert!(errs.iter().any(|e| e.contains("given twice")), "{errs:?}");
}

#[test]
fn the_words_rule_follows_limits_set_on_purpose() {
    let yaml = "defaults:\n  unstable_alert_after: 5\nmonitors:\n  - {name: a, url: \"https://example.com/\"}\n  - {name: b, url: \"https://example.com/\", threshold: 2%}\n  - {name: c, url: \"https://example.com/\", max_diff_pixels: 10, alert_on_text_change: true}\n";
    let c = parse(yaml, "m.yaml", &no_env).unwrap();
    let on: Vec<bool> = c.monitors.iter().map(|m| m.alert_on_text_change).collect();
    assert_eq!(on, [true, false, true], "default on; a threshold set on purpose decides alone unless asked");
    assert!(c.monitors.iter().all(|m| m.unstable_alert_after == 5));
    assert!(
        errors("monitors:\n  - {name: a, url: \"https://example.com/\", unstable_alert_after: 0}\n")[0]
            .contains("unstable_alert_after")
    );
}

#[test]
fn alert_destinations_route_by_name() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let yaml = format!(
        "alerts:\n  ops:\n    webhook: https://ops.example.com/hooks\n    secret: {secret}\n  \
         audit:\n    webhook: https://audit.example.com/\n    secret: {secret}\n    events: [baseline.approved]\n\
         defaults:\n  alerts: [slack, ops]\n\
         monitors:\n  - name: home\n    url: https://example.com/\n  \
         - name: report\n    url: https://example.com/r\n    alerts: [audit]\n"
    );
    let c = parse(&yaml, "m.yaml", &no_env).unwrap();
    assert_eq!(c.alerts.len(), 2);
    assert_eq!(c.alerts[0].events, EventType::ALL);
    assert_eq!(c.alerts[1].events, [EventType::BaselineApproved]);
    assert_eq!(c.monitors[0].alerts, ["slack", "ops"]);
    assert_eq!(c.monitors[1].alerts, ["audit"]);
    // Without a list anywhere: Slack and every destination.
    let all = parse(&yaml.replace("defaults:\n  alerts: [slack, ops]\n", ""), "m.yaml", &no_env).unwrap();
    assert_eq!(all.monitors[0].alerts, ["slack", "ops", "audit"]);
}

#[test]
fn alert_destination_mistakes_are_pointed_at() {
    let yaml = "alerts:\n  slack:\n    webhook: https://a.example/\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n  \
                ops:\n    webhook: ftp://a.example/\n    secret: hunter2\n    events: [run.changed, run.exploded]\n\
                monitors:\n  - name: home\n    url: https://example.com/\n    alerts: [pager]\n";
    let e = errors(yaml);
    assert!(e.iter().any(|e| e.starts_with("m.yaml:2:3: alerts.slack: \"slack\" is the name")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("m.yaml:6:14: alerts.ops.webhook:")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("m.yaml:7:13: alerts.ops.secret: expected \"whsec_\"")), "{e:?}");
    assert!(e.iter().any(|e| e.contains("alerts.ops.events[1]: unknown event \"run.exploded\"")), "{e:?}");
    // A name the section does not have.
    assert!(
        e.iter().any(|e| e.starts_with("m.yaml:12:14: monitors[0].alerts[0]: no destination \"pager\"")),
        "{e:?}"
    );
    let bad_secret_only = "alerts:\n  ops:\n    webhook: https://a.example/\n    secret: whsec_c2hvcnQ=\n";
    assert_eq!(errors(bad_secret_only).len(), 1, "too short a secret");
}

#[test]
fn email_destinations_and_their_mistakes() {
    let yaml = "alerts:\n  team:\n    email:\n      server: mail.example.com\n      username: vigil\n      \
                password: hunter2\n      from: \"vigil <vigil@example.com>\"\n      to: [web@example.com]\n";
    let c = parse(
        &format!("{yaml}  chat:\n    discord: https://discord.com/api/webhooks/1/x\n  ms:\n    teams: https://t.example/w\n"),
        "m.yaml",
        &no_env,
    )
    .unwrap();
    assert!(matches!(&c.alerts[1].target, Target::Discord(u) if u.host_str() == Some("discord.com")));
    assert!(matches!(&c.alerts[2].target, Target::Teams(_)));
    let Target::Email(mail) = &c.alerts[0].target else { panic!("an email target") };
    assert_eq!(
        (mail.port, mail.tls, mail.address()),
        (587, SmtpTls::Starttls, "smtp://mail.example.com:587".into())
    );
    let e = errors(
        "alerts:\n  team:\n    email:\n      server: mail.example.com\n      tls: ssl\n      username: vigil\n      \
         from: not an address\n      to: []\n  both:\n    webhook: https://a.example/\n    email: {}\n  \
         bare:\n    webhook: https://a.example/\n    secret: MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n\
         monitors:\n  - name: home\n    url: https://example.com/\n    alerts: []\n",
    );
    for expected in [
        "m.yaml:5:12: alerts.team.email.tls: expected starttls, tls or none",
        "m.yaml:4:7: alerts.team.email: username and password go together",
        "m.yaml:7:13: alerts.team.email.from: not an email address",
        "m.yaml:8:11: alerts.team.email.to: at least one recipient",
        "m.yaml:10:5: alerts.both: expected exactly one of webhook:",
        "m.yaml:14:13: alerts.bare.secret: expected \"whsec_\"",
        "m.yaml:18:13: monitors[0].alerts: at least one destination",
    ] {
        assert!(e.iter().any(|e| e.starts_with(expected)), "{expected}\n{e:#?}");
    }
}

#[test]
fn the_group_window_defaults_to_a_minute_and_zero_turns_it_off() {
    let yaml = "defaults:\n  group_window: 0s\nmonitors:\n  - {name: a, url: \"https://example.com/\"}\n  - {name: b, url: \"https://example.com/\", group_window: 2m}\n";
    let c = parse(yaml, "m.yaml", &no_env).unwrap();
    let windows: Vec<Duration> = c.monitors.iter().map(|m| m.group_window).collect();
    assert_eq!(windows, [Duration::ZERO, Duration::from_secs(120)]);
    let plain =
        parse("monitors:\n  - {name: a, url: \"https://example.com/\"}\n", "m.yaml", &no_env).unwrap();
    assert_eq!(plain.monitors[0].group_window, Duration::from_secs(60));
    let errs = errors("monitors:\n  - {name: a, url: \"https://example.com/\", group_window: 11m}\n");
    assert!(errs[0].starts_with("m.yaml:2:58: monitors[0].group_window:"), "{errs:?}");
}

//! `vigil check` as a user runs it.

use std::process::Command;

fn vigil_check(path: &std::path::Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["check", "--config"])
        .arg(path)
        .env_remove("VIGIL_API_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_accepts_the_example_and_prints_fire_times() {
    let example = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/monitors.example.yaml"));
    let (code, out, err) = vigil_check(example, &[]);
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{out}");
    let home = lines.iter().find(|l| l.starts_with("example-home")).expect("example-home row");
    assert!(home.contains("https://example.com/"));
    assert!(home.contains("1280x800,390x844@3x-mobile"));
    // Three fire times, on the half hour.
    let times: Vec<&str> = home.split(", ").collect();
    assert_eq!(times.len(), 3, "{home}");
    assert!(times.iter().all(|t| t.contains(":00:00") || t.contains(":30:00")), "{home}");
    let docs = lines.iter().find(|l| l.starts_with("example-docs")).expect("example-docs row");
    assert!(docs.contains("disabled") && docs.contains("500 px"));
    assert!(out.contains("3 monitors (1 enabled); configuration is valid"));
}

#[test]
fn check_reports_every_mistake_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "monitors:\n  - name: home\n    url: https://example.com/\n    schedule: \"*/5 * * *\"\n    threshold: two\n    colour: red\n",
    )
    .unwrap();
    let (code, out, err) = vigil_check(&path, &[]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    let p = path.display();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0]
            .starts_with(&format!("{p}:4:15: monitors[0].schedule: expected a cron expression of 5 fields")),
        "{err}"
    );
    assert_eq!(
        lines[1],
        format!("{p}:5:16: monitors[0].threshold: expected a percentage like \"2%\" (got \"two\")")
    );
    assert!(lines[2].starts_with(&format!("{p}:6:5: monitors[0].colour: unknown key")), "{err}");
    assert_eq!(lines[3], format!("{p}: 3 errors"));
}

#[test]
fn check_names_an_unset_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, "auth:\n  api_tokens: [\"${VIGIL_TEST_UNSET_TOKEN}\"]\n").unwrap();
    let (code, _, err) = vigil_check(&path, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("environment variable VIGIL_TEST_UNSET_TOKEN is not set"), "{err}");
    let (code, out, err) = vigil_check(&path, &[("VIGIL_TEST_UNSET_TOKEN", "a-token-of-sufficient-length")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 monitors"));
}

#[test]
fn check_reports_a_missing_file() {
    let (code, _, err) = vigil_check(std::path::Path::new("/nonexistent/monitors.yaml"), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/monitors.yaml") && err.contains("cannot read the file"), "{err}");
}

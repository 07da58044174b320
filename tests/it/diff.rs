//! The diff engine against the reference pixelmatch: for every fixture pair and option set in
//! `tests/fixtures/diff/expected.json` (written by `scripts/diff-fixtures/generate.mjs` from npm
//! pixelmatch 8.0.0 / 7.2.0), the count and the diff image RGBA bytes must be equal.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vigil::diff::{DiffOptions, Limits, compare_png, compare_rgba, decode_png, render_diff};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diff")
}

fn read(name: &str) -> Vec<u8> {
    let path = fixtures().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected() -> Value {
    serde_json::from_slice(&read("expected.json")).expect("expected.json parses")
}

fn options(set: &Value, masks: &Value) -> DiffOptions {
    let mut set = set.clone();
    set["masks"] = masks.clone();
    serde_json::from_value(set).expect("option set is a DiffOptions")
}

#[test]
fn counts_and_diff_images_match_the_reference_for_every_case_and_option_set() {
    let exp = expected();
    let limits = Limits::default();
    let sets = exp["option_sets"].as_object().unwrap();
    let cases = exp["cases"].as_object().unwrap();
    assert!(cases.len() >= 12, "fixture set looks incomplete: {} cases", cases.len());
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, case) in cases {
        let a = decode_png(&read(case["a"].as_str().unwrap()), &limits).unwrap();
        let b = decode_png(&read(case["b"].as_str().unwrap()), &limits).unwrap();
        for (set_name, result) in case["results"].as_object().unwrap() {
            let opts = options(&sets[set_name.as_str()], &case["masks"]);
            let want_count = result["diff_pixels"].as_u64().unwrap();
            let want_img = decode_png(&read(result["diff_image"].as_str().unwrap()), &limits).unwrap();

            let (report, img) = render_diff(&a, &b, &opts);
            if report.diff_pixels != want_count {
                failures.push(format!("{name}/{set_name}: {} pixels, want {want_count}", report.diff_pixels));
            }
            if img != want_img {
                let first = img.data().iter().zip(want_img.data()).position(|(x, y)| x != y);
                failures.push(format!("{name}/{set_name}: diff image differs (first byte {first:?})"));
            }
            // The everyday entry point agrees, and returns an image only when something differs.
            let (quick, maybe_img) = compare_rgba(&a, &b, &opts, true);
            assert_eq!(quick.diff_pixels, want_count, "{name}/{set_name} via compare_rgba");
            match maybe_img {
                Some(i) => assert_eq!(i, want_img, "{name}/{set_name} via compare_rgba"),
                None => assert_eq!(want_count, 0, "{name}/{set_name}: no image although changed"),
            }
            assert_eq!(report.size_changed, a.size() != b.size());
            assert_eq!(report.total_pixels, u64::from(report.width) * u64::from(report.height));
            assert_eq!(report.regions.is_empty(), want_count == 0, "{name}/{set_name} regions");
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 12 * 7, "only {checked} comparisons ran");
}

#[test]
fn compare_png_gives_the_same_answer_from_the_files() {
    let exp = expected();
    let limits = Limits::default();
    for (name, case) in exp["cases"].as_object().unwrap() {
        let (pa, pb) = (read(case["a"].as_str().unwrap()), read(case["b"].as_str().unwrap()));
        let result = &case["results"]["default"];
        let opts = options(&exp["option_sets"]["default"], &case["masks"]);
        let (report, png) = compare_png(&pa, &pb, &opts, &limits, true).unwrap();
        let want = result["diff_pixels"].as_u64().unwrap();
        assert_eq!(report.diff_pixels, want, "{name}");
        match png {
            Some(png) => assert_eq!(
                decode_png(&png, &limits).unwrap(),
                decode_png(&read(result["diff_image"].as_str().unwrap()), &limits).unwrap(),
                "{name}: encoded diff decodes to the expected pixels"
            ),
            None => assert_eq!(want, 0, "{name}: changed but no diff PNG"),
        }
    }
}

#[test]
fn size_change_is_reported_not_just_counted() {
    let limits = Limits::default();
    let (pa, pb) = (read("size_taller.a.png"), read("size_taller.b.png"));
    let (report, _) = compare_png(&pa, &pb, &DiffOptions::default(), &limits, false).unwrap();
    assert!(report.size_changed);
    assert_eq!((report.baseline_size.width, report.baseline_size.height), (160, 120));
    assert_eq!((report.current_size.width, report.current_size.height), (160, 124));
    // the page only grew: exactly the 4 new rows differ, as one region
    assert_eq!(report.diff_pixels, 160 * 4);
    assert_eq!(report.regions.len(), 1);
    let r = report.regions[0];
    assert_eq!((r.x, r.y, r.width, r.height), (0, 120, 160, 4));
}

#[test]
fn threshold_fixtures_straddle_the_default_threshold() {
    let exp = expected();
    let count = |case: &str, set: &str| exp["cases"][case]["results"][set]["diff_pixels"].as_u64().unwrap();
    assert_eq!(count("color_below_threshold", "default"), 0);
    assert!(count("color_above_threshold", "default") > 0);
    assert!(count("color_below_threshold", "threshold_0") > 0);
    assert_eq!(count("identical", "threshold_0"), 0);
    assert!(count("antialiased_edges", "include_aa") > 10 * count("antialiased_edges", "default"));
}

/// `vigil diff` as a user runs it.
mod cli {
    use std::process::{Command, Output};

    use super::fixtures;

    fn vigil_diff(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("diff")
            .args(args)
            .current_dir(fixtures())
            .output()
            .unwrap()
    }

    fn expected_pixels(case: &str) -> u64 {
        super::expected()["cases"][case]["results"]["default"]["diff_pixels"].as_u64().unwrap()
    }

    #[test]
    fn identical_images_exit_0_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("d.png");
        let o = vigil_diff(&["identical.a.png", "identical.b.png", "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("0 of "));
        assert!(!out.exists(), "no diff image when nothing differs");
    }

    #[test]
    fn a_change_exits_1_with_the_reference_count_and_a_diff_image() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("d.png");
        let o =
            vigil_diff(&["text_change.a.png", "text_change.b.png", "--out", out.to_str().unwrap(), "--json"]);
        assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let keys: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["diff_pixels", "total_pixels", "diff_ratio", "width", "height", "size_changed", "regions"] {
            assert!(keys.contains(&k), "missing {k} in {report}");
        }
        assert_eq!(report["diff_pixels"].as_u64().unwrap(), expected_pixels("text_change"));
        assert!(!report["regions"].as_array().unwrap().is_empty());
        // The diff image is the reference one, pixel for pixel.
        let ours = vigil::diff::decode_png(&std::fs::read(&out).unwrap(), &Default::default()).unwrap();
        let theirs =
            vigil::diff::decode_png(&super::read("text_change.default.diff.png"), &Default::default())
                .unwrap();
        assert!(ours.data() == theirs.data());
    }

    #[test]
    fn limits_decide_the_exit_status() {
        let n = expected_pixels("text_change");
        let at = n.to_string();
        let below = (n - 1).to_string();
        let ok = vigil_diff(&["text_change.a.png", "text_change.b.png", "--max-diff-pixels", &at]);
        assert_eq!(ok.status.code(), Some(0));
        let over = vigil_diff(&["text_change.a.png", "text_change.b.png", "--max-diff-pixels", &below]);
        assert_eq!(over.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&over.stdout).contains("over the limit"));
        let ratio = vigil_diff(&["text_change.a.png", "text_change.b.png", "--max-diff-ratio", "1"]);
        assert_eq!(ratio.status.code(), Some(0));
    }

    #[test]
    fn a_mask_covering_the_change_makes_it_pass() {
        let o =
            vigil_diff(&["text_change.a.png", "text_change.b.png", "--mask", "0,0,100000,100000", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
        let bad = vigil_diff(&["text_change.a.png", "text_change.b.png", "--mask", "1,2,3"]);
        assert_eq!(bad.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("x,y,width,height"));
    }

    #[test]
    fn size_changes_are_explained() {
        let o = vigil_diff(&["size_taller.a.png", "size_taller.b.png"]);
        assert_eq!(o.status.code(), Some(1));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("size changed:"), "{out}");
    }

    #[test]
    fn errors_exit_2() {
        let o = vigil_diff(&["nope.png", "identical.b.png"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read nope.png"));
        let o = vigil_diff(&["expected.json", "identical.b.png"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("invalid_png"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

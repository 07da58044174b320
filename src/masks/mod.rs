//! Masks drawn on the review page (docs/review.md, *Masking a region*): a rectangle a reviewer
//! drew on a capture is left out of the comparison of that monitor and viewport from the next
//! run on, beside the config's `mask:`. The YAML file stays the source of the configuration:
//! drawn masks live in the database, are listed on the monitor's page and by the API, and are
//! exported as YAML to paste into the file (then removed here).

pub mod api;

use crate::diff::Region;
use crate::store::DrawnMask;

/// The largest side of a drawn mask, as for any capture.
pub const MAX_SIDE: i64 = 65_536;

/// Why a rectangle cannot be a mask, if it cannot: (the field, why).
pub fn invalid(x: i64, y: i64, width: i64, height: i64) -> Option<(&'static str, &'static str)> {
    if !(0..MAX_SIDE).contains(&x) {
        return Some(("x", "x must be 0 to 65535"));
    }
    if !(0..MAX_SIDE).contains(&y) {
        return Some(("y", "y must be 0 to 65535"));
    }
    if !(1..=MAX_SIDE).contains(&width) {
        return Some(("width", "width must be 1 to 65536"));
    }
    if !(1..=MAX_SIDE).contains(&height) {
        return Some(("height", "height must be 1 to 65536"));
    }
    None
}

/// A drawn mask as the diff takes it (`None` for a row no longer valid).
pub fn region(m: &DrawnMask) -> Option<Region> {
    match invalid(m.x, m.y, m.width, m.height) {
        Some(_) => None,
        None => Some(Region { x: m.x as u32, y: m.y as u32, width: m.width as u32, height: m.height as u32 }),
    }
}

/// The drawn masks of a monitor as items for its `mask:` list in the config, grouped by the
/// viewport they were drawn on (masks there apply to every viewport).
pub fn yaml(masks: &[DrawnMask]) -> String {
    if masks.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "# Add to the monitor's mask: list (its own mask: replaces the one in defaults:).\nmask:\n",
    );
    let mut viewport = None;
    for m in masks {
        if viewport != Some(&m.viewport) {
            out.push_str(&format!("  # drawn on {}\n", m.viewport));
            viewport = Some(&m.viewport);
        }
        out.push_str(&format!("  - {{x: {}, y: {}, width: {}, height: {}}}\n", m.x, m.y, m.width, m.height));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MaskId;
    use crate::time::Timestamp;

    fn mask(x: i64, width: i64) -> DrawnMask {
        DrawnMask {
            id: MaskId::new(),
            monitor: "home".parse().unwrap(),
            viewport: "1280x800".into(),
            x,
            y: 20,
            width,
            height: 40,
            created_by: "alice".into(),
            created_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn drawn_masks_export_as_yaml_the_config_reads() {
        let phone = DrawnMask { viewport: "390x844@3x-mobile".into(), ..mask(1, 2) };
        let text = yaml(&[mask(10, 30), mask(0, 5), phone]);
        assert_eq!(
            text,
            "# Add to the monitor's mask: list (its own mask: replaces the one in defaults:).\nmask:\n  \
             # drawn on 1280x800\n  - {x: 10, y: 20, width: 30, height: 40}\n  - {x: 0, y: 20, width: 5, height: 40}\n  \
             # drawn on 390x844@3x-mobile\n  - {x: 1, y: 20, width: 2, height: 40}\n"
        );
        let config = format!(
            "monitors:\n  - name: home\n    url: \"https://example.com/\"\n{}",
            text.lines().map(|l| format!("    {l}\n")).collect::<String>()
        );
        let parsed = crate::config::parse(&config, "m.yaml", &|_: &str| None).expect("the config reads it");
        assert_eq!(parsed.monitors[0].mask.len(), 3);
        assert_eq!(yaml(&[]), "");
    }

    #[test]
    fn a_mask_is_a_rectangle_inside_a_capture() {
        assert_eq!(invalid(0, 0, 1, 1), None);
        assert!(invalid(-1, 0, 1, 1).is_some());
        assert!(invalid(0, 0, 0, 1).is_some());
        assert!(invalid(0, 0, 1, 65_537).is_some());
        assert_eq!(region(&mask(10, 30)), Some(Region { x: 10, y: 20, width: 30, height: 40 }));
        assert_eq!(region(&mask(10, 0)), None);
    }
}

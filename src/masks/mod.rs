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

/// Why a rectangle cannot be a mask, if it cannot.
pub fn invalid(x: i64, y: i64, width: i64, height: i64) -> Option<&'static str> {
    if x < 0 || y < 0 || x >= MAX_SIDE || y >= MAX_SIDE {
        return Some("x and y must be 0 to 65535");
    }
    if width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE {
        return Some("width and height must be 1 to 65536");
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

/// The drawn masks of a monitor as YAML to paste under it in the config (masks there apply to
/// every viewport: each line says which viewport it was drawn on).
pub fn yaml(masks: &[DrawnMask]) -> String {
    if masks.is_empty() {
        return String::new();
    }
    let mut out = String::from("mask:\n");
    for m in masks {
        out.push_str(&format!(
            "  - {{x: {}, y: {}, width: {}, height: {}}}  # drawn on {} by {}\n",
            m.x,
            m.y,
            m.width,
            m.height,
            m.viewport,
            m.created_by.replace(['\n', '\r'], " ")
        ));
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
            created_by: "alice\nmallory".into(),
            created_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn drawn_masks_export_as_yaml_the_config_reads() {
        let text = yaml(&[mask(10, 30), mask(0, 5)]);
        assert_eq!(
            text,
            "mask:\n  - {x: 10, y: 20, width: 30, height: 40}  # drawn on 1280x800 by alice mallory\n  \
             - {x: 0, y: 20, width: 5, height: 40}  # drawn on 1280x800 by alice mallory\n"
        );
        let config = format!(
            "monitors:\n  - name: home\n    url: \"https://example.com/\"\n{}",
            text.lines().map(|l| format!("    {l}\n")).collect::<String>()
        );
        let parsed = crate::config::parse(&config, "m.yaml", &|_: &str| None).expect("the config reads it");
        assert_eq!(parsed.monitors[0].mask.len(), 2);
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

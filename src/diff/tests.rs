//! Unit tests of the parts beyond the pixelmatch port (which `tests/it/diff.rs` checks
//! against npm): masks, size changes, fast paths, the report shape.

use super::*;

const WHITE: [u8; 4] = [255, 255, 255, 255];
const BLACK: [u8; 4] = [0, 0, 0, 255];

fn solid(w: u32, h: u32, px: [u8; 4]) -> Image {
    Image::new(w, h, px.repeat((w * h) as usize)).unwrap()
}

fn set(img: &mut Image, x: u32, y: u32, px: [u8; 4]) {
    let k = ((y * img.width + x) * 4) as usize;
    img.data[k..k + 4].copy_from_slice(&px);
}

fn get(img: &Image, x: u32, y: u32) -> [u8; 4] {
    let k = ((y * img.width + x) * 4) as usize;
    img.data[k..k + 4].try_into().unwrap()
}

fn rect(x: u32, y: u32, width: u32, height: u32) -> Region {
    Region { x, y, width, height }
}

/// A white canvas with a black `side`×`side` square at (x, y): a change that is not AA.
fn with_square(w: u32, h: u32, x: u32, y: u32, side: u32) -> Image {
    let mut img = solid(w, h, WHITE);
    for yy in y..y + side {
        for xx in x..x + side {
            set(&mut img, xx, yy, BLACK);
        }
    }
    img
}

#[test]
fn identical_buffers_short_circuit_and_return_no_image() {
    let a = with_square(20, 10, 2, 2, 3);
    let (r, img) = compare_rgba(&a, &a.clone(), &DiffOptions::default(), true);
    assert_eq!(r.diff_pixels, 0);
    assert_eq!(r.total_pixels, 200);
    assert_eq!((r.width, r.height, r.size_changed), (20, 10, false));
    assert!(r.regions.is_empty());
    assert!(img.is_none());
}

#[test]
fn render_diff_of_identical_images_is_the_faded_baseline() {
    let a = with_square(4, 4, 0, 0, 2);
    let (r, img) = render_diff(&a, &a, &DiffOptions::default());
    assert_eq!(r.diff_pixels, 0);
    // black at alpha 0.1 over white: 255 + (0 - 255) * 0.1 = 229.5 -> 229
    assert_eq!(get(&img, 0, 0), [229, 229, 229, 255]);
    assert_eq!(get(&img, 3, 3), [255, 255, 255, 255]);
}

#[test]
fn a_changed_square_is_counted_drawn_and_boxed() {
    let a = solid(40, 30, WHITE);
    let b = with_square(40, 30, 10, 5, 4);
    let (r, img) = compare_rgba(&a, &b, &DiffOptions::default(), true);
    assert_eq!(r.diff_pixels, 16);
    assert!((r.diff_ratio - 16.0 / 1200.0).abs() < 1e-12);
    assert_eq!(r.regions, vec![rect(10, 5, 4, 4)]);
    let img = img.expect("diff image when something differs");
    assert_eq!(get(&img, 11, 6), [255, 0, 0, 255]);
    assert_eq!(get(&img, 0, 0), [255, 255, 255, 255]);
    // asked for no image: none rendered
    assert!(compare_rgba(&a, &b, &DiffOptions::default(), false).1.is_none());
}

#[test]
fn darker_pixels_use_the_alt_colour() {
    let a = solid(10, 10, WHITE);
    let b = with_square(10, 10, 3, 3, 3);
    let opts = DiffOptions { diff_color_alt: Some([0, 255, 0]), ..DiffOptions::default() };
    let (_, img) = render_diff(&a, &b, &opts);
    assert_eq!(get(&img, 4, 4), [0, 255, 0, 255]);
    let (_, img) = render_diff(&b, &a, &opts);
    assert_eq!(get(&img, 4, 4), [255, 0, 0, 255]);
}

#[test]
fn below_threshold_changes_are_not_counted() {
    let a = solid(10, 10, [100, 100, 100, 255]);
    let b = solid(10, 10, [101, 100, 100, 255]);
    assert_eq!(compare_rgba(&a, &b, &DiffOptions::default(), false).0.diff_pixels, 0);
    let strict = DiffOptions { threshold: 0.0, ..DiffOptions::default() };
    assert_eq!(compare_rgba(&a, &b, &strict, false).0.diff_pixels, 100);
    let yiq = DiffOptions { threshold: 0.0, metric: Metric::Yiq, ..DiffOptions::default() };
    assert_eq!(compare_rgba(&a, &b, &yiq, false).0.diff_pixels, 100);
}

#[test]
fn masked_changes_are_excluded_and_painted() {
    let a = solid(40, 30, WHITE);
    let mut b = with_square(40, 30, 10, 5, 4);
    set(&mut b, 30, 20, BLACK);
    let opts = DiffOptions { masks: vec![rect(8, 4, 10, 10)], ..DiffOptions::default() };
    let (r, img) = compare_rgba(&a, &b, &opts, true);
    assert_eq!(r.diff_pixels, 1, "only the pixel outside the mask");
    assert_eq!(r.regions, vec![rect(30, 20, 1, 1)]);
    let img = img.unwrap();
    let [mr, mg, mb] = MASK_COLOR;
    assert_eq!(get(&img, 8, 4), [mr, mg, mb, 255]);
    assert_eq!(get(&img, 17, 13), [mr, mg, mb, 255]);
    assert_eq!(get(&img, 18, 13), [255, 255, 255, 255]);
    assert_eq!(get(&img, 30, 20), [255, 0, 0, 255]);
}

#[test]
fn masks_are_clipped_overlapping_and_also_drawn_in_diff_mask_mode() {
    let a = solid(10, 10, WHITE);
    let b = solid(10, 10, BLACK);
    let opts = DiffOptions {
        masks: vec![rect(5, 0, 100, 100), rect(3, 0, 4, 2), rect(50, 50, 5, 5)],
        diff_mask: true,
        ..DiffOptions::default()
    };
    let (r, img) = render_diff(&a, &b, &opts);
    // masked: x >= 5 everywhere, plus x 3..5 in rows 0..2
    assert_eq!(r.diff_pixels, 100 - 50 - 4);
    assert_eq!(get(&img, 3, 0)[..3], MASK_COLOR);
    assert_eq!(get(&img, 3, 2), [255, 0, 0, 255]);
    assert_eq!(get(&img, 9, 9)[..3], MASK_COLOR);
}

#[test]
fn a_fully_masked_difference_counts_as_no_change() {
    let a = solid(10, 10, WHITE);
    let b = with_square(10, 10, 2, 2, 2);
    let opts = DiffOptions { masks: vec![rect(0, 0, 10, 10)], ..DiffOptions::default() };
    let (r, img) = compare_rgba(&a, &b, &opts, true);
    assert_eq!(r.diff_pixels, 0);
    assert!(img.is_none());
}

#[test]
fn taller_capture_counts_the_extra_rows_and_says_why() {
    let a = with_square(10, 10, 1, 1, 2);
    let mut b = with_square(10, 14, 1, 1, 2);
    set(&mut b, 0, 13, [0, 0, 0, 0]); // transparent black: still counted as outside
    let (r, img) = compare_rgba(&a, &b, &DiffOptions::default(), true);
    assert!(r.size_changed);
    assert_eq!((r.width, r.height), (10, 14));
    assert_eq!(r.baseline_size, Size { width: 10, height: 10 });
    assert_eq!(r.current_size, Size { width: 10, height: 14 });
    assert_eq!(r.diff_pixels, 40);
    assert_eq!(r.total_pixels, 140);
    assert_eq!(r.regions, vec![rect(0, 10, 10, 4)]);
    let img = img.unwrap();
    assert_eq!(get(&img, 0, 13), [255, 0, 0, 255]);
    assert_eq!(get(&img, 0, 9), [255, 255, 255, 255]);
}

#[test]
fn wider_and_shorter_uses_the_union_canvas() {
    let a = solid(10, 10, WHITE);
    let b = solid(12, 8, WHITE);
    let opts = DiffOptions { diff_mask: true, ..DiffOptions::default() };
    let (r, img) = render_diff(&a, &b, &opts);
    assert_eq!((r.width, r.height), (12, 10));
    assert_eq!(r.diff_pixels, 12 * 10 - 10 * 8);
    assert_eq!(get(&img, 11, 0), [255, 0, 0, 255], "outside is drawn even with diff_mask");
    assert_eq!(get(&img, 0, 9), [255, 0, 0, 255]);
    assert_eq!(get(&img, 0, 0), [0, 0, 0, 0], "diff_mask leaves equal pixels transparent");
    // a mask over the extra area hides the size change from the count, not from the report
    let opts = DiffOptions { masks: vec![rect(10, 0, 2, 10), rect(0, 8, 12, 2)], ..opts };
    let (r, _) = render_diff(&a, &b, &opts);
    assert_eq!(r.diff_pixels, 0);
    assert!(r.size_changed);
}

#[test]
fn pad_to_keeps_pixels_top_left() {
    let mut img = Image::new(2, 2, (1..=16).collect()).unwrap();
    img.pad_to(3, 3);
    assert_eq!(get(&img, 0, 0), [1, 2, 3, 4]);
    assert_eq!(get(&img, 1, 0), [5, 6, 7, 8]);
    assert_eq!(get(&img, 0, 1), [9, 10, 11, 12]);
    assert_eq!(get(&img, 1, 1), [13, 14, 15, 16]);
    for (x, y) in [(2, 0), (2, 1), (0, 2), (1, 2), (2, 2)] {
        assert_eq!(get(&img, x, y), [0, 0, 0, 0]);
    }
}

#[test]
fn image_new_checks_the_buffer_length() {
    let err = Image::new(2, 2, vec![0; 15]).unwrap_err();
    assert_eq!(err.code(), "invalid_image");
    assert!(Image::new(0, 0, vec![]).is_ok());
}

#[test]
fn bands_on_threads_give_the_same_result_as_one() {
    // Big enough for several bands; noisy so that AA detection crosses band boundaries.
    let (w, h) = (300, 200);
    let a = Image::new(w, h, (0..w * h * 4).map(|i| ((i * 7) % 251) as u8 | 3).collect()).unwrap();
    let mut b = a.clone();
    for i in (0..b.data.len()).step_by(37) {
        b.data[i] = b.data[i].wrapping_add(90);
    }
    for metric in [Metric::Oklab, Metric::Yiq] {
        let opts = DiffOptions { metric, ..DiffOptions::default() };
        let one = compare_same_size_with(&a, &b, a.size(), b.size(), &opts, true, Some(1));
        let three = compare_same_size_with(&a, &b, a.size(), b.size(), &opts, true, Some(3));
        assert!(one.0.diff_pixels > 1000);
        assert_eq!(one.0, three.0);
        assert_eq!(one.1, three.1);
    }
}

#[test]
fn report_serialises_with_the_contract_field_order() {
    let a = solid(4, 4, WHITE);
    let b = with_square(4, 4, 0, 0, 1);
    let json = serde_json::to_string(&compare_rgba(&a, &b, &DiffOptions::default(), false).0).unwrap();
    assert!(
        json.starts_with(
            r#"{"diff_pixels":1,"total_pixels":16,"diff_ratio":0.0625,"width":4,"height":4,"size_changed":false,"regions":[{"x":0,"y":0,"width":1,"height":1}]"#
        ),
        "{json}"
    );
    let back: DiffReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.diff_pixels, 1);
}

#[test]
fn options_deserialise_with_defaults() {
    let o: DiffOptions = serde_json::from_str(r#"{"metric":"yiq","threshold":0.2}"#).unwrap();
    assert_eq!(o.metric, Metric::Yiq);
    assert_eq!(o.threshold, 0.2);
    assert_eq!(o.alpha, 0.1);
    assert_eq!(o.diff_color, [255, 0, 0]);
}

#[test]
fn byte_identical_pngs_are_equal_without_decoding() {
    // Header only: decoding the pixels would fail, so success proves they were not decoded.
    let png = codec::tests::header_only_png(640, 480);
    assert!(decode_png(&png, &Limits::default()).is_err());
    let (r, diff) =
        compare_png(&png, &png.clone(), &DiffOptions::default(), &Limits::default(), true).unwrap();
    assert_eq!((r.diff_pixels, r.width, r.height), (0, 640, 480));
    assert!(diff.is_none());
    // ...but the limits still apply.
    let huge = codec::tests::header_only_png(100_000, 100_000);
    let err = compare_png(&huge, &huge, &DiffOptions::default(), &Limits::default(), true);
    assert_eq!(err.unwrap_err().code(), "image_too_large");
}

#[test]
fn compare_png_decodes_diffs_and_encodes_only_when_changed() {
    let a = with_square(30, 20, 5, 5, 3);
    let b = with_square(30, 20, 6, 5, 3);
    let (pa, pb) = (encode_png(&a).unwrap(), encode_png(&b).unwrap());
    let lim = Limits::default();
    let (r, png) = compare_png(&pa, &pb, &DiffOptions::default(), &lim, true).unwrap();
    let (want, want_img) = render_diff(&a, &b, &DiffOptions::default());
    assert_eq!(r, want);
    assert_eq!(decode_png(&png.unwrap(), &lim).unwrap(), want_img);
    assert!(compare_png(&pa, &pb, &DiffOptions::default(), &lim, false).unwrap().1.is_none());
    // same pixels, different encoding: equal after decoding, no diff image
    let mut rgb = Vec::new();
    let mut enc = png::Encoder::new(&mut rgb, 30, 20);
    enc.set_color(png::ColorType::Rgb);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&a.data.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect::<Vec<_>>()).unwrap();
    w.finish().unwrap();
    let (r, png) = compare_png(&pa, &rgb, &DiffOptions::default(), &lim, true).unwrap();
    assert_eq!(r.diff_pixels, 0);
    assert!(png.is_none());
}

#[test]
fn compare_png_checks_the_union_canvas_against_the_pixel_limit() {
    let wide = encode_png(&solid(64, 1, WHITE)).unwrap();
    let tall = encode_png(&solid(1, 64, WHITE)).unwrap();
    let lim = Limits { max_pixels: 100, ..Limits::default() };
    let err = compare_png(&wide, &tall, &DiffOptions::default(), &lim, false).unwrap_err();
    assert!(matches!(err, DiffError::ImageTooLarge { role: ImageRole::Canvas, .. }));
}

#[test]
fn errors_name_the_failing_side() {
    let good = encode_png(&solid(2, 2, WHITE)).unwrap();
    let err = compare_png(&good, b"nope", &DiffOptions::default(), &Limits::default(), false).unwrap_err();
    assert!(matches!(err, DiffError::InvalidPng { role: ImageRole::Current, .. }));
    assert_eq!(err.to_string(), "current image is not a valid PNG");
}

//! Pure pixel comparison: no I/O, no async, no logging.
//!
//! The comparison is a bit-exact port of the npm `pixelmatch` package: version 8 (OKLab/HyAB
//! colour distance, the default) or version 7 (YIQ distance, [`Metric::Yiq`]). For two images of
//! the same size without masks, the number of differing pixels and the diff image bytes equal
//! what `pixelmatch(img1, img2, output, w, h, options)` gives for the same options (with its
//! default `checkerboard: true`), `a` playing `img1` (the baseline) and `b` `img2` (the capture).
//!
//! On top of pixelmatch:
//! - **Masks** ([`DiffOptions::masks`]): pixels inside a mask rectangle are never counted (as
//!   pixelmatch 8's `ignoreMask`: they still serve as neighbours for anti-aliasing detection) and
//!   are painted [`MASK_COLOR`] in the diff image, also with `diff_mask`.
//! - **Different sizes**: both images are placed at the top-left of a union canvas
//!   (max width × max height); the missing area of the smaller one is transparent black
//!   `(0,0,0,0)` (visible only to the anti-aliasing detector of neighbouring pixels). Every pixel
//!   outside either image counts as different, whatever its colour, is painted `diff_color`
//!   (also with `diff_mask`) and is part of the regions — unless a mask covers it, masks win.
//!   The report says `size_changed` and gives both sizes.
//! - **Regions**: bounding boxes of clusters of counted pixels, at most [`MAX_REGIONS`]; see
//!   `regions.rs` for the merge policy.
//! - **Words** ([`text`]): the words a capture showed travel in its PNG; for each changed
//!   region, what they say changed (`$49 → $79`).
//! - **Fast paths**: byte-identical PNGs are equal after reading the header only; identical
//!   decoded buffers are equal before any per-pixel work; a diff image is only rendered when
//!   asked for and only returned (and encoded) when `diff_pixels > 0`.

mod codec;
mod jsmath;
mod kernel;
mod metric;
pub mod pdf;
mod regions;
pub mod text;

use serde::{Deserialize, Serialize};

pub use codec::{DiffError, ImageRole, Limits, decode_png, encode_png, png_dimensions};
pub use regions::MAX_REGIONS;

use codec::{decode_png_as, png_dimensions_as};

/// Colour of masked pixels in the diff image: a dim blue-grey that no pixelmatch colour uses.
pub const MASK_COLOR: [u8; 3] = [96, 112, 136];

/// An RGBA8 image, row-major, 4 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl Image {
    /// Wraps an RGBA8 buffer; fails when `data.len() != width * height * 4`.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, DiffError> {
        if (width as usize).checked_mul(height as usize).and_then(|n| n.checked_mul(4)) != Some(data.len()) {
            return Err(DiffError::InvalidBuffer { width, height, len: data.len() });
        }
        Ok(Image { width, height, data })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn size(&self) -> Size {
        Size { width: self.width, height: self.height }
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Grows the image to `width`×`height` (both at least the current size) in place, keeping
    /// pixels at the top-left and filling the new area with transparent black.
    fn pad_to(&mut self, width: u32, height: u32) {
        let (ow, oh) = (self.width as usize, self.height as usize);
        let (nw, nh) = (width as usize, height as usize);
        self.data.resize(nw * nh * 4, 0);
        if nw != ow {
            // Move rows back to front so no row overwrites one not yet moved.
            for y in (0..oh).rev() {
                self.data.copy_within(y * ow * 4..(y + 1) * ow * 4, y * nw * 4);
                self.data[(y * nw + ow) * 4..(y + 1) * nw * 4].fill(0);
            }
        }
        self.width = width;
        self.height = height;
    }
}

/// Width and height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

/// An axis-aligned rectangle in pixels: a mask or a changed region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Colour distance used to decide whether two pixels differ.
///
/// The two metrics have different threshold scales: 0.1 under [`Metric::Oklab`] is a
/// HyAB distance in OKLab (1.0 = black vs white), under [`Metric::Yiq`] it means a squared
/// YIQ distance of at most `35215 × 0.1²`. A threshold tuned for pixelmatch 7 keeps its meaning
/// only with `Yiq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// pixelmatch 8.x: OKLab with the HyAB distance and toe-corrected lightness.
    #[default]
    Oklab,
    /// pixelmatch 7.x: YIQ (Kotsarenko & Ramos), including v7's anti-aliasing detector.
    Yiq,
}

/// Comparison options; names and defaults follow pixelmatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffOptions {
    /// Matching threshold, 0 to 1; smaller is more sensitive (default 0.1). Its scale depends
    /// on [`DiffOptions::metric`].
    pub threshold: f64,
    /// Count anti-aliased pixels as differences instead of detecting and ignoring them.
    pub include_aa: bool,
    /// Opacity of the baseline drawn under the diff (default 0.1).
    pub alpha: f64,
    /// Colour of anti-aliased pixels in the diff image (default yellow).
    pub aa_color: [u8; 3],
    /// Colour of differing pixels in the diff image (default red).
    pub diff_color: [u8; 3],
    /// Colour of differing pixels that are darker in the current image (default: `diff_color`).
    pub diff_color_alt: Option<[u8; 3]>,
    /// Draw the diff over a transparent background instead of the faded baseline.
    pub diff_mask: bool,
    pub metric: Metric,
    /// Rectangles (in canvas coordinates) excluded from the comparison.
    pub masks: Vec<Region>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            threshold: 0.1,
            include_aa: false,
            alpha: 0.1,
            aa_color: [255, 255, 0],
            diff_color: [255, 0, 0],
            diff_color_alt: None,
            diff_mask: false,
            metric: Metric::Oklab,
            masks: Vec::new(),
        }
    }
}

/// The outcome of a comparison. Serialises with `diff_pixels`, `total_pixels`, `diff_ratio`,
/// `width`, `height`, `size_changed`, `regions` first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffReport {
    /// Pixels counted as different (never masked ones; anti-aliasing only with `include_aa`).
    pub diff_pixels: u64,
    /// Pixels of the compared canvas, `width * height`, masked ones included.
    pub total_pixels: u64,
    /// `diff_pixels / total_pixels` (0 for an empty canvas).
    pub diff_ratio: f64,
    /// Canvas width: the larger of the two widths.
    pub width: u32,
    /// Canvas height: the larger of the two heights.
    pub height: u32,
    /// The two images differ in size.
    pub size_changed: bool,
    /// Bounding boxes of the changed areas, at most [`MAX_REGIONS`], top to bottom.
    pub regions: Vec<Region>,
    pub baseline_size: Size,
    pub current_size: Size,
    /// Differing pixels that were ignored as anti-aliasing (0 with `include_aa`).
    pub antialiased_pixels: u64,
}

impl DiffReport {
    fn identical(size: Size) -> Self {
        DiffReport {
            diff_pixels: 0,
            total_pixels: u64::from(size.width) * u64::from(size.height),
            diff_ratio: 0.0,
            width: size.width,
            height: size.height,
            size_changed: false,
            regions: Vec::new(),
            baseline_size: size,
            current_size: size,
            antialiased_pixels: 0,
        }
    }
}

/// Compares two decoded images. The diff image is rendered only when `want_diff_image`, and
/// returned only when some pixel was counted as different.
pub fn compare_rgba(
    a: &Image,
    b: &Image,
    opts: &DiffOptions,
    want_diff_image: bool,
) -> (DiffReport, Option<Image>) {
    if a.size() == b.size() && a.data == b.data {
        return (DiffReport::identical(a.size()), None);
    }
    let (report, image) = compare_padded(a, b, opts, want_diff_image);
    let image = image.filter(|_| report.diff_pixels > 0);
    (report, image)
}

/// Compares two decoded images and always renders the diff image, like calling pixelmatch with
/// an output buffer (identical inputs give the faded baseline).
pub fn render_diff(a: &Image, b: &Image, opts: &DiffOptions) -> (DiffReport, Image) {
    let (report, image) = compare_padded(a, b, opts, true);
    (report, image.expect("rendered"))
}

fn compare_padded(a: &Image, b: &Image, opts: &DiffOptions, draw: bool) -> (DiffReport, Option<Image>) {
    if a.size() == b.size() {
        return compare_same_size(a, b, a.size(), b.size(), opts, draw);
    }
    let (w, h) = (a.width.max(b.width), a.height.max(b.height));
    let (mut pa, mut pb) = (a.clone(), b.clone());
    pa.pad_to(w, h);
    pb.pad_to(w, h);
    compare_same_size(&pa, &pb, a.size(), b.size(), opts, draw)
}

/// Runs the kernel on two canvases of equal size; `sa`/`sb` are the original sizes.
fn compare_same_size(
    a: &Image,
    b: &Image,
    sa: Size,
    sb: Size,
    opts: &DiffOptions,
    draw: bool,
) -> (DiffReport, Option<Image>) {
    compare_same_size_with(a, b, sa, sb, opts, draw, None)
}

/// `threads`: number of row bands, `None` to decide from the image size (tests force it).
fn compare_same_size_with(
    a: &Image,
    b: &Image,
    sa: Size,
    sb: Size,
    opts: &DiffOptions,
    draw: bool,
    threads: Option<usize>,
) -> (DiffReport, Option<Image>) {
    let (w, h) = (a.width as usize, a.height as usize);
    let masks: Vec<Region> = opts
        .masks
        .iter()
        .filter_map(|m| {
            let (x1, y1) =
                (m.x.saturating_add(m.width).min(a.width), m.y.saturating_add(m.height).min(a.height));
            (m.x < x1 && m.y < y1).then(|| Region { x: m.x, y: m.y, width: x1 - m.x, height: y1 - m.y })
        })
        .collect();
    let canvas = kernel::Canvas {
        a: &a.data,
        b: &b.data,
        width: w,
        height: h,
        inside_w: sa.width.min(sb.width) as usize,
        inside_h: sa.height.min(sb.height) as usize,
        masks: &masks,
    };
    let params = kernel::Params {
        metric: opts.metric,
        threshold: opts.threshold,
        include_aa: opts.include_aa,
        alpha: opts.alpha,
        aa_color: opts.aa_color,
        diff_color: opts.diff_color,
        diff_color_alt: opts.diff_color_alt.unwrap_or(opts.diff_color),
        diff_mask: opts.diff_mask,
    };
    let mut grid = regions::CellGrid::new(w, h);
    let mut out = if draw { vec![0u8; w * h * 4] } else { Vec::new() };
    let out_slice = draw.then_some(&mut out[..]);
    let counts = match threads {
        Some(n) => kernel::run_with_threads(&canvas, &params, out_slice, &mut grid, n),
        None => kernel::run(&canvas, &params, out_slice, &mut grid),
    };
    let total = (w * h) as u64;
    let report = DiffReport {
        diff_pixels: counts.diff,
        total_pixels: total,
        diff_ratio: if total == 0 { 0.0 } else { counts.diff as f64 / total as f64 },
        width: a.width,
        height: a.height,
        size_changed: sa != sb,
        regions: grid.regions(),
        baseline_size: sa,
        current_size: sb,
        antialiased_pixels: counts.antialiased,
    };
    let image = draw.then_some(Image { width: a.width, height: a.height, data: out });
    (report, image)
}

/// Decodes two PNGs (in parallel when large), compares them and, when `want_diff_png` and some
/// pixel differs, encodes the diff image. `a` is the baseline, `b` the current capture.
pub fn compare_png(
    a: &[u8],
    b: &[u8],
    opts: &DiffOptions,
    limits: &Limits,
    want_diff_png: bool,
) -> Result<(DiffReport, Option<Vec<u8>>), DiffError> {
    if a == b {
        let (width, height) = png_dimensions_as(a, limits, ImageRole::Baseline)?;
        return Ok((DiffReport::identical(Size { width, height }), None));
    }
    let (mut ia, mut ib) = if a.len() + b.len() >= PARALLEL_DECODE_MIN_BYTES {
        std::thread::scope(|s| {
            let hb = s.spawn(|| decode_png_as(b, limits, ImageRole::Current));
            let ra = decode_png_as(a, limits, ImageRole::Baseline);
            let rb = hb.join().expect("decoder thread panicked");
            Ok::<_, DiffError>((ra?, rb?))
        })?
    } else {
        (decode_png_as(a, limits, ImageRole::Baseline)?, decode_png_as(b, limits, ImageRole::Current)?)
    };
    let (sa, sb) = (ia.size(), ib.size());
    if sa == sb && ia.data == ib.data {
        return Ok((DiffReport::identical(sa), None));
    }
    if sa != sb {
        let (w, h) = (sa.width.max(sb.width), sa.height.max(sb.height));
        limits.check(ImageRole::Canvas, w, h)?;
        ia.pad_to(w, h);
        ib.pad_to(w, h);
    }
    let (report, image) = compare_same_size(&ia, &ib, sa, sb, opts, want_diff_png);
    let png = match image {
        Some(img) if report.diff_pixels > 0 => {
            if ia.data.len() >= BACKGROUND_FREE_MIN_BYTES {
                // Returning the decoded images to the OS (unmapping their pages) overlaps
                // with encoding.
                std::thread::scope(|s| {
                    s.spawn(move || drop((ia, ib)));
                    encode_png(&img)
                })
            } else {
                drop((ia, ib));
                encode_png(&img)
            }
            .map(Some)?
        }
        _ => None,
    };
    Ok((report, png))
}

/// From this size on, freeing the decoded images on a second thread pays for the thread.
const BACKGROUND_FREE_MIN_BYTES: usize = 4 << 20;

/// Below this much compressed input, a second decoder thread is not worth starting.
const PARALLEL_DECODE_MIN_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests;

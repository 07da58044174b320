//! The pixelmatch comparison loop (versions 8 and 7), ported line by line, extended with
//! excluded spans (masks, area outside one of two differently sized images) and a coarse
//! cell grid that records where counted differences are (see `regions`).
//!
//! Speed comes from skipping equal pixels in blocks (byte-slice equality, which compiles to
//! wide compares) and from splitting the rows into bands run on scoped threads; the per-pixel
//! arithmetic is untouched so results stay bit-identical to the JavaScript.

use super::jsmath::to_uint8;
use super::metric::{Oklab, brightness_v7, brightness_v8, yiq_delta, yiq_max_delta};
use super::regions::CellGrid;
use super::{MASK_COLOR, Metric, Region};

/// Everything the loop needs besides the pixels, resolved from `DiffOptions`.
pub(crate) struct Params {
    pub metric: Metric,
    pub threshold: f64,
    pub include_aa: bool,
    pub alpha: f64,
    pub aa_color: [u8; 3],
    pub diff_color: [u8; 3],
    pub diff_color_alt: [u8; 3],
    pub diff_mask: bool,
}

/// Two RGBA buffers of the same (union canvas) size plus what is excluded from comparison.
pub(crate) struct Canvas<'a> {
    pub a: &'a [u8],
    pub b: &'a [u8],
    pub width: usize,
    pub height: usize,
    /// Pixels with x >= `inside_w` or y >= `inside_h` lie outside one of the two images.
    pub inside_w: usize,
    pub inside_h: usize,
    /// Mask rectangles, already clipped to the canvas.
    pub masks: &'a [Region],
}

/// Pixel counts found by the loop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub diff: u64,
    pub antialiased: u64,
    pub masked: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.diff += o.diff;
        self.antialiased += o.antialiased;
        self.masked += o.masked;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SpanKind {
    Compare,
    Masked,
    Outside,
}

/// Below this many pixels, a second thread costs more than it saves.
const PARALLEL_MIN_PIXELS: usize = 1 << 19;

/// Runs the comparison over the whole canvas, writing the diff image into `out` when given
/// (it must be zeroed and `width * height * 4` long) and marking counted pixels in `grid`.
pub(crate) fn run(c: &Canvas, p: &Params, out: Option<&mut [u8]>, grid: &mut CellGrid) -> Counts {
    let threads = if c.width * c.height >= PARALLEL_MIN_PIXELS {
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
    } else {
        1
    };
    run_with_threads(c, p, out, grid, threads)
}

/// [`run`] with an explicit number of bands (results do not depend on it).
pub(crate) fn run_with_threads(
    c: &Canvas,
    p: &Params,
    out: Option<&mut [u8]>,
    grid: &mut CellGrid,
    threads: usize,
) -> Counts {
    let cell = grid.cell as usize;
    let cell_rows = c.height.div_ceil(cell);
    let bands = threads.min(cell_rows.max(1));
    if bands <= 1 {
        return band(c, p, 0, c.height, out, grid.rows_mut(0, cell_rows));
    }
    // Band boundaries fall on cell rows so each band owns its cells and its slice of `out`.
    let per_band = cell_rows.div_ceil(bands);
    let mut out_rest = out;
    let mut cells_rest = grid.rows_mut(0, cell_rows);
    let mut jobs = Vec::with_capacity(bands);
    let mut cr = 0;
    while cr < cell_rows {
        let cr_end = (cr + per_band).min(cell_rows);
        let (y0, y1) = (cr * cell, (cr_end * cell).min(c.height));
        let (band_out, rest) = match out_rest {
            Some(o) => {
                let (head, tail) = o.split_at_mut((y1 - y0) * c.width * 4);
                (Some(head), Some(tail))
            }
            None => (None, None),
        };
        out_rest = rest;
        let (band_cells, rest) = cells_rest.split_at(cr_end - cr);
        cells_rest = rest;
        jobs.push((y0, y1, band_out, band_cells));
        cr = cr_end;
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(y0, y1, o, cells)| s.spawn(move || band(c, p, y0, y1, o, cells)))
            .collect();
        let mut total = Counts::default();
        for h in handles {
            total += h.join().expect("diff band panicked");
        }
        total
    })
}

/// One band of rows `[y0, y1)`; `out` and `cells` start at row `y0`.
fn band(
    c: &Canvas,
    p: &Params,
    y0: usize,
    y1: usize,
    out: Option<&mut [u8]>,
    cells: super::regions::CellRows<'_>,
) -> Counts {
    match (p.metric, out) {
        (Metric::Oklab, Some(o)) => {
            Band::<V8, true>::new(c, p, V8(Oklab::new(p.threshold)), o, cells).rows(y0, y1)
        }
        (Metric::Oklab, None) => {
            Band::<V8, false>::new(c, p, V8(Oklab::new(p.threshold)), &mut [], cells).rows(y0, y1)
        }
        (Metric::Yiq, Some(o)) => {
            Band::<V7, true>::new(c, p, V7(yiq_max_delta(p.threshold)), o, cells).rows(y0, y1)
        }
        (Metric::Yiq, None) => {
            Band::<V7, false>::new(c, p, V7(yiq_max_delta(p.threshold)), &mut [], cells).rows(y0, y1)
        }
    }
}

/// The parts that differ between pixelmatch 8 and 7.
trait Algo {
    /// 0 when within the threshold, else ±1 (−1: the second pixel is darker).
    fn delta(&mut self, p1: [u8; 4], p2: [u8; 4], k: usize) -> i32;
    /// Brightness delta of the AA detector; `k` is the centre pixel's byte offset.
    fn brightness(c: [u8; 4], n: [u8; 4], k: usize) -> f64;
}

struct V8(Oklab);
struct V7(f64);

impl Algo for V8 {
    #[inline]
    fn delta(&mut self, p1: [u8; 4], p2: [u8; 4], k: usize) -> i32 {
        self.0.delta(p1, p2, k)
    }
    #[inline]
    fn brightness(c: [u8; 4], n: [u8; 4], _k: usize) -> f64 {
        brightness_v8(c, n)
    }
}

impl Algo for V7 {
    #[inline]
    fn delta(&mut self, p1: [u8; 4], p2: [u8; 4], k: usize) -> i32 {
        yiq_delta(p1, p2, k, self.0)
    }
    #[inline]
    fn brightness(c: [u8; 4], n: [u8; 4], k: usize) -> f64 {
        brightness_v7(c, n, k)
    }
}

#[inline]
fn px(buf: &[u8], i: usize) -> [u8; 4] {
    let p = i * 4;
    buf[p..p + 4].try_into().expect("4 bytes")
}

struct Band<'a, 'o, A: Algo, const DRAW: bool> {
    c: &'a Canvas<'a>,
    p: &'a Params,
    algo: A,
    out: &'o mut [u8],
    /// Row index of `out[0]`.
    out_y0: usize,
    cells: super::regions::CellRows<'o>,
    counts: Counts,
    spans: Vec<(usize, usize, SpanKind)>,
    masks_in_row: Vec<(usize, usize)>,
    /// Memo of the last grey pixel drawn (input RGBA → output grey), only an optimisation.
    gray_in: [u8; 4],
    gray_out: u8,
}

impl<'a, 'o, A: Algo, const DRAW: bool> Band<'a, 'o, A, DRAW> {
    fn new(
        c: &'a Canvas<'a>,
        p: &'a Params,
        algo: A,
        out: &'o mut [u8],
        cells: super::regions::CellRows<'o>,
    ) -> Self {
        let gray_in = [0, 0, 0, 0];
        Band {
            c,
            p,
            algo,
            out,
            out_y0: 0,
            cells,
            counts: Counts::default(),
            spans: Vec::new(),
            masks_in_row: Vec::new(),
            gray_in,
            gray_out: gray_value(p.alpha, gray_in),
        }
    }

    fn rows(mut self, y0: usize, y1: usize) -> Counts {
        self.out_y0 = y0;
        for y in y0..y1 {
            self.row_spans(y);
            for k in 0..self.spans.len() {
                let (s, e, kind) = self.spans[k];
                match kind {
                    SpanKind::Compare => self.compare_span(y, s, e),
                    SpanKind::Masked => {
                        self.counts.masked += (e - s) as u64;
                        if DRAW {
                            let [r, g, b] = MASK_COLOR;
                            self.fill(y, s, e, [r, g, b, 255]);
                        }
                    }
                    SpanKind::Outside => {
                        self.counts.diff += (e - s) as u64;
                        self.cells.mark_span(y, s, e);
                        if DRAW {
                            let [r, g, b] = self.p.diff_color;
                            self.fill(y, s, e, [r, g, b, 255]);
                        }
                    }
                }
            }
        }
        self.counts
    }

    /// Splits row `y` into compared, masked and outside spans, left to right.
    fn row_spans(&mut self, y: usize) {
        let c = self.c;
        let w = c.width;
        let inside_x = if y >= c.inside_h { 0 } else { c.inside_w.min(w) };
        self.spans.clear();
        self.masks_in_row.clear();
        for m in c.masks {
            let (mx, my) = (m.x as usize, m.y as usize);
            if y >= my && y < my + m.height as usize && m.width > 0 {
                self.masks_in_row.push((mx, mx + m.width as usize));
            }
        }
        self.masks_in_row.sort_unstable();
        let mut x = 0;
        let mut k = 0;
        while k < self.masks_in_row.len() {
            let (ms, mut me) = self.masks_in_row[k];
            k += 1;
            while k < self.masks_in_row.len() && self.masks_in_row[k].0 <= me {
                me = me.max(self.masks_in_row[k].1);
                k += 1;
            }
            let ms = ms.max(x);
            self.push_unmasked(x, ms, inside_x);
            if me > ms {
                self.spans.push((ms, me, SpanKind::Masked));
            }
            x = x.max(me);
        }
        self.push_unmasked(x, w, inside_x);
    }

    fn push_unmasked(&mut self, s: usize, e: usize, inside_x: usize) {
        if s < e.min(inside_x) {
            self.spans.push((s, e.min(inside_x), SpanKind::Compare));
        }
        if s.max(inside_x) < e {
            self.spans.push((s.max(inside_x), e, SpanKind::Outside));
        }
    }

    fn fill(&mut self, y: usize, s: usize, e: usize, rgba: [u8; 4]) {
        let row = (y - self.out_y0) * self.c.width;
        for px in self.out[(row + s) * 4..(row + e) * 4].chunks_exact_mut(4) {
            px.copy_from_slice(&rgba);
        }
    }

    #[inline]
    fn put(&mut self, y: usize, x: usize, rgb: [u8; 3]) {
        let o = ((y - self.out_y0) * self.c.width + x) * 4;
        self.out[o..o + 4].copy_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
    }

    fn gray_span(&mut self, y: usize, s: usize, e: usize) {
        let c = self.c;
        let row = y * c.width;
        let orow = (y - self.out_y0) * c.width;
        let src = &c.a[(row + s) * 4..(row + e) * 4];
        let dst = &mut self.out[(orow + s) * 4..(orow + e) * 4];
        let (mut last_in, mut last_out) = (self.gray_in, self.gray_out);
        for (o, i) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            let p: [u8; 4] = i.try_into().expect("4 bytes");
            if p != last_in {
                last_in = p;
                last_out = gray_value(self.p.alpha, p);
            }
            o.copy_from_slice(&[last_out, last_out, last_out, 255]);
        }
        (self.gray_in, self.gray_out) = (last_in, last_out);
    }

    fn compare_span(&mut self, y: usize, s: usize, e: usize) {
        let c = self.c;
        let row = y * c.width;
        if DRAW && !self.p.diff_mask {
            self.gray_span(y, s, e);
        }
        if c.a[(row + s) * 4..(row + e) * 4] == c.b[(row + s) * 4..(row + e) * 4] {
            return;
        }
        const BLOCK: usize = 8;
        let mut x = s;
        while x < e {
            let end = (x + BLOCK).min(e);
            let (p0, p1) = ((row + x) * 4, (row + end) * 4);
            if c.a[p0..p1] != c.b[p0..p1] {
                for xx in x..end {
                    self.pixel(y, xx, row + xx);
                }
            }
            x = end;
        }
    }

    #[inline]
    fn pixel(&mut self, y: usize, x: usize, i: usize) {
        let c = self.c;
        let (pa, pb) = (px(c.a, i), px(c.b, i));
        if pa == pb {
            return;
        }
        let delta = self.algo.delta(pa, pb, i * 4);
        if delta == 0 {
            return; // already drawn grey by `gray_span`
        }
        let excluded_aa = !self.p.include_aa
            && (antialiased::<A>(c.a, x, y, c.width, c.height, c.a, c.b)
                || antialiased::<A>(c.b, x, y, c.width, c.height, c.b, c.a));
        if excluded_aa {
            self.counts.antialiased += 1;
            if DRAW && !self.p.diff_mask {
                self.put(y, x, self.p.aa_color);
            }
        } else {
            self.counts.diff += 1;
            self.cells.mark(x, y);
            if DRAW {
                let color = if delta < 0 { self.p.diff_color_alt } else { self.p.diff_color };
                self.put(y, x, color);
            }
        }
    }
}

/// `drawGrayPixel`: the first image's luma blended with white by `alpha`.
#[inline]
fn gray_value(alpha: f64, p: [u8; 4]) -> u8 {
    let [r, g, b, a] = p.map(f64::from);
    let val = 255.0 + (r * 0.298_895_31 + g * 0.586_622_47 + b * 0.114_482_23 - 255.0) * alpha * a / 255.0;
    to_uint8(val)
}

/// `antialiased()`: is the pixel at (x1, y1) of `img` likely part of anti-aliasing? Based on
/// "Anti-aliased Pixel and Intensity Slope Detector" (V. Vysniauskas, 2009).
///
/// pixelmatch returns `false` as soon as three neighbours have a brightness delta of 0 (image
/// borders count as one), and a neighbour with exactly the centre's RGBA has a delta of 0. So a
/// count of exactly equal neighbours, taken with word compares, settles most pixels (all of a
/// flat area) without arithmetic; the rest go through pixelmatch's loop in its order (column by
/// column), which decides ties between equal minima or maxima.
fn antialiased<A: Algo>(
    img: &[u8],
    x1: usize,
    y1: usize,
    width: usize,
    height: usize,
    a: &[u8],
    b: &[u8],
) -> bool {
    if has_many_siblings(img, x1, y1, width, height) {
        return false;
    }
    let x0 = x1.saturating_sub(1);
    let y0 = y1.saturating_sub(1);
    let x2 = (x1 + 1).min(width - 1);
    let y2 = (y1 + 1).min(height - 1);
    let pos4 = (y1 * width + x1) * 4;
    let center = word(img, y1 * width + x1);
    let mut zeroes = u32::from(x1 == x0 || x1 == x2 || y1 == y0 || y1 == y2);
    let (mut min, mut max) = (0.0f64, 0.0f64);
    let (mut min_x, mut min_y, mut max_x, mut max_y) = (0, 0, 0, 0);
    for x in x0..=x2 {
        for y in y0..=y2 {
            if x == x1 && y == y1 {
                continue;
            }
            let n = word(img, y * width + x);
            let delta =
                if n == center { 0.0 } else { A::brightness(center.to_ne_bytes(), n.to_ne_bytes(), pos4) };
            if delta == 0.0 {
                zeroes += 1;
                if zeroes > 2 {
                    return false;
                }
            } else if delta < min {
                min = delta;
                min_x = x;
                min_y = y;
            } else if delta > max {
                max = delta;
                max_x = x;
                max_y = y;
            }
        }
    }
    if min == 0.0 || max == 0.0 {
        return false;
    }
    (has_many_siblings(a, min_x, min_y, width, height) && has_many_siblings(b, min_x, min_y, width, height))
        || (has_many_siblings(a, max_x, max_y, width, height)
            && has_many_siblings(b, max_x, max_y, width, height))
}

/// The pixel at index `i` as one native-endian word (equality only; bytes via `to_ne_bytes`).
#[inline]
fn word(buf: &[u8], i: usize) -> u32 {
    let p = i * 4;
    u32::from_ne_bytes(buf[p..p + 4].try_into().expect("4 bytes"))
}

/// Three consecutive pixels starting at index `i`.
#[inline]
fn words3(buf: &[u8], i: usize) -> (u32, u32, u32) {
    let p = i * 4;
    let s = &buf[p..p + 12];
    let w = |o: usize| u32::from_ne_bytes([s[o], s[o + 1], s[o + 2], s[o + 3]]);
    (w(0), w(4), w(8))
}

/// `hasManySiblings()`: does the pixel have 3+ adjacent pixels of exactly the same RGBA
/// (image borders count as one)? The answer does not depend on the order of the neighbours,
/// so inside the image all eight are compared at once, without branches.
#[inline]
fn has_many_siblings(img: &[u8], x1: usize, y1: usize, width: usize, height: usize) -> bool {
    if x1 == 0 || y1 == 0 || x1 + 1 >= width || y1 + 1 >= height {
        return has_many_siblings_at_border(img, x1, y1, width, height);
    }
    let i = y1 * width + x1;
    let val = word(img, i);
    let (n0, n1, n2) = words3(img, i - width - 1);
    let (n3, _, n4) = words3(img, i - 1);
    let (n5, n6, n7) = words3(img, i + width - 1);
    let eq = |n: u32| u32::from(n == val);
    eq(n0) + eq(n1) + eq(n2) + eq(n3) + eq(n4) + eq(n5) + eq(n6) + eq(n7) > 2
}

/// [`has_many_siblings`] on the image's edge, as pixelmatch writes it.
fn has_many_siblings_at_border(img: &[u8], x1: usize, y1: usize, width: usize, height: usize) -> bool {
    let x0 = x1.saturating_sub(1);
    let y0 = y1.saturating_sub(1);
    let x2 = (x1 + 1).min(width - 1);
    let y2 = (y1 + 1).min(height - 1);
    let val = word(img, y1 * width + x1);
    let mut zeroes = u32::from(x1 == x0 || x1 == x2 || y1 == y0 || y1 == y2);
    for x in x0..=x2 {
        for y in y0..=y2 {
            if x == x1 && y == y1 {
                continue;
            }
            zeroes += u32::from(val == word(img, y * width + x));
            if zeroes > 2 {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pixelmatch's `antialiased`, line by line, without the shortcuts above.
    fn antialiased_as_written<A: Algo>(
        img: &[u8],
        x1: usize,
        y1: usize,
        w: usize,
        h: usize,
        a: &[u8],
        b: &[u8],
    ) -> bool {
        let (x0, y0) = (x1.saturating_sub(1), y1.saturating_sub(1));
        let (x2, y2) = ((x1 + 1).min(w - 1), (y1 + 1).min(h - 1));
        let pos4 = (y1 * w + x1) * 4;
        let mut zeroes = u32::from(x1 == x0 || x1 == x2 || y1 == y0 || y1 == y2);
        let (mut min, mut max) = (0.0f64, 0.0f64);
        let (mut min_x, mut min_y, mut max_x, mut max_y) = (0, 0, 0, 0);
        for x in x0..=x2 {
            for y in y0..=y2 {
                if x == x1 && y == y1 {
                    continue;
                }
                let delta = A::brightness(px(img, y1 * w + x1), px(img, y * w + x), pos4);
                if delta == 0.0 {
                    zeroes += 1;
                    if zeroes > 2 {
                        return false;
                    }
                } else if delta < min {
                    (min, min_x, min_y) = (delta, x, y);
                } else if delta > max {
                    (max, max_x, max_y) = (delta, x, y);
                }
            }
        }
        if min == 0.0 || max == 0.0 {
            return false;
        }
        let siblings = |img: &[u8], x, y| has_many_siblings_at_border(img, x, y, w, h);
        (siblings(a, min_x, min_y) && siblings(b, min_x, min_y))
            || (siblings(a, max_x, max_y) && siblings(b, max_x, max_y))
    }

    /// Images of a few colours (so that neighbours are often equal), some semi-transparent.
    fn noise(w: usize, h: usize, seed: u64) -> Vec<u8> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let palette: Vec<[u8; 4]> = (0..5)
            .map(|_| {
                [
                    rng.random(),
                    rng.random(),
                    rng.random(),
                    if rng.random_bool(0.2) { rng.random() } else { 255 },
                ]
            })
            .collect();
        (0..w * h).flat_map(|_| palette[rng.random_range(0..palette.len())]).collect()
    }

    #[test]
    fn shortcuts_give_pixelmatchs_answer_everywhere_including_the_edges() {
        let mut seen = [0u32; 2];
        for seed in 0..40 {
            let (w, h) = (3 + seed as usize % 7, 2 + seed as usize % 5);
            let (a, b) = (noise(w, h, seed), noise(w, h, seed + 1000));
            for y in 0..h {
                for x in 0..w {
                    let what = format!("seed {seed}, {w}x{h}, pixel ({x}, {y})");
                    assert_eq!(
                        has_many_siblings(&a, x, y, w, h),
                        has_many_siblings_at_border(&a, x, y, w, h),
                        "{what}"
                    );
                    let v8 = antialiased::<V8>(&a, x, y, w, h, &a, &b);
                    assert_eq!(v8, antialiased_as_written::<V8>(&a, x, y, w, h, &a, &b), "v8, {what}");
                    seen[usize::from(v8)] += 1;
                    assert_eq!(
                        antialiased::<V7>(&b, x, y, w, h, &b, &a),
                        antialiased_as_written::<V7>(&b, x, y, w, h, &b, &a),
                        "v7, {what}"
                    );
                }
            }
        }
        assert!(seen[0] > 0 && seen[1] > 0, "both answers exercised: {seen:?}");
    }
}

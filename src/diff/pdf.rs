//! PDF captures as images, so that a PDF monitor is compared like any other: every page is
//! rasterised with hayro (pure Rust, no system library) at [`SCALE`] on white, the pages are
//! stacked top to bottom into one image, and their heights travel in a `tEXt` chunk of its PNG.
//! A comparison of two such PNGs then says how many pages each side has and which pages the
//! changed regions fall on ([`PageReport`]).
//!
//! The input may come from another capture provider, so it is read under limits: at most
//! [`MAX_PAGES`] pages, each page and the stacked image within the diff's [`Limits`] (checked from
//! the page sizes before any pixel buffer exists), and a parser or renderer panic is an
//! `invalid_pdf` error, not a crash. Not bounded here: the memory the parser may inflate streams
//! into and the time a page with deeply repeated drawings takes (docs/architecture.md, "PDF
//! monitors").

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize};

use super::codec::ImageRole;
use super::{DiffError, Image, Limits, Region};

/// Pixels per PDF point: 1.5 renders at 108 dpi, so a US Letter page (612 × 792 pt) is 918 × 1188.
pub const SCALE: f32 = 1.5;
/// Most pages rendered from one PDF (50 US Letter pages are 59,400 px tall, within the diff's
/// 65,536 px).
pub const MAX_PAGES: usize = 50;
/// The `tEXt` keyword of the pages' heights in a rendered PDF's PNG.
const KEYWORD: &[u8] = b"vigil:pages";

/// Whether `bytes` is a PDF (its header), rather than a PNG.
pub fn is_pdf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"%PDF-")
}

/// A PDF rendered page by page and stacked: the image, and each page's height in it.
#[derive(Debug)]
pub struct Rendered {
    pub image: Image,
    pub page_heights: Vec<u32>,
}

/// How the pages of two rendered PDFs compare: their counts, and the pages (1-based) the changed
/// regions fall on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageReport {
    /// Pages of the baseline.
    pub before: u32,
    /// Pages of the capture.
    pub after: u32,
    /// Pages with a changed region, in order (a page only one side has counts as changed).
    pub changed: Vec<u32>,
}

impl PageReport {
    /// Which pages changed, and the page count when it changed: `page 2 of 3 changed`,
    /// `pages 3, 4 changed; 4 pages, 2 before`.
    pub fn said(&self) -> String {
        const LISTED: usize = 10;
        let mut listed: Vec<String> = self.changed.iter().take(LISTED).map(u32::to_string).collect();
        if self.changed.len() > LISTED {
            listed.push(format!("… ({} pages)", self.changed.len()));
        }
        let which = match self.changed.len() {
            0 => "no page".to_owned(),
            1 => format!("page {}", listed[0]),
            _ => format!("pages {}", listed.join(", ")),
        };
        match self.before == self.after {
            true => format!("{which} of {} changed", self.after),
            false => format!("{which} changed; {} pages, {} before", self.after, self.before),
        }
    }
}

/// Renders every page of `pdf` on white at [`SCALE`] and stacks them, each at the left edge
/// (pages narrower than the widest are padded with white).
pub fn rasterise(pdf: &[u8], limits: &Limits) -> Result<Rendered, DiffError> {
    // The parser and the renderer read what a capture provider sent: a panic anywhere in them is
    // this PDF's error, not the caller's.
    catch_unwind(AssertUnwindSafe(|| render_pages(pdf, limits)))
        .unwrap_or_else(|_| Err(DiffError::InvalidPdf { reason: "the renderer failed".into() }))
}

fn render_pages(pdf: &[u8], limits: &Limits) -> Result<Rendered, DiffError> {
    use hayro::hayro_interpret::InterpreterSettings;
    use hayro::vello_cpu::color::palette::css::WHITE;
    use hayro::{PixmapSettings, RenderCache, RenderSettings};

    let invalid = |reason: &str| DiffError::InvalidPdf { reason: reason.to_owned() };
    if pdf.len() > limits.max_input_bytes {
        return Err(DiffError::InputTooLarge {
            role: ImageRole::Current,
            len: pdf.len(),
            max: limits.max_input_bytes,
        });
    }
    let document = hayro::hayro_syntax::Pdf::new(pdf.to_vec()).map_err(|e| match e {
        hayro::hayro_syntax::LoadPdfError::Decryption(_) => invalid("it is encrypted"),
        hayro::hayro_syntax::LoadPdfError::Invalid => invalid("it cannot be read"),
    })?;
    let pages = document.pages();
    if pages.is_empty() {
        return Err(invalid("it has no pages"));
    }
    if pages.len() > MAX_PAGES {
        return Err(DiffError::TooManyPages { pages: pages.len(), max: MAX_PAGES });
    }
    // The sizes first: nothing is rendered for a PDF whose pages would not fit the limits.
    let sizes: Vec<(u32, u32)> = pages
        .iter()
        .map(|p| {
            let (w, h) = p.render_dimensions();
            ((w * SCALE).floor().max(1.0) as u32, (h * SCALE).floor().max(1.0) as u32)
        })
        .collect();
    let width = sizes.iter().map(|s| s.0).max().unwrap_or(1);
    let height = sizes.iter().map(|s| u64::from(s.1)).sum::<u64>();
    // hayro draws into u16-sized surfaces.
    if width > u32::from(u16::MAX) || sizes.iter().any(|s| s.1 > u32::from(u16::MAX)) {
        return Err(invalid("a page is too large to render"));
    }
    let height = u32::try_from(height).unwrap_or(u32::MAX);
    limits.check(ImageRole::Current, width, height)?;

    let mut data = vec![255u8; width as usize * height as usize * 4];
    let cache = RenderCache::new();
    let interpreter = InterpreterSettings::default();
    let settings = RenderSettings::default();
    let pixmap = PixmapSettings { x_scale: SCALE, y_scale: SCALE, bg_color: WHITE };
    let mut top = 0usize;
    for (page, &(pw, ph)) in pages.iter().zip(&sizes) {
        let rendered = hayro::render(page, &cache, &interpreter, &settings, &pixmap);
        let (rw, rh) = (usize::from(rendered.width()), usize::from(rendered.height()));
        let pixels = rendered.data_as_u8_slice();
        // The surface is the page's size rounded down, as `sizes`; copied row by row, opaque
        // (white under any transparency hayro leaves: the page's background is white).
        let (cw, ch) = (rw.min(pw as usize), rh.min(ph as usize));
        for y in 0..ch {
            let src = &pixels[y * rw * 4..(y * rw + cw) * 4];
            let at = ((top + y) * width as usize) * 4;
            for (o, p) in data[at..at + cw * 4].chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                // Premultiplied over white: c + (255 - a).
                let a = 255 - p[3];
                o.copy_from_slice(&[
                    p[0].saturating_add(a),
                    p[1].saturating_add(a),
                    p[2].saturating_add(a),
                    255,
                ]);
            }
        }
        top += ph as usize;
    }
    let image = Image::new(width, height, data)?;
    Ok(Rendered { image, page_heights: sizes.iter().map(|s| s.1).collect() })
}

/// The PNG of a rendered PDF: the image, with its pages' heights in a `tEXt` chunk.
pub fn encode(rendered: &Rendered) -> Result<Vec<u8>, DiffError> {
    let heights: Vec<String> = rendered.page_heights.iter().map(u32::to_string).collect();
    let png = super::encode_png(&rendered.image)?;
    let text = [KEYWORD, &[0], heights.join(",").as_bytes()].concat();
    Ok(super::text::with_chunk(&png, b"tEXt", &text).expect("an encoded PNG ends with its IEND"))
}

/// The pages' heights in a rendered PDF's PNG; `None` for a PNG that is not one (or whose chunk
/// is damaged).
pub fn page_heights(png: &[u8]) -> Option<Vec<u32>> {
    let chunk = super::text::chunks(png).find(|c| &c.kind == b"tEXt" && c.data.starts_with(KEYWORD))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(b"tEXt");
    crc.update(chunk.data);
    if crc.finalize() != chunk.crc {
        return None;
    }
    let text = std::str::from_utf8(chunk.data.get(KEYWORD.len() + 1..)?).ok()?;
    let heights: Vec<u32> = text.split(',').map(str::parse).collect::<Result<_, _>>().ok()?;
    // Pages that do not make up the image (a provider's own chunk) are no pages.
    let (_, height) = super::png_dimensions(png, &Limits::default()).ok()?;
    let sum: u64 = heights.iter().map(|&h| u64::from(h)).sum();
    (heights.len() <= MAX_PAGES && heights.iter().all(|&h| h > 0) && sum == u64::from(height))
        .then_some(heights)
}

/// The tallest page of two rendered PDFs: what a PDF monitor's threshold is a share of (with the
/// canvas width); `None` unless both are rendered PDFs.
pub fn tallest_page(baseline_png: &[u8], current_png: &[u8]) -> Option<u32> {
    let (a, b) = (page_heights(baseline_png)?, page_heights(current_png)?);
    a.into_iter().chain(b).max()
}

/// The pages of two rendered PDFs and the pages the changed `regions` touch, when both PNGs are
/// rendered PDFs.
pub fn compare_pages(baseline_png: &[u8], current_png: &[u8], regions: &[Region]) -> Option<PageReport> {
    let before = page_heights(baseline_png)?;
    let after = page_heights(current_png)?;
    let mut changed: Vec<u32> =
        regions.iter().flat_map(|r| pages_of(r, &after).into_iter().chain(pages_of(r, &before))).collect();
    // A page only one side has is changed, whatever the regions (a page added or removed at the
    // end may shift nothing else).
    changed.extend((before.len().min(after.len()) + 1..=before.len().max(after.len())).map(|p| p as u32));
    changed.sort_unstable();
    changed.dedup();
    Some(PageReport { before: before.len() as u32, after: after.len() as u32, changed })
}

/// The pages (1-based) of a stack of pages `heights` tall that `region` overlaps.
fn pages_of(region: &Region, heights: &[u32]) -> Vec<u32> {
    let (top, bottom) = (u64::from(region.y), u64::from(region.y) + u64::from(region.height));
    let mut start = 0u64;
    let mut pages = Vec::new();
    for (i, &h) in heights.iter().enumerate() {
        let end = start + u64::from(h);
        if top < end && bottom > start {
            pages.push(i as u32 + 1);
        }
        start = end;
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PDF of `pages` pages (`w` × `h` points), each filled with one grey, page `i`'s
    /// grey from `greys[i]`; the xref offsets computed, so any reader takes it.
    fn pdf(w: u32, h: u32, greys: &[f32]) -> Vec<u8> {
        let n = greys.len();
        let mut objects: Vec<String> = Vec::new();
        let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 3 + 2 * i)).collect();
        objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
        objects.push(format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")));
        for (i, g) in greys.iter().enumerate() {
            objects.push(format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w} {h}] /Contents {} 0 R >>",
                4 + 2 * i
            ));
            let content = format!("{g} g 10 10 {} {} re f", w / 2, h / 2);
            objects.push(format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()));
        }
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
                .as_bytes(),
        );
        out
    }

    #[test]
    fn pages_are_rendered_and_stacked_with_their_heights() {
        let rendered = rasterise(&pdf(100, 200, &[0.0, 0.5]), &Limits::default()).unwrap();
        assert_eq!(rendered.page_heights, vec![300, 300]);
        assert_eq!((rendered.image.width(), rendered.image.height()), (150, 600));
        let px = |x: u32, y: u32| {
            let i = ((y * 150 + x) * 4) as usize;
            rendered.image.data()[i..i + 4].to_vec()
        };
        // PDF y grows upwards: the filled square is at the bottom left of each page.
        assert_eq!(px(5, 5), vec![255, 255, 255, 255], "the page is white");
        assert_eq!(px(40, 250), vec![0, 0, 0, 255], "page 1's black square");
        let grey = px(40, 550);
        assert!(grey[0] > 100 && grey[0] < 200 && grey[3] == 255, "page 2's grey square: {grey:?}");
    }

    #[test]
    fn the_png_carries_the_pages_and_a_comparison_names_the_changed_page() {
        let limits = Limits::default();
        let before = encode(&rasterise(&pdf(100, 200, &[0.0, 0.5]), &limits).unwrap()).unwrap();
        let after = encode(&rasterise(&pdf(100, 200, &[0.0, 0.2]), &limits).unwrap()).unwrap();
        assert_eq!(page_heights(&before), Some(vec![300, 300]));
        let (report, _) =
            crate::diff::compare_png(&before, &after, &crate::diff::DiffOptions::default(), &limits, false)
                .unwrap();
        assert!(report.diff_pixels > 0);
        let pages = compare_pages(&before, &after, &report.regions).unwrap();
        assert_eq!(pages, PageReport { before: 2, after: 2, changed: vec![2] });
        assert_eq!(tallest_page(&before, &after), Some(300));
        // A chunk whose pages do not make up the image is ignored.
        let img = Image::new(1, 4, vec![255; 16]).unwrap();
        let forged = super::super::text::with_chunk(
            &crate::diff::encode_png(&img).unwrap(),
            b"tEXt",
            b"vigil:pages\x001,2",
        )
        .unwrap();
        assert_eq!(page_heights(&forged), None);
        let fits = super::super::text::with_chunk(
            &crate::diff::encode_png(&img).unwrap(),
            b"tEXt",
            b"vigil:pages\x001,3",
        )
        .unwrap();
        assert_eq!(page_heights(&fits), Some(vec![1, 3]));

        let longer = encode(&rasterise(&pdf(100, 200, &[0.0, 0.5, 0.5]), &limits).unwrap()).unwrap();
        let (report, _) =
            crate::diff::compare_png(&before, &longer, &crate::diff::DiffOptions::default(), &limits, false)
                .unwrap();
        assert!(report.size_changed);
        let pages = compare_pages(&before, &longer, &report.regions).unwrap();
        assert_eq!(pages, PageReport { before: 2, after: 3, changed: vec![3] });
    }

    #[test]
    fn a_png_that_is_no_rendered_pdf_has_no_pages() {
        let img = Image::new(2, 2, vec![255; 16]).unwrap();
        let png = crate::diff::encode_png(&img).unwrap();
        assert_eq!(page_heights(&png), None);
        assert_eq!(compare_pages(&png, &png, &[]), None);
    }

    #[test]
    fn hostile_pdfs_are_refused_with_a_reason() {
        let limits = Limits::default();
        let e = rasterise(b"%PDF-1.4\nnothing here", &limits).unwrap_err();
        assert_eq!(e.code(), "invalid_pdf", "{e}");
        let e = rasterise(&pdf(100, 200, &vec![0.0; MAX_PAGES + 1]), &limits).unwrap_err();
        assert_eq!(e.code(), "too_many_pages", "{e}");
        assert!(e.to_string().contains("51 pages"), "{e}");
        // pages whose stack would be over the pixel budget: refused before rendering
        let small = Limits { max_pixels: 150 * 500, ..limits };
        let e = rasterise(&pdf(100, 200, &[0.0, 0.5]), &small).unwrap_err();
        assert_eq!(e.code(), "image_too_large", "{e}");
    }

    #[test]
    fn the_report_says_which_pages_changed_and_the_count() {
        let said =
            |before, after, changed: &[u32]| PageReport { before, after, changed: changed.to_vec() }.said();
        assert_eq!(said(3, 3, &[2]), "page 2 of 3 changed");
        assert_eq!(said(3, 3, &[1, 3]), "pages 1, 3 of 3 changed");
        assert_eq!(said(2, 4, &[3, 4]), "pages 3, 4 changed; 4 pages, 2 before");
        assert_eq!(said(3, 2, &[3]), "page 3 changed; 2 pages, 3 before");
        let many: Vec<u32> = (1..=12).collect();
        assert_eq!(said(12, 12, &many), "pages 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, … (12 pages) of 12 changed");
    }

    #[test]
    fn regions_map_to_the_pages_they_overlap() {
        let r = |y, height| Region { x: 0, y, width: 1, height };
        assert_eq!(pages_of(&r(0, 1), &[10, 10]), vec![1]);
        assert_eq!(pages_of(&r(9, 2), &[10, 10]), vec![1, 2]);
        assert_eq!(pages_of(&r(10, 1), &[10, 10]), vec![2]);
        assert_eq!(pages_of(&r(25, 1), &[10, 10]), Vec::<u32>::new());
    }
}

//! Diff engine benchmarks: decode, kernel (vs a plain loop counting differing u32 pixels),
//! encode, end to end, and the identical-bytes path.
//!
//! Inputs are screenshot-like pages drawn here (flat backgrounds, cards, rows of "text"), PNG-
//! encoded with default compression like a browser's. Set `VDIFF_BENCH_DIR` to a folder with
//! `a-1920.png`/`b-1920.png` and `a-1280x8000.png`/`b-1280x8000.png` to use real screenshots.

// The page drawing reads best as plain coordinate comparisons.
#![allow(clippy::manual_range_contains, clippy::manual_is_multiple_of)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil::diff::{
    DiffOptions, Image, Limits, compare_png, compare_rgba, decode_png, encode_png, render_diff,
};

/// A page of `w`x`h`; `variant` changes a heading, a price and a line of text.
fn page(w: u32, h: u32, variant: bool) -> Image {
    let mut d = vec![0u8; (w * h * 4) as usize];
    let mut seed = 7u32;
    let mut rnd = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        seed >> 16
    };
    let glyph_noise: Vec<u32> = (0..4096).map(|_| rnd()).collect();
    for y in 0..h {
        for x in 0..w {
            let k = ((y * w + x) * 4) as usize;
            let mut c = [250u8, 250, 250, 255];
            if y < 48 {
                c = [43, 58, 85, 255];
            } else {
                let (card, cy) = ((y - 48) / 260, (y - 48) % 260);
                let in_card = x >= 40 && x < w - 40 && cy >= 20 && cy < 240;
                if in_card {
                    c = [255, 255, 255, 255];
                    // text rows: 14 px lines with glyph-like ink
                    let line = (cy - 40) / 18;
                    let ly = (cy - 40) % 18;
                    if cy >= 40 && cy < 150 && ly < 12 && x >= 64 && x < w - 64 {
                        let gx = (x - 64) / 9;
                        let mut g = glyph_noise[((card * 7 + line * 131 + gx) % 4096) as usize];
                        if variant && card == 1 && line == 2 && gx % 40 < 6 {
                            g = g.rotate_left(5);
                        }
                        let bit = ((x - 64) % 9) * 12 + ly;
                        if g % 5 != 0 && (g >> (bit % 16)) & 1 == 1 && (x - 64) % 9 < 7 {
                            let ink = 34 + ((g >> 3) % 150) as u8;
                            c = [ink, ink, ink, 255];
                        }
                    }
                    if cy >= 170 && cy < 210 && x >= 64 && x < 364 {
                        let t = (x - 64) as f32 / 300.0;
                        c = [
                            (249.0 - 110.0 * t) as u8,
                            (115.0 - 23.0 * t) as u8,
                            (22.0 + 224.0 * t) as u8,
                            255,
                        ];
                    }
                    if cy >= 212 && cy < 236 && x >= 64 && x < 180 {
                        c = [59, 130, 246, 255];
                        if variant && card == 0 && x > 150 && cy > 216 && cy < 230 {
                            c = [255, 255, 255, 255];
                        }
                    }
                }
            }
            if variant && y > 14 && y < 34 && x > 200 && x < 260 && (x + y) % 3 == 0 {
                c = [255, 255, 255, 255];
            }
            d[k..k + 4].copy_from_slice(&c);
        }
    }
    Image::new(w, h, d).unwrap()
}

fn browser_png(img: &Image) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, img.width(), img.height());
    e.set_color(png::ColorType::Rgb);
    let mut w = e.write_header().unwrap();
    let rgb: Vec<u8> = img.data().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    w.write_image_data(&rgb).unwrap();
    w.finish().unwrap();
    out
}

fn pair(w: u32, h: u32, name: &str) -> (Vec<u8>, Vec<u8>) {
    if let Ok(dir) = std::env::var("VDIFF_BENCH_DIR") {
        let read = |p: &str| std::fs::read(format!("{dir}/{p}-{name}.png")).unwrap();
        return (read("a"), read("b"));
    }
    (browser_png(&page(w, h, false)), browser_png(&page(w, h, true)))
}

fn plain_u32_count(a: &[u8], b: &[u8]) -> usize {
    a.chunks_exact(4).zip(b.chunks_exact(4)).filter(|(x, y)| x != y).count()
}

fn benches(c: &mut Criterion) {
    let lim = Limits::default();
    let opts = DiffOptions::default();
    for (w, h, name) in [(1920, 1080, "1920"), (1280, 8000, "1280x8000")] {
        let (pa, pb) = pair(w, h, name);
        let (ia, ib) = (decode_png(&pa, &lim).unwrap(), decode_png(&pb, &lim).unwrap());
        let (report, diff) = render_diff(&ia, &ib, &opts);
        eprintln!(
            "{name}: {} KB + {} KB PNG, {} diff pixels",
            pa.len() / 1024,
            pb.len() / 1024,
            report.diff_pixels
        );
        let mut g = c.benchmark_group(name);
        g.sample_size(if h > 2000 { 10 } else { 30 });
        g.bench_function("decode_one", |bn| bn.iter(|| decode_png(black_box(&pa), &lim).unwrap()));
        g.bench_function("plain_u32_count", |bn| {
            bn.iter(|| plain_u32_count(black_box(ia.data()), black_box(ib.data())))
        });
        g.bench_function("kernel_count_only", |bn| {
            bn.iter(|| compare_rgba(black_box(&ia), &ib, &opts, false))
        });
        g.bench_function("kernel_with_diff_image", |bn| {
            bn.iter(|| compare_rgba(black_box(&ia), &ib, &opts, true))
        });
        g.bench_function("encode_diff", |bn| bn.iter(|| encode_png(black_box(&diff)).unwrap()));
        g.bench_function("end_to_end", |bn| {
            bn.iter(|| compare_png(black_box(&pa), &pb, &opts, &lim, true).unwrap())
        });
        g.bench_function("identical_bytes", |bn| {
            bn.iter(|| compare_png(black_box(&pa), &pa, &opts, &lim, true).unwrap())
        });
        let ia2 = ia.clone();
        g.bench_function("identical_pixels_count_only", |bn| {
            bn.iter(|| compare_rgba(black_box(&ia), &ia2, &opts, false))
        });
        g.finish();
    }
}

criterion_group!(diff, benches);
criterion_main!(diff);

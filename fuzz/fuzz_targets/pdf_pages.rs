//! PDF rendering on arbitrary bytes (a capture provider's "PDF"), with small limits: an error,
//! never unbounded memory; and the pages chunk of arbitrary PNGs read without a panic.
//! (vigil also catches a renderer panic as `invalid_pdf`; under libFuzzer a panic is a crash,
//! so one found here is a renderer bug to report upstream and a case for the unit tests.)
#![no_main]

use vigil::diff::{Limits, Region, pdf};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_width: 2048,
        max_height: 4096,
        max_pixels: 1 << 22,
        max_input_bytes: 1 << 20,
        max_metadata_bytes: 1 << 16,
    };
    if let Ok(rendered) = pdf::rasterise(data, &limits) {
        assert_eq!(rendered.image.height(), rendered.page_heights.iter().sum::<u32>());
        let png = pdf::encode(&rendered).expect("a rendered PDF encodes");
        assert_eq!(pdf::page_heights(&png).as_deref(), Some(&rendered.page_heights[..]));
    }
    let region = Region { x: 0, y: u32::MAX - 1, width: 1, height: u32::MAX };
    let _ = pdf::compare_pages(data, data, &[region]);
});

//! PNG decode + diff on arbitrary bytes: a crafted PNG must give an error, never a panic, nor
//! memory beyond the limits (kept small here so the fuzzer explores instead of allocating).
#![no_main]

use vigil::diff::{DiffOptions, Limits, compare_png};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first 4 bytes (little endian) say where the first PNG ends.
    let Some((len, rest)) = data.split_first_chunk::<4>() else { return };
    let at = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (a, b) = rest.split_at(at);
    let limits = Limits {
        max_width: 2048,
        max_height: 2048,
        max_pixels: 1 << 20,
        max_input_bytes: 1 << 20,
        max_metadata_bytes: 1 << 16,
    };
    let _ = compare_png(a, b, &DiffOptions::default(), &limits, true);
    // The same image against itself is always identical (the fast path must agree).
    if let Ok((report, _)) = compare_png(a, a, &DiffOptions::default(), &limits, false) {
        assert_eq!(report.diff_pixels, 0);
    }
});

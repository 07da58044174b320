//! Per-pixel colour metrics of pixelmatch 8 (OKLab/HyAB) and pixelmatch 7 (YIQ), plus the
//! brightness deltas each version's anti-aliasing detector uses.
//!
//! Every expression is written in the same order as the JavaScript so that the `f64` results are
//! bit-identical; do not "simplify" the arithmetic.

use std::sync::OnceLock;

use super::jsmath::{SRGB_TO_LINEAR_BITS, cbrt, to_int32};

/// Lookup tables pixelmatch 8 builds at module load.
struct Tables {
    /// sRGB byte → linear, with a 257th entry equal to the 256th for interpolation.
    lin: [f64; 257],
    /// `lms[k][v]`: contribution of channel value `v` to L, M or S (k = lr, mr, sr, lg, mg, sg, lb, mb, sb).
    lms: [[f64; 256]; 9],
    /// `cbrt(i / 4096)` for i in 0..=4097.
    cbrt: Vec<f64>,
}

const CBRT_N: usize = 4096;
const CBRT_EXACT: i32 = 8;
const TOE_K1: f64 = 0.206;
const TOE_K2: f64 = 0.03;
const TOE_K3: f64 = (1.0 + TOE_K1) / (1.0 + TOE_K2);
const CACHE_BITS: u32 = 12;
const CACHE_SIZE: usize = 1 << CACHE_BITS;

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut lin = [0.0; 257];
        for (i, bits) in SRGB_TO_LINEAR_BITS.iter().enumerate() {
            lin[i] = f64::from_bits(*bits);
        }
        lin[256] = lin[255];
        let mut lms = [[0.0; 256]; 9];
        for i in 0..256 {
            let lr = lin[i];
            lms[0][i] = 0.412_221_470_8 * lr;
            lms[1][i] = 0.211_903_498_2 * lr;
            lms[2][i] = 0.088_302_461_9 * lr;
            lms[3][i] = 0.536_332_536_3 * lr;
            lms[4][i] = 0.680_699_545_1 * lr;
            lms[5][i] = 0.281_718_837_6 * lr;
            lms[6][i] = 0.051_445_992_9 * lr;
            lms[7][i] = 0.107_396_956_6 * lr;
            lms[8][i] = 0.629_978_700_5 * lr;
        }
        let cbrt_table = (0..=CBRT_N + 1).map(|i| cbrt(i as f64 / CBRT_N as f64)).collect();
        Tables { lin, lms, cbrt: cbrt_table }
    })
}

/// pixelmatch 8's colour metric state: the shared tables plus the direct-mapped cache of
/// opaque RGB → (l, m, s, Lr). The cache only memoises, so results do not depend on it.
pub(crate) struct Oklab {
    t: &'static Tables,
    max_delta: f64,
    keys: Vec<u32>,
    values: Vec<[f64; 4]>,
}

impl Oklab {
    pub(crate) fn new(threshold: f64) -> Self {
        Oklab {
            t: tables(),
            max_delta: threshold,
            keys: vec![0; CACHE_SIZE],
            values: vec![[0.0; 4]; CACHE_SIZE],
        }
    }

    #[inline]
    fn lin_lut(&self, x: f64) -> f64 {
        let i = to_int32(x) as usize;
        let lin = &self.t.lin;
        lin[i] + (lin[i + 1] - lin[i]) * (x - i as f64)
    }

    #[inline]
    fn cbrt_lut(&self, x: f64) -> f64 {
        let t = x * CBRT_N as f64;
        let i = to_int32(t);
        if i < CBRT_EXACT {
            return cbrt(x);
        }
        let i = i as usize;
        let c = &self.t.cbrt;
        c[i] + (c[i + 1] - c[i]) * (t - i as f64)
    }

    #[inline]
    fn opaque_lms(&mut self, r: u8, g: u8, b: u8) -> [f64; 4] {
        let key = (u32::from(r) << 16) | (u32::from(g) << 8) | u32::from(b);
        let slot = (key.wrapping_mul(0x9e37_79b1) >> (32 - CACHE_BITS)) as usize;
        let stored = key + 1;
        if self.keys[slot] == stored {
            return self.values[slot];
        }
        let m = &self.t.lms;
        let (r, g, b) = (r as usize, g as usize, b as usize);
        let l = self.cbrt_lut(m[0][r] + m[3][g] + m[6][b]);
        let mm = self.cbrt_lut(m[1][r] + m[4][g] + m[7][b]);
        let s = self.cbrt_lut(m[2][r] + m[5][g] + m[8][b]);
        let v = [l, mm, s, lightness(l, mm, s)];
        self.keys[slot] = stored;
        self.values[slot] = v;
        v
    }

    /// `colorDelta` of pixelmatch 8: 0 when the HyAB distance is within the threshold, otherwise
    /// ±1 (−1 when the second pixel is darker). `k` is the byte offset of the pixel.
    #[inline]
    pub(crate) fn delta(&mut self, p1: [u8; 4], p2: [u8; 4], k: usize) -> i32 {
        let [r1, g1, b1, a1] = p1;
        let [r2, g2, b2, a2] = p2;
        if a1 == 255 && a2 == 255 {
            let [l1, m1, s1, lr1] = self.opaque_lms(r1, g1, b1);
            let [l2, m2, s2, lr2] = self.opaque_lms(r2, g2, b2);
            return hyab_delta(lr1 - lr2, l1 - l2, m1 - m2, s1 - s2, self.max_delta);
        }
        self.delta_transparent(p1, p2, k)
    }

    fn delta_transparent(&self, p1: [u8; 4], p2: [u8; 4], k: usize) -> i32 {
        // Checkerboard background: top 3 bits of a Fibonacci hash of the pixel index (`k >> 2`
        // on the int32 of the byte offset, as in JS).
        let h = ((k as u32 as i32) >> 2).wrapping_mul(0x9e37_79b1_u32 as i32) as u32;
        let rb = f64::from(48 + 159 * (h >> 31));
        let gb = f64::from(48 + 159 * ((h >> 30) & 1));
        let bb = f64::from(48 + 159 * ((h >> 29) & 1));
        let blend = |c: u8, a: u8, bg: f64| {
            let (c, a) = (f64::from(c), f64::from(a));
            (c * a + bg * (255.0 - a)) / 255.0
        };
        let lr1 = self.lin_lut(blend(p1[0], p1[3], rb));
        let lg1 = self.lin_lut(blend(p1[1], p1[3], gb));
        let lb1 = self.lin_lut(blend(p1[2], p1[3], bb));
        let lr2 = self.lin_lut(blend(p2[0], p2[3], rb));
        let lg2 = self.lin_lut(blend(p2[1], p2[3], gb));
        let lb2 = self.lin_lut(blend(p2[2], p2[3], bb));

        let l1 = self.cbrt_lut(0.412_221_470_8 * lr1 + 0.536_332_536_3 * lg1 + 0.051_445_992_9 * lb1);
        let m1 = self.cbrt_lut(0.211_903_498_2 * lr1 + 0.680_699_545_1 * lg1 + 0.107_396_956_6 * lb1);
        let s1 = self.cbrt_lut(0.088_302_461_9 * lr1 + 0.281_718_837_6 * lg1 + 0.629_978_700_5 * lb1);
        let l2 = self.cbrt_lut(0.412_221_470_8 * lr2 + 0.536_332_536_3 * lg2 + 0.051_445_992_9 * lb2);
        let m2 = self.cbrt_lut(0.211_903_498_2 * lr2 + 0.680_699_545_1 * lg2 + 0.107_396_956_6 * lb2);
        let s2 = self.cbrt_lut(0.088_302_461_9 * lr2 + 0.281_718_837_6 * lg2 + 0.629_978_700_5 * lb2);
        let lr_1 = lightness(l1, m1, s1);
        let lr_2 = lightness(l2, m2, s2);
        hyab_delta(lr_1 - lr_2, l1 - l2, m1 - m2, s1 - s2, self.max_delta)
    }
}

#[inline]
fn hyab_delta(d_lr: f64, dl: f64, dm: f64, ds: f64, max_delta: f64) -> i32 {
    let rest = max_delta - d_lr.abs();
    if rest >= 0.0 {
        let da = 1.977_998_495_1 * dl - 2.428_592_205_0 * dm + 0.450_593_709_9 * ds;
        let db = 0.025_904_037_1 * dl + 0.782_771_766_2 * dm - 0.808_675_766_0 * ds;
        if da * da + db * db <= rest * rest {
            return 0;
        }
    }
    if d_lr > 0.0 { -1 } else { 1 }
}

/// Toe-corrected OKLab lightness from cube-rooted LMS.
#[inline]
fn lightness(l: f64, m: f64, s: f64) -> f64 {
    let big_l = 0.210_454_255_3 * l + 0.793_617_785_0 * m - 0.004_072_046_8 * s;
    let x = TOE_K3 * big_l - TOE_K1;
    0.5 * (x + (x * x + 4.0 * TOE_K2 * TOE_K3 * big_l).sqrt())
}

/// pixelmatch 8's `brightnessDelta` (AA detector): Rec.601 luma, semi-transparent pixels over
/// white, alpha delta as tie-breaker.
#[inline]
pub(crate) fn brightness_v8(c: [u8; 4], n: [u8; 4]) -> f64 {
    let [r1, g1, b1, a1] = c.map(f64::from);
    let [r2, g2, b2, a2] = n.map(f64::from);
    let mut dr = r1 - r2;
    let mut dg = g1 - g2;
    let mut db = b1 - b2;
    let da = a1 - a2;
    if dr == 0.0 && dg == 0.0 && db == 0.0 && da == 0.0 {
        return 0.0;
    }
    if c[3] < 255 || n[3] < 255 {
        dr = (r1 * a1 - r2 * a2 - 255.0 * da) / 255.0;
        dg = (g1 * a1 - g2 * a2 - 255.0 * da) / 255.0;
        db = (b1 * a1 - b2 * a2 - 255.0 * da) / 255.0;
        let d = dr * 0.298_895_31 + dg * 0.586_622_47 + db * 0.114_482_23;
        return if d == 0.0 && da != 0.0 { da / 2.0 } else { d };
    }
    dr * 0.298_895_31 + dg * 0.586_622_47 + db * 0.114_482_23
}

/// pixelmatch 7's checkerboard background for byte offset `k` (`k % 2` is always 0 for a pixel
/// offset, so red is always 48; kept as written).
#[inline]
fn checker_v7(k: usize) -> (f64, f64, f64) {
    let kf = k as f64;
    let rb = 48 + 159 * (k % 2) as i32;
    let gb = 48 + 159 * (to_int32(kf / 1.618_033_988_749_895) % 2);
    let bb = 48 + 159 * (to_int32(kf / 2.618_033_988_749_895) % 2);
    (f64::from(rb), f64::from(gb), f64::from(bb))
}

/// pixelmatch 7's `brightnessDelta`: `k` is the byte offset of the *centre* pixel.
#[inline]
pub(crate) fn brightness_v7(c: [u8; 4], n: [u8; 4], k: usize) -> f64 {
    let [r1, g1, b1, a1] = c.map(f64::from);
    let [r2, g2, b2, a2] = n.map(f64::from);
    let mut dr = r1 - r2;
    let mut dg = g1 - g2;
    let mut db = b1 - b2;
    let da = a1 - a2;
    if dr == 0.0 && dg == 0.0 && db == 0.0 && da == 0.0 {
        return 0.0;
    }
    if c[3] < 255 || n[3] < 255 {
        let (rb, gb, bb) = checker_v7(k);
        dr = (r1 * a1 - r2 * a2 - rb * da) / 255.0;
        dg = (g1 * a1 - g2 * a2 - gb * da) / 255.0;
        db = (b1 * a1 - b2 * a2 - bb * da) / 255.0;
    }
    dr * 0.298_895_31 + dg * 0.586_622_47 + db * 0.114_482_23
}

/// pixelmatch 7's YIQ metric, already compared with the threshold: 0 when within it, otherwise
/// ±1 (−1 when the second pixel is darker).
#[inline]
pub(crate) fn yiq_delta(p1: [u8; 4], p2: [u8; 4], k: usize, max_delta: f64) -> i32 {
    let [r1, g1, b1, a1] = p1.map(f64::from);
    let [r2, g2, b2, a2] = p2.map(f64::from);
    let mut dr = r1 - r2;
    let mut dg = g1 - g2;
    let mut db = b1 - b2;
    let da = a1 - a2;
    if p1[3] < 255 || p2[3] < 255 {
        let (rb, gb, bb) = checker_v7(k);
        dr = (r1 * a1 - r2 * a2 - rb * da) / 255.0;
        dg = (g1 * a1 - g2 * a2 - gb * da) / 255.0;
        db = (b1 * a1 - b2 * a2 - bb * da) / 255.0;
    }
    let y = dr * 0.298_895_31 + dg * 0.586_622_47 + db * 0.114_482_23;
    let i = dr * 0.595_977_99 - dg * 0.274_176_10 - db * 0.321_801_89;
    let q = dr * 0.211_470_17 - dg * 0.522_617_11 + db * 0.311_146_94;
    let delta = 0.5053 * y * y + 0.299 * i * i + 0.1957 * q * q;
    let delta = if y > 0.0 { -delta } else { delta };
    if delta.abs() > max_delta { if delta < 0.0 { -1 } else { 1 } } else { 0 }
}

/// `maxDelta` of pixelmatch 7: 35215 is the largest possible YIQ distance.
pub(crate) fn yiq_max_delta(threshold: f64) -> f64 {
    35215.0 * threshold * threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oklab_black_vs_white_is_distance_one() {
        let mut ok = Oklab::new(0.999);
        assert_eq!(ok.delta([0, 0, 0, 255], [255, 255, 255, 255], 0), 1, "white is brighter: +1");
        assert_eq!(ok.delta([255, 255, 255, 255], [0, 0, 0, 255], 0), -1, "darker: -1");
        let mut ok = Oklab::new(1.001);
        assert_eq!(ok.delta([0, 0, 0, 255], [255, 255, 255, 255], 0), 0);
    }

    #[test]
    fn oklab_cache_does_not_change_results() {
        let mut cached = Oklab::new(0.05);
        let mut seen = Vec::new();
        for i in 0..2000u32 {
            let p1 = [(i * 7) as u8, (i * 13) as u8, (i * 29) as u8, 255];
            let p2 = [(i * 7 + 9) as u8, (i * 13) as u8, (i * 29 + 3) as u8, 255];
            seen.push(cached.delta(p1, p2, 0));
        }
        for (i, want) in seen.iter().enumerate() {
            let i = i as u32;
            let p1 = [(i * 7) as u8, (i * 13) as u8, (i * 29) as u8, 255];
            let p2 = [(i * 7 + 9) as u8, (i * 13) as u8, (i * 29 + 3) as u8, 255];
            assert_eq!(Oklab::new(0.05).delta(p1, p2, 0), *want);
        }
    }

    #[test]
    fn yiq_threshold_scale() {
        // black vs white: 0.5053 * 255² ≈ 32857, i.e. threshold ≈ 0.966 on the 35215 scale.
        assert_eq!(yiq_delta([0, 0, 0, 255], [255, 255, 255, 255], 0, yiq_max_delta(0.96)), 1);
        assert_eq!(yiq_delta([255, 255, 255, 255], [0, 0, 0, 255], 0, yiq_max_delta(0.96)), -1);
        assert_eq!(yiq_delta([0, 0, 0, 255], [255, 255, 255, 255], 0, yiq_max_delta(0.97)), 0);
        assert_eq!(yiq_delta([10, 10, 10, 255], [10, 10, 10, 255], 0, 0.0), 0);
    }

    #[test]
    fn brightness_v8_uses_alpha_as_tie_breaker() {
        // Fully transparent pixels of different colour composite to the same white.
        assert_eq!(brightness_v8([0, 0, 0, 0], [255, 0, 0, 0]), 0.0);
        assert_eq!(brightness_v8([0, 0, 0, 0], [0, 0, 0, 0]), 0.0);
        assert!(brightness_v8([255, 255, 255, 255], [255, 255, 255, 0]) == 127.5);
    }
}

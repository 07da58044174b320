// Regenerates tests/fixtures/diff: input PNG pairs drawn procedurally (anti-aliased shapes and
// stroke "text"), and the expected results of the reference implementation for several option
// sets: tests/fixtures/diff/expected.json plus one expected diff image per case and option set.
//
//   cd scripts/diff-fixtures && npm ci && node generate.mjs
//
// Expected values come from npm pixelmatch 8.0.0 (metric "oklab") and 7.2.0 (metric "yiq").
// pixelmatch has no masks (v7) and refuses images of different sizes, so for cases with masks or
// a size change the expectation applies vigil's documented semantics on top of pixelmatch's
// per-pixel verdicts (see applySemantics below and src/diff/mod.rs): both images on the union
// canvas padded with transparent black, pixels outside either image counted and drawn in
// diffColor, masked pixels never counted and drawn in MASK_COLOR.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import pixelmatch8 from 'pixelmatch';
import pixelmatch7 from 'pixelmatch7';

const here = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.resolve(here, '../../tests/fixtures/diff');
const MASK_COLOR = [96, 112, 136];

// ---------- deterministic randomness ----------
let seed = 20240611;
const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296; };

// ---------- a tiny anti-aliasing rasteriser (4x4 supersampling, straight-alpha src-over) ----------
const SS = 4;
function canvas(w, h, bg = [255, 255, 255, 255]) {
  const data = new Uint8Array(w * h * 4);
  for (let i = 0; i < w * h; i++) data.set(bg, i * 4);
  return { w, h, data };
}
function blend(img, x, y, [r, g, b, a], cover) {
  const k = (y * img.w + x) * 4;
  const sa = (a / 255) * cover;
  if (sa <= 0) return;
  const da = img.data[k + 3] / 255;
  const oa = sa + da * (1 - sa);
  const mix = (s, d) => Math.round((s * sa + d * da * (1 - sa)) / oa);
  img.data[k] = mix(r, img.data[k]);
  img.data[k + 1] = mix(g, img.data[k + 1]);
  img.data[k + 2] = mix(b, img.data[k + 2]);
  img.data[k + 3] = Math.round(oa * 255);
}
// fill a shape given by an inside(x, y) test over its bounding box
function fill(img, [x0, y0, x1, y1], inside, color) {
  for (let y = Math.max(0, Math.floor(y0)); y < Math.min(img.h, Math.ceil(y1)); y++) {
    for (let x = Math.max(0, Math.floor(x0)); x < Math.min(img.w, Math.ceil(x1)); x++) {
      let n = 0;
      for (let sy = 0; sy < SS; sy++) for (let sx = 0; sx < SS; sx++) {
        if (inside(x + (sx + 0.5) / SS, y + (sy + 0.5) / SS)) n++;
      }
      if (n) blend(img, x, y, color, n / (SS * SS));
    }
  }
}
const rect = (img, x, y, w, h, color) => fill(img, [x, y, x + w, y + h], () => true, color);
function roundRect(img, x, y, w, h, r, color) {
  fill(img, [x, y, x + w, y + h], (px, py) => {
    const dx = Math.max(x + r - px, 0, px - (x + w - r));
    const dy = Math.max(y + r - py, 0, py - (y + h - r));
    return dx * dx + dy * dy <= r * r;
  }, color);
}
function circle(img, cx, cy, r, color) {
  fill(img, [cx - r, cy - r, cx + r, cy + r], (px, py) => (px - cx) ** 2 + (py - cy) ** 2 <= r * r, color);
}
function capsule(img, x1, y1, x2, y2, r, color) {
  const dx = x2 - x1, dy = y2 - y1, len2 = dx * dx + dy * dy || 1;
  fill(img, [Math.min(x1, x2) - r, Math.min(y1, y2) - r, Math.max(x1, x2) + r, Math.max(y1, y2) + r], (px, py) => {
    const t = Math.max(0, Math.min(1, ((px - x1) * dx + (py - y1) * dy) / len2));
    return (px - x1 - t * dx) ** 2 + (py - y1 - t * dy) ** 2 <= r * r;
  }, color);
}
function hgradient(img, x, y, w, h, from, to) {
  for (let xx = 0; xx < w; xx++) {
    const t = xx / Math.max(1, w - 1);
    const c = from.map((v, i) => Math.round(v + (to[i] - v) * t));
    rect(img, x + xx, y, 1, h, c);
  }
}
// "text": glyphs of a 7-segment-plus-diagonals stroke font, bitmask per glyph
const SEGMENTS = [[0, 0, 1, 0], [1, 0, 1, 1], [1, 1, 1, 2], [0, 2, 1, 2], [0, 1, 0, 2], [0, 0, 0, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 2, 1, 1]];
function glyph(img, x, y, size, mask, color, weight = 0.7) {
  SEGMENTS.forEach(([ax, ay, bx, by], i) => {
    if (mask & (1 << i)) capsule(img, x + ax * size, y + ay * size, x + bx * size, y + by * size, weight, color);
  });
}
function text(img, x, y, size, masks, color, weight) {
  masks.forEach((m, i) => glyph(img, x + i * (size + 3), y, size, m, color, weight));
}

// ---------- scenes ----------
const WORDS = Array.from({ length: 6 }, () => Array.from({ length: 4 + Math.floor(rnd() * 6) }, () => 1 + Math.floor(rnd() * 511)));
function page(w, h, opt = {}) {
  const { dx = 0, dy = 0, glyphs = WORDS, button = [59, 130, 246, 255], clock = [0x7f, 0x3f, 0x6f] } = opt;
  const img = canvas(w, h, [250, 250, 250, 255]);
  rect(img, 0, 0, w, 18, [43, 58, 85, 255]);
  text(img, 6 + dx, 4 + dy, 5, [0x3f, 0x06, 0x5b, 0x4f], [255, 255, 255, 255], 0.8);
  text(img, w - 40 + dx, 4 + dy, 5, clock, [200, 220, 255, 255], 0.8); // a "clock": masked in the mask case
  roundRect(img, 6 + dx, 24 + dy, w - 12, h - 30, 5, [255, 255, 255, 255]);
  glyphs.forEach((g, i) => text(img, 12 + dx, 30 + i * 13 + dy, 4, g, [34, 34, 34, 255], 0.6 + (i % 3) * 0.15));
  circle(img, w - 30 + dx, 46 + dy, 12.3, [249, 115, 22, 255]);
  hgradient(img, 12 + dx, h - 24 + dy, 60, 8, [249, 115, 22, 255], [139, 92, 246, 255]);
  roundRect(img, w - 58 + dx, h - 26 + dy, 44, 14, 4, button);
  text(img, w - 52 + dx, h - 23 + dy, 3, [0x3f, 0x30], [255, 255, 255, 255], 0.6);
  return img;
}
function transparentScene(w, h, opt = {}) {
  const { shift = 0, fade = 1 } = opt;
  const img = canvas(w, h, [0, 0, 0, 0]);
  for (let i = 0; i < 5; i++) circle(img, 20 + i * 28 + shift, 30 + (i % 2) * 14, 14, [40 * i, 200 - 30 * i, 160, Math.round((60 + 40 * i) * fade)]);
  rect(img, 10, 62, w - 20, 12, [0, 0, 0, Math.round(128 * fade)]);
  for (let x = 0; x < w; x++) rect(img, x, 80, 1, 10, [255, 0, 0, Math.round((x / w) * 255)]);
  text(img, 12, 94, 5, [0x7f, 0x3f, 0x06, 0x5b], [20, 20, 20, Math.round(200 * fade)], 0.9);
  return img;
}
function aaScene(w, h, offset) {
  const img = canvas(w, h);
  for (let i = 0; i < 4; i++) circle(img, 22 + i * 38 + offset, 30 + offset, 14 + i * 0.5, [20, 20, 20, 255]);
  capsule(img, 10, 70 + offset, w - 10, 90 + offset, 2.2, [0, 60, 180, 255]);
  capsule(img, 10, 100, w - 10, 100 + offset * 2, 1.1, [30, 30, 30, 255]);
  return img;
}
// the same pixels on a larger canvas, the new area filled with `bg` (a page that grew)
function extend(img, w, h, bg) {
  const out = canvas(w, h, bg);
  for (let y = 0; y < img.h; y++) out.data.set(img.data.subarray(y * img.w * 4, (y + 1) * img.w * 4), y * w * 4);
  return out;
}
function noise(w, h) {
  const img = canvas(w, h);
  for (let i = 0; i < img.data.length; i++) img.data[i] = i % 4 === 3 ? 255 : Math.floor(rnd() * 256);
  return img;
}

// colour pair whose OKLab/HyAB distance is just within / just over the default threshold
function thresholdPair() {
  const base = [59, 130, 246, 255];
  const one = (c) => pixelmatch8(new Uint8Array(base), new Uint8Array(c), null, 1, 1, { threshold: 0.1 });
  let k = 1;
  while (one([base[0] + k, base[1] + k, base[2], 255]) === 0) k++;
  return { below: [base[0] + k - 1, base[1] + k - 1, base[2], 255], above: [base[0] + k, base[1] + k, base[2], 255] };
}

const W = 160, H = 120;
const thr = thresholdPair();
const changedGlyphs = WORDS.map((w, i) => (i === 2 ? w.map((g, j) => (j === 1 ? g ^ 0x18 : g)) : w));
const CASES = [
  { name: 'identical', a: page(W, H), b: page(W, H) },
  { name: 'text_change', a: page(W, H), b: page(W, H, { glyphs: changedGlyphs }) },
  { name: 'shift_1px', a: page(W, H), b: page(W, H, { dx: 1 }) },
  { name: 'shift_2px_down', a: page(W, H), b: page(W, H, { dy: 2 }) },
  { name: 'color_below_threshold', a: page(W, H), b: page(W, H, { button: thr.below }) },
  { name: 'color_above_threshold', a: page(W, H), b: page(W, H, { button: thr.above }) },
  { name: 'semi_transparent', a: transparentScene(W, H), b: transparentScene(W, H, { shift: 1, fade: 0.9 }) },
  { name: 'antialiased_edges', a: aaScene(W, H, 0), b: aaScene(W, H, 0.4) },
  { name: 'fully_different', a: page(W, H), b: noise(W, H) },
  { name: 'size_taller', a: page(W, H), b: extend(page(W, H), W, H + 4, [250, 250, 250, 255]) },
  { name: 'size_wider_shorter', a: page(W, H), b: page(W + 10, H - 8) },
  {
    name: 'mask', a: page(W, H), b: page(W, H, { clock: [0x06, 0x5b, 0x4f], glyphs: changedGlyphs }),
    masks: [{ x: W - 42, y: 0, width: 42, height: 18 }],
  },
];

// Option sets, in the Rust DiffOptions shape (snake_case) plus the pixelmatch call they mean.
const OPTION_SETS = {
  default: { metric: 'oklab' },
  threshold_0: { metric: 'oklab', threshold: 0 },
  include_aa: { metric: 'oklab', include_aa: true },
  alpha_0_diff_mask: { metric: 'oklab', alpha: 0, diff_mask: true },
  custom_colors: { metric: 'oklab', alpha: 0.3, aa_color: [0, 128, 255], diff_color: [200, 0, 200], diff_color_alt: [0, 160, 0] },
  yiq: { metric: 'yiq' },
  yiq_threshold_0_include_aa: { metric: 'yiq', threshold: 0, include_aa: true },
};
function pmOptions(o) {
  const p = {};
  if ('threshold' in o) p.threshold = o.threshold;
  if ('include_aa' in o) p.includeAA = o.include_aa;
  if ('alpha' in o) p.alpha = o.alpha;
  if ('aa_color' in o) p.aaColor = o.aa_color;
  if ('diff_color' in o) p.diffColor = o.diff_color;
  if ('diff_color_alt' in o) p.diffColorAlt = o.diff_color_alt;
  if ('diff_mask' in o) p.diffMask = o.diff_mask;
  return p;
}

function pad(img, w, h) {
  const out = canvas(w, h, [0, 0, 0, 0]);
  for (let y = 0; y < img.h; y++) out.data.set(img.data.subarray(y * img.w * 4, (y + 1) * img.w * 4), y * w * 4);
  return out;
}

// pixelmatch on the union canvas, then vigil's rules for masked and outside pixels. A second
// pixelmatch run with marker colours and alpha 0 tells which pixels pixelmatch counted.
function applySemantics(a, b, o, masks) {
  const pm = o.metric === 'yiq' ? pixelmatch7 : pixelmatch8;
  const w = Math.max(a.w, b.w), h = Math.max(a.h, b.h);
  const pa = pad(a, w, h), pb = pad(b, w, h);
  const opts = pmOptions(o);
  const out = new Uint8Array(w * h * 4);
  const raw = pm(pa.data, pb.data, out, w, h, opts);
  const marks = new Uint8Array(w * h * 4);
  pm(pa.data, pb.data, marks, w, h, { ...opts, alpha: 0, diffMask: false, diffColor: [1, 2, 3], diffColorAlt: [4, 5, 6], aaColor: [7, 8, 9] });
  const diffColor = o.diff_color ?? [255, 0, 0];
  const insideW = Math.min(a.w, b.w), insideH = Math.min(a.h, b.h);
  let count = 0;
  let special = false;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = y * w + x, k = i * 4;
    const masked = masks.some((m) => x >= m.x && x < m.x + m.width && y >= m.y && y < m.y + m.height);
    const outside = x >= insideW || y >= insideH;
    if (masked) { out.set([...MASK_COLOR, 255], k); special = true; continue; }
    if (outside) { out.set([...diffColor, 255], k); count++; special = true; continue; }
    const m = marks[k] * 65536 + marks[k + 1] * 256 + marks[k + 2];
    if (m === 0x010203 || m === 0x040506) count++;
  }
  if (!special && count !== raw) throw new Error(`marker pass disagrees with pixelmatch: ${count} vs ${raw}`);
  if (masks.length && a.w === b.w && a.h === b.h && o.metric === 'oklab') {
    // pixelmatch 8's ignoreMask has the same semantics for the count: cross-check.
    const ignore = new Uint8Array(w * h);
    for (const m of masks) for (let y = m.y; y < m.y + m.height; y++) ignore.fill(1, y * w + m.x, y * w + m.x + m.width);
    const viaIgnore = pixelmatch8(pa.data, pb.data, null, w, h, { ...opts, ignoreMask: ignore });
    if (viaIgnore !== count) throw new Error(`ignoreMask disagrees: ${viaIgnore} vs ${count}`);
  }
  return { count, out, w, h, raw };
}

function writePng(file, { w, h, data }) {
  const png = new PNG({ width: w, height: h });
  png.data = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(path.join(OUT, file), PNG.sync.write(png, { colorType: 6 }));
}

fs.mkdirSync(OUT, { recursive: true });
for (const f of fs.readdirSync(OUT)) if (f.endsWith('.png') || f === 'expected.json') fs.unlinkSync(path.join(OUT, f));

const expected = {
  generator: 'scripts/diff-fixtures/generate.mjs',
  reference: { oklab: 'pixelmatch@8.0.0', yiq: 'pixelmatch@7.2.0' },
  mask_color: MASK_COLOR,
  note: 'Results marked "vigil_semantics" are not what pixelmatch returns on its own (it has no masks and refuses different sizes): they apply vigil\'s documented rules for masked and out-of-bounds pixels to pixelmatch\'s verdicts on the union canvas.',
  option_sets: OPTION_SETS,
  cases: {},
};
for (const c of CASES) {
  const masks = c.masks ?? [];
  const sized = c.a.w !== c.b.w || c.a.h !== c.b.h;
  writePng(`${c.name}.a.png`, c.a);
  writePng(`${c.name}.b.png`, c.b);
  const entry = {
    a: `${c.name}.a.png`,
    b: `${c.name}.b.png`,
    masks,
    source: sized || masks.length ? 'vigil_semantics' : 'pixelmatch',
    results: {},
  };
  for (const [set, o] of Object.entries(OPTION_SETS)) {
    const r = applySemantics(c.a, c.b, o, masks);
    const file = `${c.name}.${set}.diff.png`;
    writePng(file, { w: r.w, h: r.h, data: r.out });
    entry.results[set] = { diff_pixels: r.count, diff_image: file };
    if (entry.source !== 'pixelmatch') entry.results[set].pixelmatch_on_padded_canvas = r.raw;
  }
  expected.cases[c.name] = entry;
  console.log(c.name.padEnd(24), Object.entries(entry.results).map(([k, v]) => `${k}=${v.diff_pixels}`).join(' '));
}
fs.writeFileSync(path.join(OUT, 'expected.json'), JSON.stringify(expected, null, 2) + '\n');

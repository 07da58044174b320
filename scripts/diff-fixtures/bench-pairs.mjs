// node bench-pairs.mjs OUT_DIR
// Writes screenshot-like PNG pairs for scripts/bench-diff.sh: for each size (1280x800,
// 1920x1080, 1280x8000) `<size>.a.png`, `<size>.changed.png` (a heading, a price and a line of
// text differ), `<size>.same.png` (byte-identical copy of a) and `<size>.different.png`
// (another page entirely). Flat backgrounds, cards, rows of glyph-like ink, gradients.
import fs from 'node:fs';
import path from 'node:path';
import { PNG } from 'pngjs';

const out = process.argv[2] || 'bench-pairs';
fs.mkdirSync(out, { recursive: true });

function page(w, h, { variant = false, seedBase = 7, dark = false } = {}) {
  const png = new PNG({ width: w, height: h, colorType: 2 });
  const d = png.data;
  let seed = seedBase;
  const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed >>> 16; };
  const noise = Array.from({ length: 4096 }, rnd);
  const bg = dark ? [24, 26, 32] : [250, 250, 250];
  const cardBg = dark ? [40, 44, 52] : [255, 255, 255];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let c = bg;
      if (y < 48) c = [43, 58, 85];
      else {
        const card = Math.floor((y - 48) / 260), cy = (y - 48) % 260;
        if (x >= 40 && x < w - 40 && cy >= 20 && cy < 240) {
          c = cardBg;
          const line = Math.floor((cy - 40) / 18), ly = (cy - 40) % 18;
          if (cy >= 40 && cy < 150 && ly < 12 && x >= 64 && x < w - 64) {
            const gx = Math.floor((x - 64) / 9);
            let g = noise[(card * 7 + line * 131 + gx) % 4096];
            if (variant && card === 1 && line === 2 && gx % 40 < 6) g = ((g << 5) | (g >>> 11)) & 0xffff;
            const bit = ((x - 64) % 9) * 12 + ly;
            if (g % 5 !== 0 && ((g >> (bit % 16)) & 1) && (x - 64) % 9 < 7) {
              const ink = dark ? 200 - ((g >> 3) % 100) : 34 + ((g >> 3) % 150);
              c = [ink, ink, ink];
            }
          }
          if (cy >= 170 && cy < 210 && x >= 64 && x < 364) {
            const t = (x - 64) / 300;
            c = [Math.floor(249 - 110 * t), Math.floor(115 - 23 * t), Math.floor(22 + 224 * t)];
          }
          if (cy >= 212 && cy < 236 && x >= 64 && x < 180) {
            c = [59, 130, 246];
            if (variant && card === 0 && x > 150 && cy > 216 && cy < 230) c = [255, 255, 255];
          }
        }
      }
      if (variant && y > 14 && y < 34 && x > 200 && x < 260 && (x + y) % 3 === 0) c = [255, 255, 255];
      const k = (y * w + x) * 4;
      d[k] = c[0]; d[k + 1] = c[1]; d[k + 2] = c[2]; d[k + 3] = 255;
    }
  }
  return PNG.sync.write(png, { colorType: 2 });
}

for (const [w, h] of [[1280, 800], [1920, 1080], [1280, 8000]]) {
  const name = `${w}x${h}`;
  const a = page(w, h);
  fs.writeFileSync(path.join(out, `${name}.a.png`), a);
  fs.writeFileSync(path.join(out, `${name}.same.png`), a);
  fs.writeFileSync(path.join(out, `${name}.changed.png`), page(w, h, { variant: true }));
  fs.writeFileSync(path.join(out, `${name}.different.png`), page(w, h, { seedBase: 99, dark: true }));
  console.log(`wrote ${name}`);
}

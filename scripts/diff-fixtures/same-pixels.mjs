// node same-pixels.mjs A.png B.png — exits 0 when both PNGs decode to the same RGBA pixels,
// 1 (printing the first differing pixel) otherwise. Used to check `vigil diff`'s diff image
// against the reference pixelmatch's on the benchmark pairs.
import fs from 'node:fs';
import { PNG } from 'pngjs';

const [a, b] = process.argv.slice(2).map((f) => PNG.sync.read(fs.readFileSync(f)));
if (a.width !== b.width || a.height !== b.height) {
  console.log(`sizes differ: ${a.width}x${a.height} vs ${b.width}x${b.height}`);
  process.exit(1);
}
for (let i = 0; i < a.data.length; i++) {
  if (a.data[i] !== b.data[i]) {
    const p = i >> 2;
    console.log(`first differing pixel: x=${p % a.width} y=${Math.floor(p / a.width)}`);
    process.exit(1);
  }
}
console.log(`same ${a.width}x${a.height} pixels`);

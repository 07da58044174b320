// node pixelmatch-cli.mjs A.png B.png [DIFF.png] [--yiq]
// The reference implementation as a command, for scripts/bench-diff.sh: decode with pngjs,
// pixelmatch 8 (or 7 with --yiq) with default options, write the diff, print the count.
import fs from 'node:fs';
import { PNG } from 'pngjs';
import pixelmatch8 from 'pixelmatch';
import pixelmatch7 from 'pixelmatch7';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const yiq = process.argv.includes('--yiq');
const [a, b] = [PNG.sync.read(fs.readFileSync(args[0])), PNG.sync.read(fs.readFileSync(args[1]))];
if (a.width !== b.width || a.height !== b.height) {
  console.error('pixelmatch needs images of the same size');
  process.exit(2);
}
const out = args[2] ? new PNG({ width: a.width, height: a.height }) : null;
const n = (yiq ? pixelmatch7 : pixelmatch8)(a.data, b.data, out && out.data, a.width, a.height, {});
if (out) fs.writeFileSync(args[2], PNG.sync.write(out));
console.log(n);

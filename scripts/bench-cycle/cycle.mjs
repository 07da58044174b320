// The yardstick of scripts/bench-cycle.sh: what vigil does, in a short puppeteer-core script on
// the same Chromium. One browser, a browser context per worker, each page loaded (`load`),
// a 1280x800 viewport screenshot, compared with pixelmatch against the reference pass's shot.
//   node cycle.mjs reference|test WORKERS BASE_URL DIR [--settle] [--steps=LIST] [--repeat=N]
// --settle also awaits web fonts and freezes CSS animations before the shot.
// --steps adds, one at a time, what vigil does around a capture (to price each in Chromium's
// time, docs/benchmarks.md): `settle` (vigil's stabilising script: freeze CSS, finished
// animations, blur, fonts, two frames), `second` (a second shot, optimizeForSpeed), `park` (leave
// the page for about:blank from the page, as a warm tab is parked), `clear` (the origin's
// storage and the HTTP cache emptied). --repeat=N goes through the 20 pages N times.
// Prints one JSON line: pages, changed pages (any differing pixel), seconds.
import puppeteer from 'puppeteer-core';
import pixelmatch from 'pixelmatch';
import { PNG } from 'pngjs';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';

const [pass, workersArg, base, dir] = process.argv.slice(2);
const workers = Number(workersArg || 1);
const settle = process.argv.includes('--settle');
const option = (name) => process.argv.find(a => a.startsWith(`--${name}=`))?.split('=')[1];
const steps = new Set((option('steps') || '').split(',').filter(Boolean));
const repeat = Number(option('repeat') || 1);
const SETTLE = `(async () => {
  const style = document.createElement('style');
  style.textContent = '*,*::before,*::after{animation-delay:0s!important;animation-duration:0s!important;animation-iteration-count:1!important;transition:none!important;caret-color:transparent!important}';
  (document.head || document.documentElement).appendChild(style);
  for (const a of document.getAnimations()) { try { a.finish(); } catch (e) { a.cancel(); } }
  if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
  await document.fonts.ready;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r())));
})()`;
const exe = fs.existsSync('/usr/lib/chromium/chromium') ? '/usr/lib/chromium/chromium' : '/usr/bin/chromium';
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pptr-'));
fs.mkdirSync(dir, { recursive: true });
const start = performance.now();
const browser = await puppeteer.launch({
  executablePath: exe, headless: true, userDataDir: profile,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--hide-scrollbars', '--force-color-profile=srgb'],
});
const pages = Array.from({ length: 20 * repeat }, (_, i) => i % 20);
const changed = [];
let next = 0;
async function worker() {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  while (next < pages.length) {
    const i = pages[next++];
    await page.goto(`${base}/page/${i}`, { waitUntil: 'load' });
    if (settle) {
      await page.addStyleTag({ content: '*,*::before,*::after{animation-duration:0s!important;animation-iteration-count:1!important;transition:none!important;caret-color:transparent!important}' });
      await page.evaluate(() => document.fonts.ready);
    }
    if (steps.has('settle')) await page.evaluate(SETTLE);
    if (steps.has('second')) await page.screenshot({ type: 'png', optimizeForSpeed: true });
    const shot = await page.screenshot({ type: 'png' });
    if (steps.has('park')) {
      await Promise.all([page.waitForNavigation(), page.evaluate(() => location.replace('about:blank'))]);
    }
    if (steps.has('clear')) {
      const cdp = await page.createCDPSession();
      await cdp.send('Storage.clearDataForOrigin', { origin: base, storageTypes: 'all' });
      await cdp.send('Network.clearBrowserCache');
      await cdp.detach();
    }
    const file = path.join(dir, `${i}.png`);
    if (pass === 'reference') {
      fs.writeFileSync(file, shot);
    } else {
      const a = PNG.sync.read(fs.readFileSync(file)), b = PNG.sync.read(Buffer.from(shot));
      const n = a.width === b.width && a.height === b.height
        ? pixelmatch(a.data, b.data, null, a.width, a.height, { threshold: 0.1 }) : a.width * a.height;
      if (n > 0) changed.push(i);
    }
  }
  await ctx.close();
}
await Promise.all(Array.from({ length: workers }, worker));
await browser.close();
const secs = (performance.now() - start) / 1000;
fs.rmSync(profile, { recursive: true, force: true });
console.log(JSON.stringify({ pass, workers, settle, steps: [...steps], pages: pages.length, changed, seconds: +secs.toFixed(2) }));

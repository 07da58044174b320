// The same 20 captures with puppeteer-core and the same Chromium, as a yardstick for vigil:
// fresh incognito context per page, 1280x800 viewport, wait for load and fonts, full-page PNG.
//   node puppeteer.mjs TABS [BASE_URL] [networkidle]
import puppeteer from 'puppeteer-core';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';

const tabs = Number(process.argv[2] || 1);
const base = process.argv[3] || 'http://127.0.0.1:8799';
const waitUntil = process.argv[4] === 'networkidle' ? 'networkidle0' : 'load';
const exe = fs.existsSync('/usr/lib/chromium/chromium') ? '/usr/lib/chromium/chromium' : '/usr/bin/chromium';
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pptr-'));
const browser = await puppeteer.launch({
  executablePath: exe, headless: true, userDataDir: profile,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--hide-scrollbars', '--force-color-profile=srgb'],
});
const urls = Array.from({ length: 20 }, (_, i) => `${base}/page/${i}`);
const start = performance.now();
let next = 0;
async function worker() {
  while (next < urls.length) {
    const url = urls[next++];
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    await page.goto(url, { waitUntil });
    await page.evaluate(() => document.fonts.ready);
    await page.screenshot({ fullPage: true, type: 'png' });
    await ctx.close();
  }
}
await Promise.all(Array.from({ length: tabs }, worker));
const secs = (performance.now() - start) / 1000;
await browser.close();
fs.rmSync(profile, { recursive: true, force: true });
console.log(JSON.stringify({ tool: 'puppeteer-core', tabs, wait: waitUntil, seconds: +secs.toFixed(2), per_minute: +(20 / secs * 60).toFixed(1) }));

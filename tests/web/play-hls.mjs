// Drives Debian's Chromium (headless, fresh profile) through playwright-core: opens
// hls-player.html?src=<playlist> and waits until the video's currentTime reaches NEED seconds,
// a fatal hls.js error, or LIMIT seconds. Prints one JSON line; exit code 0 = played.
// Usage: node play-hls.mjs <page URL> <need seconds> <limit seconds>
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [pageUrl, need = '5', limit = '40'] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'rillcast-chromium-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    '--autoplay-policy=no-user-gesture-required',
  ],
});
let state = { t: 0, fatal: 'never loaded', errors: [] };
const logs = [];
try {
  const page = await ctx.newPage();
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push('pageerror: ' + e));
  await page.goto(pageUrl);
  const deadline = Date.now() + Number(limit) * 1000;
  while (Date.now() < deadline) {
    state = await page.evaluate(() => ({
      t: document.getElementById('v').currentTime,
      paused: document.getElementById('v').paused,
      ...window.__hls,
    }));
    if (state.fatal || state.t >= Number(need)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ ...state, logs: logs.slice(-20) }));
process.exit(!state.fatal && state.t >= Number(need) ? 0 : 1);

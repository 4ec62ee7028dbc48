// Plays the page's own live player (fMP4 over WebSocket into MSE) in Debian's Chromium
// (headless, fresh profile) through playwright-core: sets the first password, then for each
// stream named, waits for a decoded picture and samples the <video> once a second for
// SECONDS: currentTime must advance every second (no stall), the picture must not be blank
// (pixel spread of a canvas copy), and the page's latency readout (age of the frame shown,
// from requestVideoFrameCallback) is under a second. The first stream's test source paints
// its capture time into the picture: read back from every presented frame, the median
// glass-to-glass latency must be under a second too. Saves a screenshot.
// Usage: node play-mse.mjs <base URL> <seconds> <screenshot path> <stream>...
// Prints one JSON line; exit code 0 = every stream played.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, seconds, shot, ...streams] = process.argv.slice(2);
const PASSWORD = 'correct horse battery staple';
const profile = mkdtempSync(join(tmpdir(), 'rillcast-mse-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 420, height: 1400 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    '--autoplay-policy=no-user-gesture-required'],
});
const seen = { streams: {} };
const logs = [];
let ok = false;
try {
  const page = await ctx.newPage();
  page.setDefaultTimeout(30000);
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push('pageerror: ' + e));
  await page.goto(base + '/');
  await page.locator('#setup').waitFor({ state: 'visible' });
  await page.fill('#setup-form [name=password]', PASSWORD);
  await page.fill('#setup-form [name=password2]', PASSWORD);
  await page.click('#setup-form button');
  await page.locator('#status').waitFor({ state: 'visible' });
  for (const name of streams) {
    await page.waitForFunction((n) => {
      const p = window.rillcastPlayers && window.rillcastPlayers[n];
      return p && p.mode === 'mse' && p.video.videoWidth > 0 && p.video.currentTime > 0;
    }, name);
  }
  const probe = (n) => {
    const p = window.rillcastPlayers[n], v = p.video;
    const c = document.createElement('canvas');
    c.width = 64; c.height = 36;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0, c.width, c.height);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let min = 255, max = 0;
    for (let i = 0; i < d.length; i += 4) {
      const y = (d[i] * 3 + d[i + 1] * 6 + d[i + 2]) / 10;
      min = Math.min(min, y); max = Math.max(max, y);
    }
    const b = v.buffered;
    return { t: v.currentTime, w: v.videoWidth, h: v.videoHeight, spread: max - min, paused: v.paused,
      ahead: b.length ? b.end(b.length - 1) - v.currentTime : 0, latency: p.latency_s, jumps: p.jumps,
      info: p.info.textContent };
  };
  // Glass-to-glass on the first stream (its test source paints its capture time, Unix ms
  // mod 2^16, as 16 bits in the bottom macroblock row): read back from each presented frame.
  await page.evaluate((n) => {
    const v = window.rillcastPlayers[n].video;
    const c = document.createElement('canvas');
    const g = c.getContext('2d', { willReadFrequently: true });
    window.__g2g = [];
    const onFrame = () => {
      const now = Date.now();
      c.width = v.videoWidth; c.height = v.videoHeight;
      g.drawImage(v, 0, 0);
      const row = g.getImageData(0, c.height - 8, 16 * 16, 1).data;
      let stamp = 0;
      for (let i = 0; i < 16; i++) stamp = stamp * 2 + (row[(i * 16 + 8) * 4 + 1] > 128 ? 1 : 0);
      window.__g2g.push(((now % 65536) - stamp + 65536) % 65536);
      v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
  }, streams[0]);
  const samples = {};
  for (const n of streams) samples[n] = [await page.evaluate(probe, n)];
  for (let i = 0; i < Number(seconds); i++) {
    await new Promise((r) => setTimeout(r, 1000));
    for (const n of streams) samples[n].push(await page.evaluate(probe, n));
  }
  ok = true;
  for (const n of streams) {
    const s = samples[n];
    const steps = s.slice(1).map((x, i) => x.t - s[i].t);
    const minStep = Math.min(...steps);
    const last = s[s.length - 1];
    const r = { played_s: last.t - s[0].t, min_step_s: minStep, width: last.w, height: last.h,
      spread: Math.min(...s.map((x) => x.spread)), max_ahead_s: Math.max(...s.map((x) => x.ahead)),
      latency_s: last.latency, jumps: last.jumps, info: last.info };
    seen.streams[n] = r;
    // Sub-second: the frame on screen was taken less than a second ago (same clock here).
    if (!(minStep > 0.5 && r.width > 0 && r.spread > 30 && r.latency_s > 0 && r.latency_s < 1.0)) ok = false;
  }
  const g2g = (await page.evaluate(() => window.__g2g)).slice(30).sort((a, b) => a - b);
  seen.glass_to_glass_ms = { frames: g2g.length, median: g2g[g2g.length >> 1], p90: g2g[Math.floor(g2g.length * 0.9)] };
  // A misread strip gives values spread over 0..65535: the tail bounds that too.
  if (!(g2g.length > 100 && seen.glass_to_glass_ms.median < 1000 && seen.glass_to_glass_ms.p90 < 2000)) ok = false;
  await page.locator('[data-stream] video').first().scrollIntoViewIfNeeded();
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  seen.error = String(e);
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ ok, ...seen, logs: logs.slice(-20) }));
process.exit(ok ? 0 : 1);

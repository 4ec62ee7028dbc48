// Drives Debian's Chromium (headless, fresh profile) through playwright-core on rillcast's own
// origin. Before logging in to the web page, a protected stream's playlist is refused: 401 for a
// credential-less fetch, and a same-origin fetch gets no answer while the browser holds the
// Basic challenge for a user prompt (headless: nobody answers, so it is aborted after 5 s).
// After logging in, hls.js plays it NEED seconds with nothing but the session cookie
// (same-origin, no credentials in any URL). hls.js is injected into rillcast's page with CSP
// bypassed (the page's CSP rightly forbids foreign scripts).
// Usage: node play-hls-session.mjs <base URL> <playlist path> <password> <need s> <limit s>
// Prints one JSON line; exit code 0 = refused before login and played after.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, playlist, password, need = '4', limit = '40'] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'rillcast-session-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  bypassCSP: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    '--autoplay-policy=no-user-gesture-required',
  ],
});
const logs = [];
const result = { before: null, login: null, after: null };

async function play(page, untilSeconds) {
  await page.goto(base + '/');
  await page.addScriptTag({ path: 'node_modules/hls.js/dist/hls.min.js' });
  await page.evaluate((src) => {
    const v = document.createElement('video');
    v.id = 'rillcast-test-video';
    v.muted = true;
    v.autoplay = true;
    document.body.appendChild(v);
    window.__hls = { fatal: null, errors: [] };
    // eslint-disable-next-line no-undef
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_e, d) => {
      const code = d.response && d.response.code;
      window.__hls.errors.push(d.type + ':' + d.details + (code ? ' ' + code : ''));
      if (d.fatal) window.__hls.fatal = d.details + (code ? ' ' + code : '');
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => v.play().catch(() => {}));
    hls.loadSource(src);
    hls.attachMedia(v);
  }, playlist);
  const deadline = Date.now() + Number(limit) * 1000;
  let state = {};
  while (Date.now() < deadline) {
    state = await page.evaluate(() => ({
      t: document.getElementById('rillcast-test-video').currentTime,
      ...window.__hls,
    }));
    if (state.fatal || state.t >= untilSeconds) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  return state;
}

try {
  const page = await ctx.newPage();
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push('pageerror: ' + e));
  await page.goto(base + '/');
  result.before = await page.evaluate(async (src) => {
    const out = {};
    for (const mode of ['same-origin', 'omit']) {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 5000);
      try {
        const r = await fetch(src, { credentials: mode, signal: ac.signal });
        out[mode] = r.status;
      } catch (e) {
        out[mode] = String(e);
      }
      clearTimeout(timer);
    }
    return out;
  }, playlist);
  result.login = await page.evaluate(async (pw) => {
    const r = await fetch('/api/v1/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ password: pw }),
    });
    return r.status;
  }, password);
  result.after = await play(page, Number(need));
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ ...result, logs: logs.slice(-20) }));
const ok = result.before && result.before.omit === 401
  && result.before['same-origin'] !== 200
  && result.login === 200
  && result.after && !result.after.fatal && result.after.t >= Number(need);
process.exit(ok ? 0 : 1);

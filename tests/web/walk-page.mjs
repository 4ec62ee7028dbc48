// Walks rillcast's web page in Debian's Chromium (headless, fresh profile) via playwright-core.
// Usage: node walk-page.mjs <base URL> <phase> <push URL> <screenshot path>
//   phase "first": set the password, see the stream live with a bitrate, log out and in again,
//                  add a push target, reload: the target is listed; screenshot of the status.
//   phase "again": (after the daemon restarted) log in, the push target is still there.
// Prints one JSON line with what it saw; exit code 0 = every step passed.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, phase, pushUrl, shot] = process.argv.slice(2);
const PASSWORD = 'correct horse battery staple';
const profile = mkdtempSync(join(tmpdir(), 'rillcast-page-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 420, height: 1100 }, // a phone-sized window
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const seen = { steps: [] };
const logs = [];
let ok = false;
try {
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push('pageerror: ' + e));
  await page.goto(base + '/');
  if (phase === 'first') {
    await page.locator('#setup').waitFor({ state: 'visible' });
    await page.fill('#setup-form [name=password]', PASSWORD);
    await page.fill('#setup-form [name=password2]', PASSWORD);
    await page.click('#setup-form button');
    seen.steps.push('password set');
  } else {
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.fill('#login-form [name=password]', PASSWORD);
    await page.click('#login-form button');
    seen.steps.push('logged in after restart');
  }
  await page.locator('#status').waitFor({ state: 'visible' });
  // Live with a bitrate: the pill says live and the bitrate is a positive number.
  await page.waitForFunction(() => {
    const card = document.querySelector('[data-stream="live"]');
    const b = card && card.querySelector('.bitrate');
    return card && card.querySelector('.pill.live') && b && parseInt(b.textContent, 10) > 0;
  });
  seen.bitrate = await page.textContent('[data-stream="live"] .bitrate');
  seen.steps.push('live with bitrate');
  if (phase === 'first') {
    await page.click('#logout');
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.fill('#login-form [name=password]', 'wrong password');
    await page.click('#login-form button');
    await page.waitForFunction(() => document.querySelector('#login-form .err').textContent.length > 0);
    seen.wrong = await page.textContent('#login-form .err');
    await page.fill('#login-form [name=password]', PASSWORD);
    await page.click('#login-form button');
    await page.locator('#status').waitFor({ state: 'visible' });
    seen.steps.push('logged out and in');
    await page.click('#tab-configure');
    await page.locator('#configure').waitFor({ state: 'visible' });
    // A bad URL is refused with the field named.
    await page.fill('#push-form [name=url]', 'http://not-rtmp/');
    await page.click('#push-form button:not([type=button])');
    await page.waitForFunction(() => document.querySelector('#push-form .err[data-for="url"]').textContent.length > 0);
    seen.urlError = await page.textContent('#push-form .err[data-for="url"]');
    await page.fill('#push-form [name=url]', pushUrl);
    await page.fill('#push-form [name=key]', 'page-test-key');
    await page.click('#push-form button:not([type=button])');
    await page.waitForFunction((u) => document.querySelector('#push-edit').textContent.includes(u), pushUrl);
    seen.steps.push('push target added');
    await page.reload();
    await page.click('#tab-status');
  }
  await page.locator('#status').waitFor({ state: 'visible' });
  await page.waitForFunction((u) => document.querySelector('#push').textContent.includes(u), pushUrl);
  seen.push = await page.textContent('#push [data-push="0"]');
  seen.steps.push('push target listed');
  if (shot) {
    // Let the sparkline gather a few points, then photograph the status view.
    await page.waitForTimeout(2500);
    await page.screenshot({ path: shot, fullPage: true });
  }
  ok = true;
} catch (e) {
  seen.error = String(e);
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ ok, ...seen, logs: logs.slice(-10) }));
process.exit(ok ? 0 : 1);

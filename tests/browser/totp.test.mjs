// Two-step verification in the administration console, in headless Chromium
// against the real server binary started with HUTONG_TOTP_REQUIRED=true: the
// administrator signs in, must set up an authenticator app (the console shows
// the otpauth link and the key), confirms it with a code computed here as an
// app would (RFC 6238), sees the recovery codes once and reaches the console.
// Signing in again asks for a code; a wrong one is refused; a recovery code
// opens it. A screenshot of the set-up screen goes to docs/screenshots.
//
// Needs the same binaries and Chromium as admin.test.mjs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const target = process.env.CARGO_TARGET_DIR ?? 'target';
const serverBin = process.env.HUTONG_SERVER_BIN ?? join(target, 'debug', 'hutong-server');
const chromiumBin = process.env.CHROMIUM ?? '/usr/bin/chromium';
const adminPassword = 'admin-browser-1';
const shots = 'docs/screenshots';
const scratch = mkdtempSync(join(tmpdir(), 'hutong-totp-'));
let server;
let http;
let browser;

/** Base32 (RFC 4648, no padding) to bytes. */
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** The RFC 6238 code (SHA-1, 6 digits, 30 s) for `secret` at step `now/30 + steps`. */
function totp(secret, steps = 0) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000) + steps));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

before(async () => {
  assert.ok(existsSync(serverBin), `${serverBin} is missing: build it (cargo build) or set HUTONG_SERVER_BIN`);
  mkdirSync(shots, { recursive: true });
  server = spawn(
    serverBin,
    ['--data-dir', join(scratch, 'data'), 'serve', '--no-tls', '--tcp-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0'],
    {
      env: { ...process.env, HUTONG_ADMIN_PASSWORD: adminPassword, HUTONG_TOTP_REQUIRED: 'true', HUTONG_LOG: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: server.stdout });
  http = await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('exit', (code, signal) => reject(new Error(`hutong-server exited early (${code ?? signal})`)));
    lines.on('line', (line) => {
      const m = /^listening tcp:\/\/\S+ ws:\/\/(\S+)\/ws/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  browser = await chromium.launch({
    executablePath: chromiumBin,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
  rmSync(scratch, { recursive: true, force: true });
});

async function signIn(page) {
  await page.goto(`http://${http}/admin`);
  await page.locator('input[name=account]').fill('admin');
  await page.locator('input[name=password]').fill(adminPassword);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

test('an administrator sets up an authenticator app, then signs in with a code or a recovery code', { timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: 'en-US' });
  const page = await context.newPage();
  const failures = [];
  page.on('pageerror', (e) => failures.push(e.message));

  await signIn(page);
  await page.getByRole('heading', { name: 'Set up two-step verification' }).waitFor();
  const secret = (await page.getByTestId('totp-secret').innerText()).trim();
  const uri = await page.getByTestId('otpauth-uri').innerText();
  assert.match(uri, new RegExp(`^otpauth://totp/Hutong:admin\\?.*secret=${secret}`));
  await page.screenshot({ path: join(shots, 'admin-totp-setup.png') });
  const used = totp(secret);
  await page.locator('input[name=code]').fill(used);
  await page.getByRole('button', { name: 'Confirm and turn on' }).click();
  const codes = await page.getByTestId('recovery-codes').locator('code').allInnerTexts();
  assert.equal(codes.length, 10);
  await page.getByRole('button', { name: 'I saved them; continue' }).click();
  await page.getByTestId('who').filter({ hasText: 'admin' }).waitFor();

  // A new browser session: the code is asked; the one already used is refused.
  await context.clearCookies();
  await page.evaluate(() => sessionStorage.clear());
  await signIn(page);
  await page.getByRole('heading', { name: 'Two-step verification' }).waitFor();
  await page.locator('input[name=code]').fill(used);
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByRole('alert').filter({ hasText: 'The code is wrong or was used already' }).waitFor();
  await page.getByRole('button', { name: 'Use a recovery code instead' }).click();
  await page.locator('input[name=code]').fill(codes[0]);
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByTestId('who').filter({ hasText: 'admin' }).waitFor();
  assert.deepEqual(failures, []);
  await context.close();
});

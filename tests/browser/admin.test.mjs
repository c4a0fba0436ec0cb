// The administration console in headless Chromium against the real server
// binary: the administrator signs in, builds part of the org tree (create,
// drag to reorder), adds a person with a password, and that person then signs
// in with the hutong CLI. Then the administrator resets the person's password;
// the person signs in to the console with the one-time password, must choose a
// new one, and is told their role cannot use the console; the CLI accepts the
// new password. A bad CSV import shows its row errors, the export downloads,
// sessions list the CLI's sign-ins, and retention saves. Screenshots of the
// main screens go to docs/screenshots/admin-*.png.
//
// The server runs as shipped: HTTPS and TLS with its self-signed certificate.
// Chromium trusts exactly that key (--ignore-certificate-errors-spki-list),
// the API calls pin the certificate's fingerprint, and the CLI pins it on
// first use; the console must work under its Content-Security-Policy.
//
// Needs the debug binaries (HUTONG_SERVER_BIN, HUTONG_CLI_BIN, by default
// ${CARGO_TARGET_DIR:-target}/debug/hutong-server and .../hutong) built after
// `scripts/ui.sh build`, and Chromium at /usr/bin/chromium (or $CHROMIUM).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { payloads } from '../corpus/injection.mjs';

const target = process.env.CARGO_TARGET_DIR ?? 'target';
const serverBin = process.env.HUTONG_SERVER_BIN ?? join(target, 'debug', 'hutong-server');
const cliBin = process.env.HUTONG_CLI_BIN ?? join(target, 'debug', 'hutong');
const chromiumBin = process.env.CHROMIUM ?? '/usr/bin/chromium';
const adminPassword = 'admin-browser-1';
const shots = 'docs/screenshots';
const run = promisify(execFile);

const scratch = mkdtempSync(join(tmpdir(), 'hutong-browser-'));
/** The server child process, its protocol address (host:port) and its HTTP address. */
let server;
let tcp;
let http;
/** The browser, with a fresh profile of its own. */
let context;

/** Starts hutong-server on free ports and reads the addresses it prints. */
async function startServer() {
  for (const bin of [serverBin, cliBin]) {
    assert.ok(existsSync(bin), `${bin} is missing: build it (cargo build) or set HUTONG_SERVER_BIN / HUTONG_CLI_BIN`);
  }
  const child = spawn(
    serverBin,
    ['--data-dir', join(scratch, 'data'), 'serve', '--tcp-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0'],
    { env: { ...process.env, HUTONG_ADMIN_PASSWORD: adminPassword, HUTONG_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout });
  const addresses = await new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`hutong-server exited early (${code ?? signal})`)));
    lines.on('line', (line) => {
      const m = /^listening tls:\/\/(\S+) wss:\/\/(\S+)\/ws/.exec(line);
      if (m) resolve([m[1], m[2]]);
    });
  });
  return { child, addresses };
}

/** Stops the server and waits for it to exit (SIGKILL if it does not within 10 s). */
async function stopServer(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The server's certificate (made on first start in the data directory). */
function certificate() {
  return new X509Certificate(readFileSync(join(scratch, 'data', 'tls-cert.der')));
}

/** Base64 SHA-256 of the certificate's public key, as Chromium's SPKI allow-list wants it. */
function spkiHash() {
  const spki = certificate().publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/**
 * A request over HTTPS to the server that accepts only its certificate (the
 * fingerprint pinned, as the client core does), answering like fetch.
 */
function pinnedFetch(url, { method = 'GET', headers = {}, body } = {}) {
  const cert = certificate();
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        headers,
        ca: cert.toString(),
        servername: 'localhost',
        checkServerIdentity: (_host, peer) =>
          peer.fingerprint256 === cert.fingerprint256 ? undefined : new Error('the server certificate changed'),
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode, ok: res.statusCode >= 200 && res.statusCode < 300, text: async () => text, json: async () => JSON.parse(text) });
        });
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Calls the administration API directly (to seed data around the browser steps). */
async function apiCall(token, method, path, body) {
  const response = await pinnedFetch(`https://${http}/api/admin/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

async function adminToken() {
  const response = await pinnedFetch(`https://${http}/api/admin/v1/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ account: 'admin', password: adminPassword }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).token;
}

/** The hutong CLI signs in as `account`; resolves with its output, rejects when it exits non-zero. */
async function cliLogin(account, password, profile) {
  return run(cliBin, ['--profile', profile, 'login', '--server', `tls://${tcp}`, '--account', account], {
    env: { ...process.env, HUTONG_HOME: join(scratch, 'cli'), HUTONG_PASSWORD: password },
    timeout: 60_000,
  });
}

/** Answers the console's confirmation or text dialog. */
async function answerDialog(page, text) {
  const dialog = page.getByTestId('dialog');
  await dialog.waitFor();
  if (text !== undefined) await dialog.locator('input[name=dialog-value]').fill(text);
  await dialog.getByTestId('dialog-ok').click();
  await dialog.waitFor({ state: 'detached' });
}

/** Names of the visible department rows, top to bottom. */
async function treeNames(page) {
  return page.locator('.tree-row .dept-name').allInnerTexts();
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  const started = await startServer();
  server = started.child;
  [tcp, http] = started.addresses;
  context = await chromium.launchPersistentContext(join(scratch, 'chromium-profile'), {
    executablePath: chromiumBin,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Trust exactly the server's key, not every certificate.
      `--ignore-certificate-errors-spki-list=${spkiHash()}`,
    ],
    viewport: { width: 1440, height: 860 },
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
    acceptDownloads: true,
  });
});

after(async () => {
  await context?.close();
  await stopServer(server);
  rmSync(scratch, { recursive: true, force: true });
});

test('the administrator builds the directory and a new person signs in with the CLI', { timeout: 240_000 }, async () => {
  const page = await context.newPage();
  const failures = [];
  page.on('pageerror', (e) => failures.push(e.message));
  // Anything the Content-Security-Policy blocks is a failure too.
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) failures.push(m.text());
  });

  // /admin serves the console over HTTPS, with its security headers; a wrong
  // password is refused with a clear sentence.
  const first = await page.goto(`https://${http}/admin`);
  const headers = first.headers();
  assert.match(headers['content-security-policy'] ?? '', /frame-ancestors 'none'/);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  await page.getByRole('heading', { name: '登录管理后台' }).waitFor();
  // Served by Hutong over TLS: no "not encrypted" banner.
  assert.equal(await page.getByTestId('insecure-banner').count(), 0);
  await page.locator('input[name=account]').fill('admin');
  await page.locator('input[name=password]').fill('not-the-password');
  await page.locator('input[name=account]').focus();
  await page.screenshot({ path: join(shots, 'admin-login.png') });
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: '账号或密码错误' }).waitFor();

  await page.locator('input[name=password]').fill(adminPassword);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.getByTestId('who').filter({ hasText: 'admin' }).waitFor();

  // A top-level department and a sub-department, through the console's dialogs.
  await page.getByTestId('new-top-department').click();
  await answerDialog(page, '胡同科技');
  await page.getByTestId('current-department').filter({ hasText: '胡同科技' }).waitFor();
  await page.getByTestId('new-child-department').click();
  await answerDialog(page, '研发中心');
  await page.getByTestId('current-department').filter({ hasText: '研发中心' }).waitFor();

  // More of a company, through the API, so the screens show a realistic tree.
  const token = await adminToken();
  const { departments } = await apiCall(token, 'GET', '/departments');
  const root = departments.find((d) => d.name === '胡同科技').id;
  const rd = departments.find((d) => d.name === '研发中心').id;
  const product = (await apiCall(token, 'POST', '/departments', { name: '产品部', parent_id: root })).id;
  const market = (await apiCall(token, 'POST', '/departments', { name: '市场部', parent_id: root })).id;
  await apiCall(token, 'POST', '/departments', { name: '人事行政部', parent_id: root });
  const frontEnd = (await apiCall(token, 'POST', '/departments', { name: '前端组', parent_id: rd })).id;
  const people = [
    ['zhangwei', '张伟', '技术总监', rd, ['admin'], '13800010001'],
    ['lina', '李娜', '产品经理', product, [], '13800010002'],
    ['liuyang', '刘洋', '前端工程师', frontEnd, [], '13800010003'],
    ['chenjing', '陈静', '市场专员', market, ['agent'], '13800010004'],
    ['zhaolei', '赵磊', '后端工程师', rd, [], '13800010005'],
  ];
  for (const [account, display_name, title, primary_department_id, roles, phone] of people) {
    await apiCall(token, 'POST', '/people', { account, display_name, title, primary_department_id, roles, phone, password: `${account}-pass-1` });
  }
  await page.reload();
  await page.getByTestId('dept-胡同科技').waitFor();
  assert.deepEqual(await treeNames(page), ['胡同科技', '研发中心', '产品部', '市场部', '人事行政部']);

  // Drag 市场部 onto the upper edge of 产品部: it moves before it (sort_order).
  await page.getByTestId('dept-市场部').dragTo(page.getByTestId('dept-产品部'), { targetPosition: { x: 40, y: 2 } });
  await page.waitForFunction(() => {
    const names = [...document.querySelectorAll('.tree-row .dept-name')].map((e) => e.textContent);
    return names.indexOf('市场部') === 2 && names.indexOf('产品部') === 3;
  });
  const moved = (await apiCall(token, 'GET', '/departments')).departments;
  const order = (id) => moved.find((d) => d.id === id).sort_order;
  assert.ok(order(market) < order(product), 'the drop was saved as a smaller sort_order');

  // The new person, with a password set in the form.
  await page.getByTestId('dept-研发中心').click();
  await page.getByTestId('current-department').filter({ hasText: '研发中心' }).waitFor();
  await page.getByTestId('add-person').click();
  const form = page.getByTestId('person-form');
  await form.locator('input[name=account]').fill('wangfang');
  await form.locator('input[name=display_name]').fill('王芳');
  await form.locator('input[name=password]').fill('wangfang-pass-1');
  await form.locator('input[name=employee_no]').fill('HT-0107');
  await form.locator('input[name=title]').fill('测试工程师');
  await form.locator('input[name=phone]').fill('13800010006');
  await form.locator('input[name=email]').fill('wangfang@hutong.example');
  await form.locator('input[name=manager]').fill('zhangwei');
  await form.getByTestId('further-departments').getByText('胡同科技 / 研发中心 / 前端组').click();
  await page.screenshot({ path: join(shots, 'admin-person-form.png') });
  await page.getByTestId('person-save').click();
  await form.waitFor({ state: 'detached' });
  const row = page.getByTestId('person-wangfang');
  await row.waitFor();
  assert.match(await row.innerText(), /王芳[\s\S]*wangfang[\s\S]*测试工程师[\s\S]*研发中心/);

  const saved = (await apiCall(token, 'GET', '/people?q=wangfang')).people.find((p) => p.account === 'wangfang');
  assert.equal(saved.primary_department_id, rd);
  assert.deepEqual(saved.department_ids, [frontEnd]);
  assert.equal(saved.manager_id, (await apiCall(token, 'GET', '/people?q=zhangwei')).people[0].id);

  // The whole company, for the directory screenshot.
  await page.getByTestId('dept-胡同科技').click();
  await page.getByTestId('person-lina').waitFor();
  await page.getByTestId('person-wangfang').waitFor();
  await page.screenshot({ path: join(shots, 'admin-directory.png') });

  // The server answers pinyin initials.
  await page.getByTestId('people-search').fill('wf');
  await page.getByTestId('person-lina').waitFor({ state: 'detached' });
  await page.getByTestId('person-wangfang').waitFor();

  // The new person signs in with the CLI, with the password the form set.
  const { stdout } = await cliLogin('wangfang', 'wangfang-pass-1', 'wf');
  assert.match(stdout, /logged in as wangfang/);

  // The action log shows what the console did.
  await page.getByTestId('nav-log').click();
  await page.getByTestId('action-log').getByText('person.create').first().waitFor();
  await page.screenshot({ path: join(shots, 'admin-action-log.png') });
  assert.deepEqual(failures, []);
  await page.close();
});

test('a reset password is shown once and must be replaced at the next sign-in', { timeout: 240_000 }, async () => {
  const page = await context.newPage();
  await page.goto(`https://${http}/admin/`);
  // sessionStorage is per tab: this tab signs in again.
  await page.locator('input[name=account]').fill('admin');
  await page.locator('input[name=password]').fill(adminPassword);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.getByTestId('people-search').fill('wangfang');
  const row = page.getByTestId('person-wangfang');
  await row.getByTestId('more').click();
  await row.getByTestId('reset-password').click();
  await answerDialog(page);
  const oneTime = await page.getByTestId('one-time-password-value').inputValue();
  assert.ok(oneTime.length >= 8, `a one-time password: ${oneTime}`);
  await page.getByTestId('one-time-password').getByRole('button', { name: '我已记下' }).click();

  // The old password no longer works.
  await assert.rejects(cliLogin('wangfang', 'wangfang-pass-1', 'wf-old'));

  // The person signs in to the console: a new password first, then the console says staff cannot use it.
  const person = await context.newPage();
  await person.goto(`https://${http}/admin`);
  await person.getByTestId('lang-en').click();
  await person.getByRole('heading', { name: 'Sign in to the admin console' }).waitFor();
  await person.locator('input[name=account]').fill('wangfang');
  await person.locator('input[name=password]').fill(oneTime);
  await person.getByRole('button', { name: 'Sign in', exact: true }).click();
  await person.getByTestId('change-password').waitFor();
  await person.locator('input[name=new_password]').fill('wangfang-pass-2');
  await person.locator('input[name=repeat]').fill('wangfang-pass-2');
  await person.getByRole('button', { name: 'Save and continue' }).click();
  await person.getByTestId('forbidden').filter({ hasText: 'Your role cannot do this' }).waitFor();
  const { stdout } = await cliLogin('wangfang', 'wangfang-pass-2', 'wf-new');
  assert.match(stdout, /logged in as wangfang/);
  await person.close();

  // A CSV with bad rows imports nothing and names each problem.
  await page.getByTestId('nav-import').click();
  await page.getByTestId('import-file').setInputFiles({
    name: 'people.csv',
    mimeType: 'text/csv',
    buffer: Buffer.from('账号,姓名,邮箱,部门\nsunli,孙丽,sunli@hutong.example,胡同科技/研发中心\nbad name,周强,not-an-email,胡同科技\n'),
  });
  await page.getByTestId('import-submit').click();
  const errors = page.getByTestId('import-errors');
  await errors.waitFor();
  assert.match(await errors.innerText(), /3\s+account/);
  const token = await adminToken();
  assert.equal((await apiCall(token, 'GET', '/people?q=sunli')).total, 0, 'nothing was imported');
  await page.screenshot({ path: join(shots, 'admin-import-errors.png') });

  // Export goes through fetch with the bearer token and arrives as a file download.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export').click()]);
  assert.equal(download.suggestedFilename(), 'hutong-people.csv');
  const csv = readFileSync(await download.path(), 'utf8');
  assert.match(csv, /^\ufeff?account,display_name,/);
  assert.match(csv, /\nwangfang,王芳,HT-0107,测试工程师,/);

  // The CLI's sign-ins are listed as sessions.
  await page.getByTestId('nav-sessions').click();
  await page.getByTestId('sessions').getByText('wangfang').first().waitFor();

  // Shortening retention asks first, then saves (above retention_floor_days, so no auditor is needed).
  await page.getByTestId('nav-retention').click();
  await page.locator('input[name=direct_days]').fill('365');
  await page.getByRole('button', { name: '保存', exact: true }).click();
  await answerDialog(page);
  await page.getByRole('status').filter({ hasText: '已保存' }).waitFor();
  assert.deepEqual(await apiCall(token, 'GET', '/retention'), { direct_days: 365, group_days: 0 });
  await page.close();
});

test('328 script-injection payloads as people\'s names and titles render as inert text in the real browser', { timeout: 240_000 }, async () => {
  const corpus = payloads();
  const token = await adminToken();
  await apiCall(token, 'POST', '/departments', { name: '注入测试' });
  // One CSV import (no password hashing per person): names and titles are the payloads.
  const cell = (v) => `"${v.replaceAll('"', '""')}"`;
  const csv =
    'account,display_name,title,department\n' +
    corpus.map((p, i) => [`inj${String(i).padStart(3, '0')}`, cell(p), cell(p), '注入测试'].join(',')).join('\n') +
    '\n';
  const imported = await pinnedFetch(`https://${http}/api/admin/v1/import`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/csv' },
    body: csv,
  });
  assert.equal(imported.status, 200, await imported.text());
  const page = await context.newPage();
  // A payload that ran would call this; the page records it.
  await page.addInitScript(() => {
    window.__pwnedCalls = [];
    window.__pwned = (n) => window.__pwnedCalls.push(n);
  });
  const failures = [];
  page.on('pageerror', (e) => failures.push(e.message));
  page.on('dialog', (d) => {
    failures.push(`a dialog opened: ${d.message()}`);
    void d.dismiss();
  });
  await page.goto(`https://${http}/admin`);
  // sessionStorage is per tab: this tab signs in (in whichever language an earlier test left).
  await page.locator('input[name=account]').fill('admin');
  await page.locator('input[name=password]').fill(adminPassword);
  await page.locator('input[name=password]').press('Enter');
  await page.getByTestId('dept-注入测试').click();
  // Every page of the department's people: each name shown as the text it is.
  const seen = new Map();
  for (;;) {
    await page.locator('[data-testid^=person-inj]').first().waitFor();
    const rows = await page.locator('[data-testid^=person-inj]').evaluateAll((trs) =>
      trs.map((tr) => [tr.getAttribute('data-testid'), tr.innerText]),
    );
    for (const [id, text] of rows) seen.set(id, text);
    const next = page.getByRole('button', { name: /^(下一页|Next)$/ });
    if (await next.isDisabled()) break;
    const first = rows[0][0];
    await next.click();
    await page.waitForFunction((id) => document.querySelector('[data-testid^=person-inj]')?.getAttribute('data-testid') !== id, first);
  }
  assert.equal(seen.size, corpus.length);
  for (const [i, p] of corpus.entries()) {
    const text = seen.get(`person-inj${String(i).padStart(3, '0')}`) ?? '';
    assert.ok(text.includes(p), `payload ${i + 1} shown as text: ${p} (row: ${text})`);
  }
  const found = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll('*')) {
      for (const a of el.attributes) {
        if (a.name.startsWith('on')) bad.push(`${el.tagName} ${a.name}`);
        if (['href', 'src', 'action', 'formaction', 'data', 'srcdoc'].includes(a.name) && /^\s*javascript:/i.test(a.value)) bad.push(`${el.tagName} ${a.name}`);
      }
    }
    return { bad, calls: window.__pwnedCalls };
  });
  assert.deepEqual(found, { bad: [], calls: [] });
  assert.deepEqual(failures, []);
  await page.close();
});

// The administration console in headless Chromium against a real server:
// the administrator signs in, creates a department and a person in it, and
// that person then signs in with the hutong CLI. Screenshots of the main
// screens go to docs/screenshots/.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const target = process.env.CARGO_TARGET_DIR ?? 'target';
const serverBin = process.env.HUTONG_SERVER_BIN ?? join(target, 'debug', 'hutong-server');
const cliBin = process.env.HUTONG_CLI_BIN ?? join(target, 'debug', 'hutong');
const adminPassword = 'admin-browser-1';
const shots = 'docs/screenshots';

let server;
let browser;
let tcp;
let http;
const scratch = mkdtempSync(join(tmpdir(), 'hutong-browser-'));

before(async () => {
  server = spawn(serverBin, ['--data-dir', join(scratch, 'data'), 'serve', '--no-tls', '--tcp-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0'], {
    env: { ...process.env, HUTONG_ADMIN_PASSWORD: adminPassword, HUTONG_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: server.stdout });
  [tcp, http] = await new Promise((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`hutong-server exited with ${code}`)));
    lines.on('line', (line) => {
      const m = /^listening tcp:\/\/(\S+) ws:\/\/(\S+)\/ws/.exec(line);
      if (m) resolve([m[1], m[2]]);
    });
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  rmSync(scratch, { recursive: true, force: true });
});

test('the administrator creates a department and a person who then logs in with the CLI', async () => {
  const page = await browser.newPage({ viewport: { width: 1360, height: 820 }, locale: 'zh-CN' });
  page.on('dialog', async (dialog) => {
    // The console asks names with prompt() and confirms with confirm().
    await dialog.accept(dialog.type() === 'prompt' ? '研发中心' : undefined);
  });
  await page.goto(`http://${http}/admin`);
  await page.getByRole('heading', { name: '登录管理后台' }).waitFor();

  // A wrong password is refused with a clear sentence.
  await page.locator('input[name=account]').fill('admin');
  await page.locator('input[name=password]').fill('not-the-password');
  await page.getByRole('button', { name: '登录' }).click();
  await page.getByRole('alert').filter({ hasText: '账号或密码错误' }).waitFor();
  await page.screenshot({ path: join(shots, 'admin-login.png') });

  await page.locator('input[name=password]').fill(adminPassword);
  await page.getByRole('button', { name: '登录' }).click();
  await page.getByTestId('who').filter({ hasText: 'admin' }).waitFor();

  await page.getByTestId('new-top-department').click();
  await page.getByTestId('dept-研发中心').waitFor();
  await page.getByTestId('dept-研发中心').click();
  await page.getByTestId('current-department').filter({ hasText: '研发中心' }).waitFor();

  await page.getByTestId('add-person').click();
  const form = page.getByTestId('person-form');
  await form.locator('input[name=account]').fill('wangfang');
  await form.locator('input[name=display_name]').fill('王芳');
  await form.locator('input[name=password]').fill('wangfang-pass-1');
  await form.locator('input[name=title]').fill('测试工程师');
  await form.locator('input[name=email]').fill('wangfang@example.com');
  await page.screenshot({ path: join(shots, 'admin-person-form.png') });
  await page.getByTestId('person-save').click();
  await page.getByTestId('person-wangfang').waitFor();
  assert.match(await page.getByTestId('person-wangfang').innerText(), /王芳[\s\S]*测试工程师/);
  await page.screenshot({ path: join(shots, 'admin-directory.png') });

  // The server answers pinyin searches.
  await page.getByTestId('people-search').fill('wf');
  await page.getByTestId('person-wangfang').waitFor();

  await page.getByTestId('nav-log').click();
  await page.getByText('person.create').waitFor();
  await page.screenshot({ path: join(shots, 'admin-action-log.png') });

  // The new person signs in with the CLI.
  const { stdout } = await promisify(execFile)(cliBin, ['--profile', 'wf', 'login', '--server', `tcp://${tcp}`, '--account', 'wangfang'], {
    env: { ...process.env, HUTONG_HOME: join(scratch, 'cli'), HUTONG_PASSWORD: 'wangfang-pass-1' },
  });
  assert.match(stdout, /logged in as wangfang/);
  await page.close();
});

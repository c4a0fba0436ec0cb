// Notices with sign-off (公告/通知, 签收) in the desktop app, end to end: the
// real app binary (tauri-driver under Xvfb) against the real TLS server.
//
// 张伟 (a publisher) writes a sign-off notice in the app's composer to 李娜,
// its body carrying raw HTML that must stay text; his Sent table shows 李娜
// unsigned. 李娜 signs in on the same app: the rail's Notices item shows one
// unread, the reader shows the body with no element from the HTML, she signs
// and the reader says when and on which device. 张伟 signs in again and his
// table shows her signed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Admin, App, freePort, startDriver, startServer, stopProcess, until } from './harness.mjs';

const adminPassword = 'admin-notices-1';
const scratch = mkdtempSync(join(tmpdir(), 'hutong-desktop-notices-'));
const dataDir = join(scratch, 'server');
const home = join(scratch, 'app');
const title = '关于安全培训的通知（请签收）';

let server;
let driver;
let app;

/** Replaces a field's text (the sign-in screen keeps the last server and account). */
async function fill(css, text) {
  const id = await app.waitFor(css, 30_000);
  await app.cmd('POST', `/element/${id}/clear`, {});
  await app.type(css, text);
}

async function signIn(account) {
  await fill('#server', `tls://${server.tls}`);
  await fill('#account', account);
  await fill('#password', `${account}-pass-1`);
  await app.click('#sign-in');
  // The certificate is confirmed once; later sign-ins to the same server go straight in.
  await until('signed in', async () => {
    const confirm = await app.exec("const b = document.getElementById('confirm-fingerprint'); if (b) b.click(); return !!document.getElementById('nav-notices');");
    return confirm;
  }, 30_000);
}

async function signOut() {
  await app.click('#nav-settings');
  await app.click('#sign-out');
}

before(async () => {
  server = await startServer(dataDir, await freePort(), adminPassword);
  const admin = new Admin(server.http, server.certFile);
  await admin.login(adminPassword);
  const root = (await admin.call('POST', '/departments', { name: '胡同科技' })).id;
  for (const [account, display_name, roles] of [
    ['zhangwei', '张伟', ['publisher']],
    ['lina', '李娜', []],
  ]) {
    await admin.call('POST', '/people', {
      account,
      display_name,
      title: '工程师',
      primary_department_id: root,
      phone: '',
      email: `${account}@hutong.example`,
      password: `${account}-pass-1`,
      roles,
    });
  }
  driver = await startDriver({ HUTONG_DESKTOP_HOME: home, HUTONG_LOG: 'warn,hutong=info', LANG: 'zh_CN.UTF-8' });
  app = await App.launch(driver.url);
}, { timeout: 180_000 });

after(async () => {
  // The notification this file raised must not be the one a later file clicks.
  for (const args of [['close-all'], ['history-clear']]) await promisify(execFile)('dunstctl', args).catch(() => {});
  await app?.quit();
  await stopProcess(driver?.child);
  await stopProcess(server?.child);
  rmSync(scratch, { recursive: true, force: true });
}, { timeout: 60_000 });

test('a publisher sends a sign-off notice, the recipient signs it in the app, the sender sees it signed', { timeout: 240_000 }, async () => {
  // 张伟 writes the notice.
  await signIn('zhangwei');
  await app.click('#nav-notices');
  await app.click('#notice-new');
  await app.waitFor('#notice-title');
  // A publisher is offered urgent notices and everyone.
  await until('the publisher options', () =>
    app.exec("return !!document.querySelector('#notice-priority option[value=\"urgent\"]') && !!document.getElementById('notice-everyone');"),
  );
  await app.type('#notice-title', title);
  // Set as a paste would (typed keys would go through the key bindings).
  await app.exec(
    "const t = document.getElementById('notice-text'); t.value = arguments[0]; t.dispatchEvent(new Event('input', { bubbles: true }));",
    '## 时间\n\n- **周五** 下午三点\n\n<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>',
  );
  // 李娜 from the org tree (the company's only top department opens by itself).
  await until('李娜 in the picker', () =>
    app.exec(
      "const l = [...document.querySelectorAll('#notice-composer label.person')].find((e) => e.textContent.includes('李娜'));" +
        "if (!l) return false; const c = l.querySelector('input'); if (!c.checked) c.click(); return true;",
    ),
  );
  await app.click('#notice-send');
  await app.waitForText('#sent-notices .sent-item .title', title, 30_000);
  await app.exec("document.querySelector('#sent-notices .sent-item').click();");
  await app.waitForText('#notice-status tr.recipient .name', '李娜');
  assert.equal(await app.exec("return document.querySelector('#notice-status tr.recipient').dataset.signed;"), 'false');

  // 李娜 signs in on the app: one unread notice on the rail.
  await signOut();
  await signIn('lina');
  await app.waitForText('#notices-badge', '1', 30_000);
  await app.click('#nav-notices');
  await app.waitForText('#notice-inbox .notice-item .title', title);
  assert.deepEqual(await app.texts('#notice-inbox .notice-item .to-sign'), ['待签收']);
  await app.exec("document.querySelector('#notice-inbox .notice-item').click();");
  await app.waitForText('#notice-body h2', '时间');
  assert.equal(await app.exec("return document.querySelector('#notice-body li strong')?.textContent;"), '周五');
  // The raw HTML stays text: no image, no script, nothing ran.
  assert.equal(await app.exec("return document.querySelectorAll('#notice-body img, #notice-body script, #notice-body [onerror]').length;"), 0);
  assert.ok((await app.text('#notice-body')).includes('<img src=x onerror='));
  assert.notEqual(await app.exec('return document.title;'), 'pwned');
  // Opening it read it: the badge goes.
  await until('the badge gone', () => app.exec("return !document.getElementById('notices-badge');"));
  await app.click('#notice-sign');
  await app.waitForText('#notice-signed', '在 desktop 签收');

  // 张伟's table shows her signed.
  await signOut();
  await signIn('zhangwei');
  await app.click('#nav-notices');
  await app.click('#notices-sent-tab');
  await app.waitForText('#sent-notices .sent-item .title', title, 30_000);
  await app.exec("document.querySelector('#sent-notices .sent-item').click();");
  await until('李娜 signed', () =>
    app.exec("const r = document.querySelector('#notice-status tr.recipient'); return r?.dataset.signed === 'true';"),
  );
  assert.ok((await app.text('#notice-counts')).includes('签收 1'));
  await app.click('[data-filter="notSigned"]');
  await until('nobody unsigned', () => app.exec("return document.querySelectorAll('#notice-status tr.recipient').length === 0;"));
});

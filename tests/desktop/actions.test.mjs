// Everyday message actions in the desktop app, end to end: the real app
// binary (tauri-driver under Xvfb), the real TLS server and a colleague on
// the CLI.
//
//  1. Pins: 张伟 pins a message in the app and 李娜's CLI lists it; 李娜 pins
//     another at the CLI and the app's pinned bar and the line "李娜 置顶了一条
//     消息" show it; a click on the bar brings the message into view; after
//     the app restarts the bar is still there.
//  2. Merged forward (合并转发): 张伟 selects two messages in the app and
//     forwards them merged to a group; 李娜's CLI history shows the record
//     with its items. 李娜 forwards merged at the CLI; the app shows the
//     record as a card worded in Chinese whose viewer lists the items.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Admin, App, cli, freePort, startDriver, startServer, stopProcess, until } from './harness.mjs';

const adminPassword = 'admin-actions-1';
const scratch = mkdtempSync(join(tmpdir(), 'hutong-desktop-actions-'));
const dataDir = join(scratch, 'server');
const home = join(scratch, 'app');
const lina = cli(join(scratch, 'cli'));

let server;
let driver;
let app;

/** Opens the conversation named `name` (the name, not any text, is matched). */
async function openChat(name) {
  await app.waitForText('#conversation-list .conversation .name', name, 30_000);
  await app.exec(
    "[...document.querySelectorAll('#conversation-list .conversation')].find((e) => e.querySelector('.name')?.textContent === arguments[0]).click();",
    name,
  );
  await app.waitForText('#chat .chat-name', name);
}

/** The seq of the message whose text is `text` in the open chat. */
function seqOf(text) {
  return until(`the message "${text}"`, () =>
    app.exec(
      "const m = [...document.querySelectorAll('#messages .message')].find((e) => e.querySelector('.text')?.textContent === arguments[0]);" +
        'return m && Number(m.dataset.seq) > 0 ? Number(m.dataset.seq) : null;',
      text,
    ),
  );
}

/** Clicks the element `css` inside the message with seq `seq` (actions show on hover; a click needs none). */
function clickIn(seq, css) {
  return app.exec(`document.querySelector('#messages .message[data-seq="${seq}"] ${css}').click();`);
}

before(async () => {
  server = await startServer(dataDir, await freePort(), adminPassword);
  const admin = new Admin(server.http, server.certFile);
  await admin.login(adminPassword);
  const root = (await admin.call('POST', '/departments', { name: '胡同科技' })).id;
  for (const [account, display_name] of [
    ['zhangwei', '张伟'],
    ['lina', '李娜'],
  ]) {
    await admin.call('POST', '/people', {
      account,
      display_name,
      title: '工程师',
      primary_department_id: root,
      phone: '',
      email: `${account}@hutong.example`,
      password: `${account}-pass-1`,
    });
  }
  await lina(['login', '--server', `tls://${server.tls}`, '--account', 'lina'], { HUTONG_PASSWORD: 'lina-pass-1' });
  await lina(['send', 'zhangwei', '周四开会']);
  await lina(['send', 'zhangwei', '地点三楼']);
  driver = await startDriver({ HUTONG_DESKTOP_HOME: home, HUTONG_LOG: 'warn,hutong=info', LANG: 'zh_CN.UTF-8' });
  app = await App.launch(driver.url);
  await app.type('#server', `tls://${server.tls}`);
  await app.type('#account', 'zhangwei');
  await app.type('#password', 'zhangwei-pass-1');
  await app.click('#sign-in');
  await app.click('#confirm-fingerprint');
  await openChat('李娜');
  await app.waitForText('#messages .message .text', '地点三楼');
}, { timeout: 180_000 });

after(async () => {
  // The notifications this file's messages raised would otherwise be the
  // ones the next file's test clicks (one notification daemon serves them all).
  for (const args of [['close-all'], ['history-clear']]) await promisify(execFile)('dunstctl', args).catch(() => {});
  await app?.quit();
  await stopProcess(driver?.child);
  await stopProcess(server?.child);
  rmSync(scratch, { recursive: true, force: true });
}, { timeout: 60_000 });

test('pins reach the other side both ways and survive a restart of the app', { timeout: 180_000 }, async () => {
  const first = await seqOf('周四开会');
  const second = await seqOf('地点三楼');

  // 张伟 pins in the app; 李娜's CLI lists it.
  await clickIn(first, '.action.pin');
  await app.waitForText('#pinned-bar .pinned-text', '李娜: 周四开会');
  await until('the pin at the CLI', async () =>
    (await lina(['pins', 'zhangwei'])).includes(`${first} lina: 周四开会 (pinned by zhangwei)`),
  );

  // 李娜 pins at the CLI; the app shows it first in the bar, and the line about it.
  await lina(['pin', 'zhangwei', String(second)]);
  await app.waitForText('#pinned-bar .pinned-text', '李娜: 地点三楼');
  assert.deepEqual(await app.texts('#pinned-bar .pinned-more'), ['2 条置顶']);
  const line = await until('the pin line', async () =>
    (await app.texts('#messages .pin-entry .text')).find((x) => x.includes('李娜')),
  );
  assert.equal(line.replace(/[\u2068\u2069]/g, ''), '李娜 置顶了一条消息');
  assert.ok((await app.texts('#messages .pin-entry .text')).includes('你 置顶了一条消息'), 'my own pin reads with 你');

  // The bar's list: a click on the older pin brings its message into view.
  await app.click('#pinned-bar .pinned-more');
  await app.exec(`document.querySelector('#pinned-bar .pinned-item[data-seq="${first}"]').click();`);
  await app.waitFor(`#messages .message[data-seq="${first}"]`);

  // After a restart the pins are still there (from the cache, then the server).
  await app.quit();
  app = await App.launch(driver.url);
  await openChat('李娜');
  await app.waitForText('#pinned-bar .pinned-text', '李娜: 地点三楼', 30_000);
  assert.deepEqual(await app.texts('#pinned-bar .pinned-more'), ['2 条置顶']);

  // 张伟 unpins in the app; the CLI sees one pin left.
  await clickIn(second, '.action.pin');
  await app.waitForText('#pinned-bar .pinned-text', '李娜: 周四开会');
  await until('the unpin at the CLI', async () => {
    const pins = await lina(['pins', 'zhangwei']);
    return !pins.includes('地点三楼') && pins.includes('周四开会');
  });
});

test('merged forwards reach the other side both ways and read as a record', { timeout: 180_000 }, async () => {
  const created = await lina(['group', 'create', '项目组', '--members', 'zhangwei']);
  const group = /group #(\d+)/.exec(created)?.[1];
  assert.ok(group, `group create said: ${created}`);
  await app.waitForText('#conversation-list .conversation .name', '项目组', 30_000);
  const first = await seqOf('周四开会');
  const second = await seqOf('地点三楼');

  // 张伟 selects both messages and forwards them merged to the group.
  await clickIn(first, '.action.select-start');
  await app.waitFor('#selection-bar');
  await clickIn(second, '.select-box');
  assert.deepEqual(await app.texts('#selection-bar .count'), ['已选 2 条']);
  await app.click('#selection-bar .forward-merged');
  await app.waitFor('#forward-picker');
  await app.exec(
    "[...document.querySelectorAll('#forward-picker .target')].find((e) => e.querySelector('.name')?.textContent === '项目组').querySelector('input').click();",
  );
  await app.click('#forward-picker .send');
  await until('the selection bar to go', () => app.exec("return !document.getElementById('selection-bar');"));

  // 李娜's CLI history of the group shows the record and its items.
  await until('the record at the CLI', async () =>
    (await lina(['history', `#${group}`])).includes(': [chat history: 李娜]\n    | 李娜: 周四开会\n    | 李娜: 地点三楼\n'),
  );

  // 李娜 forwards merged at the CLI; the app shows the card and its viewer.
  const out = await lina(['forward', 'zhangwei', String(second), '--to', `#${group}`, '--merged']);
  assert.match(out, /^forwarded 1 to #/);
  await openChat('项目组');
  const card = await until('李娜\'s record in the app', () =>
    app.exec(
      "const c = [...document.querySelectorAll('#messages .message:not(.mine) .forward-card')].pop();" +
        'return c ? Number(c.closest(".message").dataset.seq) : null;',
    ),
  );
  const [title] = await app.texts(`#messages .message[data-seq="${card}"] .forward-title`);
  assert.equal(title.replace(/[\u2068\u2069]/g, ''), '李娜的聊天记录');
  await clickIn(card, '.forward-card');
  await app.waitFor('#forward-viewer');
  assert.deepEqual(await app.texts('#forward-viewer .item .text'), ['地点三楼']);
  assert.equal((await app.texts('#forward-viewer .item .sender'))[0], '李娜');
  await app.click('#forward-viewer .close');
});

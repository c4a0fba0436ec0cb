// The desktop app end to end: the real app binary (started by tauri-driver
// under Xvfb, with a session bus and a notification daemon), the real server
// with TLS, and a colleague on the hutong CLI.
//
//  1. First sign-in: the certificate fingerprint is shown and confirmed; the
//     administrator's reset forces a new password, which the app sets.
//  2. A message from the CLI arrives while the window is not focused: the
//     unread count shows in the window title and beside the tray icon (read
//     over D-Bus as a panel reads it, with its menu), the window asks for
//     attention (urgency hint) and a notification reaches the daemon; clicking
//     it opens the conversation (and the counts go); the reply reaches the
//     CLI; the read state changes when the CLI reads it.
//  3. A second start of the app hands over to the running one and exits; the
//     running one's hidden window comes back: mapped, on top, focused.
//  4. Contacts: the org tree expands lazily, the person card opens a chat.
//     Read list: in a group with two CLI users, one reads my message; the
//     app lists him under 已读 and the other under 未读.
//  5. On a machine without a GPU the app's process loads no OpenGL (the web
//     view paints with the CPU), started without this run's rendering variables.
//  6. Settings: English and the dark theme apply at once and are saved.
//  7. The window's size and place survive a stop by SIGTERM (a session's end).
//  8. Restart with the server stopped: history from the cache and the offline
//     banner; messages typed offline are delivered exactly once when the
//     server returns.
//  9. A changed server certificate is refused with a warning.
// 10. Quit in the tray menu ends the app.
// Screenshots of the main screens go to docs/screenshots/desktop-*.png.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  Admin,
  App,
  appBin,
  busCall,
  cli,
  freePort,
  pinnedFetch,
  startDriver,
  startServer,
  startTrayWatcher,
  stopProcess,
  until,
  watchNotifications,
} from './harness.mjs';
import { payloads } from '../corpus/injection.mjs';

const adminPassword = 'admin-desktop-1';
const scratch = mkdtempSync(join(tmpdir(), 'hutong-desktop-'));
const dataDir = join(scratch, 'server');
const home = join(scratch, 'app');
const shots = 'docs/screenshots';
const lina = cli(join(scratch, 'cli'));
const run = promisify(execFile);

let port;
let server;
let driver;
let app;
let notifications;
let tray;
let people = {};
let newPassword = 'zhangwei-new-pass-1';

/** The pid of the one app process running. */
async function appPid() {
  const pids = (await run('pgrep', ['-x', 'hutong-desktop'])).stdout.trim().split('\n').map(Number);
  assert.equal(pids.length, 1, `one app process: ${pids}`);
  return pids[0];
}

/** The app's main window (X window id) while process `pid` runs it, or null. */
async function appWindow(pid) {
  const { stdout } = await run('xdotool', ['search', '--pid', String(pid)]).catch((e) => ({ stdout: e.stdout ?? '' }));
  const found = [];
  for (const id of stdout.trim().split('\n').filter(Boolean).map(Number)) {
    // GTK's other windows of the process are named after the program; the main one is titled.
    const name = /Window id: \S+ "(.*)"/.exec((await run('xwininfo', ['-id', String(id)])).stdout)?.[1];
    if (/^Hutong( \(\d+\))?$/.test(name ?? '')) found.push(id);
  }
  return found.length === 1 ? found[0] : null;
}

/** A window's map state as X reports it: IsViewable, IsUnMapped or IsUnviewable. */
async function mapState(win) {
  return /Map State: (\w+)/.exec((await run('xwininfo', ['-id', String(win)])).stdout)?.[1];
}

/** The ids of `win` and every window below it. */
async function windowTree(win) {
  const { stdout } = await run('xwininfo', ['-tree', '-id', String(win)]);
  return [win, ...[...stdout.matchAll(/^\s+(0x[0-9a-f]+) /gm)].map((m) => Number(m[1]))];
}

/** Whether the X keyboard focus is on `win` or a window inside it. */
async function focusedIn(win) {
  const focus = Number((await run('xdotool', ['getwindowfocus'])).stdout.trim());
  return (await windowTree(win)).includes(focus);
}

/** The topmost viewable top-level window (no window manager here: the root's children). */
async function topWindow() {
  const { stdout } = await run('xwininfo', ['-root', '-children']);
  // Children are listed bottom to top.
  const children = [...stdout.matchAll(/^\s+(0x[0-9a-f]+) /gm)].map((m) => Number(m[1]));
  for (const id of children.reverse()) {
    if ((await mapState(id).catch(() => null)) === 'IsViewable') return id;
  }
  return null;
}

/** A tray icon's menu as a panel reads it: its object path and its layout (gdbus's text). */
async function trayMenu(item) {
  const menuPath = /objectpath '([^']+)'/.exec(
    await busCall(item.name, item.path, 'org.freedesktop.DBus.Properties.Get', 'org.kde.StatusNotifierItem', 'Menu'),
  )[1];
  return { menuPath, layout: await busCall(item.name, menuPath, 'com.canonical.dbusmenu.GetLayout', '0', '-1', '[]') };
}

/** Whether process `pid` has ended (gone, or a zombie its parent has not reaped yet). */
function exited(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
  } catch {
    return true;
  }
}

before(async () => {
  port = await freePort();
  server = await startServer(dataDir, port, adminPassword);
  const admin = new Admin(server.http, server.certFile);
  await admin.login(adminPassword);
  const root = (await admin.call('POST', '/departments', { name: '胡同科技' })).id;
  const rd = (await admin.call('POST', '/departments', { name: '研发中心', parent_id: root })).id;
  const product = (await admin.call('POST', '/departments', { name: '产品部', parent_id: root })).id;
  for (const [account, display_name, title, dept, phone] of [
    ['zhangwei', '张伟', '技术总监', rd, '13800010001'],
    ['lina', '李娜', '产品经理', product, '13800010002'],
    ['liuyang', '刘洋', '前端工程师', rd, '13800010003'],
  ]) {
    const p = await admin.call('POST', '/people', {
      account,
      display_name,
      title,
      primary_department_id: dept,
      phone,
      email: `${account}@hutong.example`,
      password: `${account}-pass-1`,
    });
    people[account] = p.id ?? p.person?.id;
  }
  // The administrator resets 张伟's password: the app must make him choose a new one.
  const reset = await admin.call('POST', `/people/${people.zhangwei}/reset-password`);
  people.zhangweiOneTime = reset.password;
  await lina(['login', '--server', `tls://${server.tls}`, '--account', 'lina'], { HUTONG_PASSWORD: 'lina-pass-1' });
  notifications = watchNotifications();
  tray = await startTrayWatcher();
  driver = await startDriver({ HUTONG_DESKTOP_HOME: home, HUTONG_LOG: 'warn,hutong=info', LANG: 'zh_CN.UTF-8' });
}, { timeout: 120_000 });

after(async () => {
  await app?.quit();
  await stopProcess(driver?.child);
  await stopProcess(notifications?.child);
  await stopProcess(tray?.child);
  await stopProcess(server?.child);
  rmSync(scratch, { recursive: true, force: true });
}, { timeout: 60_000 });

test('first sign-in confirms the certificate fingerprint and sets the new password', { timeout: 180_000 }, async () => {
  app = await App.launch(driver.url);
  await app.type('#server', `tls://${server.tls}`);
  await app.type('#account', 'zhangwei');
  await app.type('#password', people.zhangweiOneTime);
  await app.screenshot(`${shots}/desktop-sign-in.png`);
  await app.click('#sign-in');
  await app.waitFor('#fingerprint');
  const shown = (await app.text('#fingerprint')).replace(/\s+/g, '');
  assert.equal(shown.replaceAll(':', ''), server.fingerprint.replaceAll(':', ''));
  await app.screenshot(`${shots}/desktop-fingerprint.png`);
  await app.click('#confirm-fingerprint');
  await app.type('#new-password', newPassword);
  await app.type('#repeat-password', newPassword);
  await app.click('#change-password');
  await app.waitFor('#conversation-list', 30_000);
  const profile = JSON.parse(readFileSync(join(home, 'profile.json'), 'utf8'));
  assert.equal(profile.account, 'zhangwei');
  assert.equal(profile.fingerprint, server.fingerprint);
  assert.ok(profile.token.length > 10);
  // The new password works for the CLI too; the one-time one no longer does.
  const other = cli(join(scratch, 'cli-zhangwei'));
  await other(['login', '--server', `tls://${server.tls}`, '--account', 'zhangwei'], { HUTONG_PASSWORD: newPassword });
  const refused = await cli(join(scratch, 'cli-one-time'))(
    ['login', '--server', `tls://${server.tls}`, '--account', 'zhangwei'],
    { HUTONG_PASSWORD: people.zhangweiOneTime },
  ).then(
    (stdout) => ({ code: 0, stderr: stdout }),
    (e) => ({ code: e.code, stderr: String(e.stderr) }),
  );
  assert.equal(refused.code, 3, `the one-time password logged in: ${refused.stderr}`);
  assert.match(refused.stderr, /BAD_CREDENTIALS/);
});

test('a message from the CLI arrives with a notification; the reply and the read state reach the CLI', { timeout: 180_000 }, async () => {
  // Someone is working in another window: the pointer, and with it the keyboard focus, leaves the app.
  await run('xdotool', ['mousemove', '1590', '990']);
  await lina(['send', 'zhangwei', '你好，下午三点开会，<b>别迟到</b>']);
  await app.waitForText('#conversation-list .conversation', '下午三点开会');
  await until('the notification on the session bus', () =>
    notifications.seen.some((s) => s.includes('下午三点开会') && s.includes('&lt;b&gt;')),
  );
  // Names and text are bidi-isolated (FSI … PDI): an RTL override in one cannot reorder the rest.
  assert.ok(notifications.seen.includes('\u2068李娜\u2069'), `notification title: ${notifications.seen.join(' | ')}`);
  assert.ok(
    notifications.seen.some((s) => s.startsWith('\u2068你好') && s.endsWith('\u2069')),
    `notification body: ${notifications.seen.join(' | ')}`,
  );
  // The unread total is in the native window title (and the tray's tooltip and label, set together).
  const windowNames = async () => (await run('xwininfo', ['-root', '-tree'])).stdout;
  await until('the unread count in the window title', async () => (await windowNames()).includes('"Hutong (1)"'));
  // The window is not focused (no window manager here), so it asks for attention: the
  // urgency flag of its WM_HINTS (what taskbars show), read as the flags word.
  const hintFlags = async () => {
    const { stdout } = await run('xprop', ['-name', 'Hutong (1)', '-f', 'WM_HINTS', '32i', '$0\n', 'WM_HINTS']);
    return Number(/WM_HINTS\([^)]*\)\D*(\d+)/.exec(stdout)?.[1] ?? 0);
  };
  await until('the urgency hint on the window', async () => ((await hintFlags()) & 256) !== 0);
  // The tray icon, read as a panel reads it: the count beside it, and its menu.
  const item = await tray.item;
  const trayLabel = () =>
    busCall(item.name, item.path, 'org.freedesktop.DBus.Properties.Get', 'org.kde.StatusNotifierItem', 'XAyatanaLabel');
  await until('the unread count beside the tray icon', async () => (await trayLabel()).includes("<'1'>"));
  const { layout } = await trayMenu(item);
  assert.match(layout, /显示 Hutong/);
  assert.match(layout, /退出/);
  // Clicking the notification (its default action, through the daemon) opens the conversation.
  await run('dunstctl', ['action', '0']);
  await app.waitForText('#messages .message .text', '下午三点开会');
  // Read on screen: the count goes.
  await until('the window title without a count', async () => {
    const names = await windowNames();
    return names.includes('"Hutong"') && !names.includes('"Hutong (');
  });
  await until('the tray icon without a count', async () => (await trayLabel()).includes("<''>"));
  // Untrusted text is text: the <b> arrives literally, no element is made of it.
  assert.equal(await app.exec("return document.querySelectorAll('#messages .message .text b').length;"), 0);
  await app.type('#composer', '收到，准时参加\uE007');
  await until('the reply at the CLI', async () => (await lina(['history', 'zhangwei', '--json'])).includes('收到，准时参加'));
  // lina's `history` marked everything read: the app shows it.
  await until('the read state', async () => {
    const states = await app.texts('#messages .message .read-state');
    return states.length > 0 && /已读|Read/.test(states[states.length - 1]) && !/未读|Unread/.test(states[states.length - 1]);
  });
  await app.screenshot(`${shots}/desktop-chat.png`);
});

test('a second start brings the running app forward and exits', { timeout: 120_000 }, async () => {
  // The running app with its window hidden (in the tray), as a start with --minimized leaves it.
  await app.quit();
  app = await App.launch(driver.url, ['--minimized']);
  const pid = await until('one app process', () => appPid().catch(() => null));
  // Hidden: no window of the app on screen (it may not even exist in X yet).
  await until('the page loaded', async () => (await app.exec('return document.readyState;')) === 'complete');
  const viewable = async () => {
    const w = await appWindow(pid);
    return w !== null && (await mapState(w)) === 'IsViewable' ? w : null;
  };
  assert.equal(await viewable(), null, 'the window starts hidden');
  const second = spawn(appBin, [], { env: { ...process.env, HUTONG_DESKTOP_HOME: home }, stdio: 'ignore' });
  const code = await new Promise((resolve) => second.once('exit', (c) => resolve(c)));
  assert.equal(code, 0);
  // The first one shows its window, on top, with the keyboard focus.
  const win = await until('the window shown', viewable);
  await until('the window focused', () => focusedIn(win));
  await until('the window on top', async () => (await topWindow()) === win);
  assert.equal(await appPid(), pid, 'the same process, and only it');
  await app.waitFor('#conversation-list');
});

test('contacts: the org tree expands lazily and the person card opens a chat', { timeout: 180_000 }, async () => {
  await app.click('#nav-contacts');
  // The company root opens by itself (it is the only top department); 研发中心 loads on click.
  await app.waitForText('#contacts .dept-name', '研发中心');
  assert.ok(!(await app.texts('#contacts .person')).some((t) => t.includes('刘洋')), 'people load only when their department opens');
  await app.exec(
    "[...document.querySelectorAll('#contacts .dept-row')].find((e) => e.querySelector('.dept-name').textContent === '研发中心').click();",
  );
  await app.waitForText('#contacts .person', '刘洋');
  await app.exec(
    "[...document.querySelectorAll('#contacts .person')].find((e) => e.textContent.includes('刘洋')).click();",
  );
  await app.waitForText('#person-card', '前端工程师');
  await app.screenshot(`${shots}/desktop-contacts.png`);
  await app.click('#send-message');
  await app.waitFor('#composer');
  await app.waitForText('#conversation-list .conversation', '刘洋');
});

test('read list: who of a group has read my message and who has not', { timeout: 180_000 }, async () => {
  const liuyang = cli(join(scratch, 'cli-liuyang'));
  await liuyang(['login', '--server', `tls://${server.tls}`, '--account', 'liuyang'], { HUTONG_PASSWORD: 'liuyang-pass-1' });
  const created = await lina(['group', 'create', '周会', '--members', 'zhangwei,liuyang']);
  const group = /group #(\d+)/.exec(created)?.[1];
  assert.ok(group, `group create said: ${created}`);
  await app.click('#nav-chats');
  await app.waitForText('#conversation-list .conversation', '周会');
  await app.exec(
    "[...document.querySelectorAll('#conversation-list .conversation')].find((e) => e.textContent.includes('周会')).click();",
  );
  await app.waitForText('#chat .chat-name', '周会');
  // The group's creation reads as a Chinese sentence with people's names and
  // "你" for the reader, never the server's "#41 created the group ..." with ids.
  const creation = await until('the creation event', async () =>
    (await app.texts('#messages .message.system .text')).find((x) => x.includes('创建了群聊')),
  );
  assert.equal(creation.replace(/[\u2068\u2069]/g, ''), '李娜 创建了群聊“周会”，并邀请 你、刘洋 加入');
  await app.type('#composer', '周会改到周四\uE007');
  // Sent and acknowledged: my message has its seq, and nobody has read it yet.
  const seq = await until('the message acknowledged', () =>
    app.exec(
      "const m = [...document.querySelectorAll('#messages .message.mine')].find((e) => e.textContent.includes('周会改到周四'));" +
        "return m && Number(m.dataset.seq) > 0 ? Number(m.dataset.seq) : null;",
    ),
  );
  const state = () => app.text(`#messages .message[data-seq="${seq}"] .read-state`);
  await until('2 unread', async () => (await state()) === '2 人未读');
  // 刘洋 reads the group at the CLI (`history` marks what it printed as read).
  assert.match(await liuyang(['history', `#${group}`]), /周会改到周四/);
  await until('1 unread after his read', async () => (await state()) === '1 人未读');
  await app.click(`#messages .message[data-seq="${seq}"] .read-state`);
  await app.waitForText('#read-list .read .reader', '刘洋');
  assert.deepEqual(await app.texts('#read-list .read .reader'), ['刘洋']);
  assert.deepEqual(await app.texts('#read-list .unread .reader'), ['李娜']);
  assert.deepEqual(await app.texts('#read-list h3'), ['未读 (1)', '已读 (1)']);
  // The server's list agrees (the CLI's own read-list, by account).
  const fromCli = JSON.parse(await lina(['read-list', `#${group}`, String(seq), '--json']));
  assert.deepEqual(fromCli, { read: ['liuyang'], unread: ['lina'] });
  await app.screenshot(`${shots}/desktop-read-list.png`);
  await app.click('#read-list .close');
  await until('the list closed', async () => (await app.exec("return document.querySelector('#read-list') === null;")) === true);

  // Editing: 张伟 corrects his message in place; the others get the new text, marked edited.
  await app.exec(`document.querySelector('#messages .message[data-seq="${seq}"] .action.edit').click();`);
  const box = await app.waitFor(`#messages .message[data-seq="${seq}"] .edit-box`);
  await app.cmd('POST', `/element/${box}/clear`, {});
  await app.cmd('POST', `/element/${box}/value`, { text: '周会改到周五\uE007' });
  await app.waitForText(`#messages .message[data-seq="${seq}"] .text`, '周会改到周五');
  assert.equal(await app.text(`#messages .message[data-seq="${seq}"] .edited`), '(已编辑)');
  await until('the edit at the CLI', async () => /周会改到周五 \(edited\)/.test(await liuyang(['history', `#${group}`])));
  // 李娜 edits hers at the CLI; the app shows the new version, marked edited.
  const sent = await lina(['send', `#${group}`, '我周三不在']);
  const linaSeq = /as seq (\d+)/.exec(sent)?.[1];
  assert.ok(linaSeq, sent);
  await app.waitForText(`#messages .message[data-seq="${linaSeq}"] .text`, '我周三不在');
  await lina(['edit', `#${group}`, linaSeq, '我周四不在']);
  await app.waitForText(`#messages .message[data-seq="${linaSeq}"] .text`, '我周四不在');
  assert.equal(await app.text(`#messages .message[data-seq="${linaSeq}"] .edited`), '(已编辑)');

  // Reactions: 李娜 reacts at the CLI and the app shows who; 张伟 reacts in the app and the CLI sees it.
  await lina(['react', `#${group}`, String(seq), '👍']);
  await app.waitForText(`#messages .message[data-seq="${seq}"] .reaction`, '👍');
  const chip = `#messages .message[data-seq="${seq}"] .reaction`;
  assert.equal((await app.text(chip)).replace(/\s+/g, ' ').trim(), '👍 1');
  assert.equal(await app.exec(`return document.querySelector('${chip}').title;`), '李娜 回应了 👍');
  await app.exec(`document.querySelector('#messages .message[data-seq="${linaSeq}"] .action.react').click();`);
  await app.exec(
    `[...document.querySelectorAll('#messages .message[data-seq="${linaSeq}"] .reaction-picker .pick')].find((b) => b.textContent === '🎉').click();`,
  );
  await app.waitForText(`#messages .message[data-seq="${linaSeq}"] .reaction`, '🎉');
  await until('the reaction at the CLI', async () => (await liuyang(['history', `#${group}`])).includes('我周四不在 (edited) [🎉 1]'));
});

test('328 script-injection payloads as people\'s names and titles are inert text in the contacts', { timeout: 240_000 }, async () => {
  const corpus = payloads();
  const admin = new Admin(server.http, server.certFile);
  await admin.login(adminPassword);
  // One CSV import into a new department of the company: names and titles are the payloads.
  const cell = (v) => `"${v.replaceAll('"', '""')}"`;
  const csv =
    'account,display_name,title,department\n' +
    corpus.map((p, i) => [`inj${String(i).padStart(3, '0')}`, cell(p), cell(p), '胡同科技/注入测试'].join(',')).join('\n') +
    '\n';
  const imported = await pinnedFetch(`https://${server.http}/api/admin/v1/import`, server.certFile, {
    method: 'POST',
    headers: { Authorization: `Bearer ${admin.token}`, 'Content-Type': 'text/csv' },
    body: csv,
  });
  assert.equal(imported.status, 200, await imported.text());
  // A payload that ran would call this; the page records it.
  await app.exec('window.__pwnedCalls = []; window.__pwned = (n) => window.__pwnedCalls.push(n);');
  await app.click('#nav-contacts');
  await app.waitForText('#contacts .dept-name', '注入测试', 60_000);
  await app.exec(
    "[...document.querySelectorAll('#contacts .dept-row')].find((e) => e.querySelector('.dept-name').textContent === '注入测试').click();",
  );
  await until('every payload person listed', async () => (await app.texts('#contacts .person .person-name')).length >= corpus.length, 60_000);
  const shown = new Set(await app.exec("return [...document.querySelectorAll('#contacts .person .person-name')].map((e) => e.textContent);"));
  for (const [i, p] of corpus.entries()) assert.ok(shown.has(p), `payload ${i + 1} shown as text: ${p}`);
  const found = await app.exec(`
    const bad = [];
    for (const el of document.querySelectorAll('*')) {
      for (const a of el.attributes) {
        if (a.name.startsWith('on')) bad.push(el.tagName + ' ' + a.name);
        if (['href', 'src', 'action', 'formaction', 'data', 'srcdoc'].includes(a.name) && /^\\s*javascript:/i.test(a.value)) bad.push(el.tagName + ' ' + a.name);
      }
      if (['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED'].includes(el.tagName) && el.closest('#contacts')) bad.push(el.tagName);
    }
    return { bad, calls: window.__pwnedCalls };`);
  assert.deepEqual(found, { bad: [], calls: [] });
});

test("without a GPU the app's own process loads no OpenGL", { timeout: 120_000 }, async (t) => {
  const gpu = existsSync('/dev/dri') && readdirSync('/dev/dri').some((n) => n.startsWith('renderD'));
  if (gpu) {
    t.skip('this machine has a GPU: WebKit keeps its defaults and uses it');
    return;
  }
  // The app on its own, started as a desktop starts it: without the software-rendering
  // variables this test run sets for WebDriver, so what it finds is the app's own doing.
  await app.quit();
  await until('the driven app to exit', async () => (await run('pgrep', ['-x', 'hutong-desktop']).catch(() => ({ stdout: '' }))).stdout.trim() === '');
  const ours = ['WEBKIT_DISABLE_COMPOSITING_MODE', 'WEBKIT_DISABLE_DMABUF_RENDERER', 'WEBKIT_WEB_RENDER_DEVICE_FILE', 'LIBGL_ALWAYS_SOFTWARE', 'GDK_GL'];
  const env = { ...process.env, HUTONG_DESKTOP_HOME: home };
  for (const key of ours) delete env[key];
  const xdg = mkdtempSync(join(tmpdir(), 'hutong-desktop-gpu-'));
  Object.assign(env, { XDG_CONFIG_HOME: join(xdg, 'config'), XDG_DATA_HOME: join(xdg, 'data'), XDG_CACHE_HOME: join(xdg, 'cache') });
  const plain = spawn(appBin, [], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let said = '';
  plain.stdout.on('data', (d) => (said += d));
  try {
    // The first screen is drawn (the signed-in chat list) when the app says so.
    await until('the first screen', () => /ui ready/.test(said) || plain.exitCode !== null, 60_000);
    assert.equal(plain.exitCode, null, `the app exited: ${said}`);
    const pid = plain.pid;
    const environ = (p) => readFileSync(`/proc/${p}/environ`, 'utf8').split('\0');
    assert.deepEqual(environ(pid).filter((v) => ours.some((k) => v.startsWith(`${k}=`))), [], 'started without them');
    const libraries = (path) =>
      readFileSync(path, 'utf8')
        .split('\n')
        .map((l) => l.split(/\s+/)[5] ?? '')
        .filter((f) => f.includes('.so'));
    const gl = /libLLVM|_dri\.so|libgallium|libEGL_mesa|libGLX_mesa/;
    assert.deepEqual(libraries(`/proc/${pid}/maps`).filter((f) => gl.test(f)), [], "OpenGL in the app's process");
    // The web process still renders (with the CPU): it is the app's child, alive,
    // and runs with the settings the app chose for itself.
    const parentOf = (p) => {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    };
    const web = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number)
      .filter((p) => {
        try {
          return parentOf(p) === pid && readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'WebKitWebProces';
        } catch {
          return false; // gone meanwhile
        }
      });
    assert.equal(web.length, 1, "a web process among the app's children");
    const webEnv = environ(web[0]);
    for (const set of ['WEBKIT_DISABLE_COMPOSITING_MODE=1', 'WEBKIT_DISABLE_DMABUF_RENDERER=1', 'GDK_GL=disable']) {
      assert.ok(webEnv.includes(set), `the app set ${set} for its web view`);
    }
  } finally {
    await stopProcess(plain);
    rmSync(xdg, { recursive: true, force: true });
  }
  app = await App.launch(driver.url);
  await app.waitFor('#conversation-list');
});

test('settings: English and the dark theme apply at once and are kept', { timeout: 60_000 }, async () => {
  await app.click('#nav-settings');
  const choose = (id, value) =>
    app.exec(
      `const s = document.getElementById(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('change', { bubbles: true }));`,
      id,
      value,
    );
  await choose('setting-locale', 'en');
  await choose('setting-theme', 'dark');
  await until('English and dark', async () =>
    (await app.exec('return document.documentElement.dataset.theme;')) === 'dark' && /Sign out/.test(await app.text('#sign-out')),
  );
  await app.click('#nav-chats');
  await app.exec(
    "[...document.querySelectorAll('#conversation-list .conversation')].find((e) => e.querySelector('.name')?.textContent === '李娜').click();",
  );
  await app.waitForText('#messages .message .text', '收到，准时参加');
  await app.screenshot(`${shots}/desktop-dark-en.png`);
  const saved = JSON.parse(readFileSync(join(home, 'settings.json'), 'utf8'));
  assert.equal(saved.locale, 'en');
  assert.equal(saved.theme, 'dark');
  await app.click('#nav-settings');
  await choose('setting-locale', 'auto');
  await choose('setting-theme', 'system');
  await until('back to Chinese', async () => /退出登录/.test(await app.text('#sign-out')));
});

test('the window keeps its size and place when the session stops the app', { timeout: 120_000 }, async () => {
  await app.cmd('POST', '/window/rect', { x: 64, y: 48, width: 1000, height: 680 });
  const placed = await app.cmd('GET', '/window/rect');
  assert.deepEqual([placed.width, placed.height], [1000, 680]);
  // A desktop session that ends sends SIGTERM: the app exits as its tray's Quit does.
  const pid = await appPid();
  process.kill(pid, 'SIGTERM');
  await until('the app to exit', () => exited(pid));
  await app.quit();
  app = await App.launch(driver.url);
  await app.waitFor('#conversation-list');
  const restored = await app.cmd('GET', '/window/rect');
  assert.deepEqual(
    [restored.x, restored.y, restored.width, restored.height],
    [placed.x, placed.y, placed.width, placed.height],
  );
});

test('offline restart shows cached history and a banner; offline messages go out exactly once', { timeout: 180_000 }, async () => {
  await app.click('#nav-chats');
  await app.quit();
  await stopProcess(server.child);
  app = await App.launch(driver.url);
  await app.waitForText('#conversation-list .conversation', '李娜');
  await until('the offline banner', async () => /重新连接|离线|reconnect|offline/i.test(await app.text('#connection-banner')));
  await app.exec(
    "[...document.querySelectorAll('#conversation-list .conversation')].find((e) => e.querySelector('.name')?.textContent === '李娜').click();",
  );
  await app.waitForText('#messages .message .text', '下午三点开会');
  await app.type('#composer', '离线消息一\uE007');
  await app.type('#composer', '离线消息二\uE007');
  await app.waitForText('#messages .message .text', '离线消息二');
  await app.screenshot(`${shots}/desktop-offline.png`);
  server = await startServer(dataDir, port, adminPassword);
  await until('the banner to go', async () => {
    const shown = await app.exec("const b = document.querySelector('#connection-banner'); return !!b && b.offsetParent !== null;");
    return !shown;
  }, 60_000);
  const texts = await until('both offline messages at the CLI', async () => {
    const out = await lina(['history', 'zhangwei', '--json']);
    const texts = out.split('\n').filter(Boolean).map((l) => JSON.parse(l).text);
    return texts.includes('离线消息一') && texts.includes('离线消息二') ? texts : null;
  }, 60_000);
  assert.equal(texts.filter((t) => t === '离线消息一').length, 1);
  assert.equal(texts.filter((t) => t === '离线消息二').length, 1);
  assert.ok(texts.indexOf('离线消息一') < texts.indexOf('离线消息二'), 'kept in order');
});

test('a changed server certificate is refused with a warning', { timeout: 180_000 }, async () => {
  await app.quit();
  await stopProcess(server.child);
  // A new certificate: the server makes one when its files are gone.
  for (const f of ['tls-cert.der', 'tls-key.der']) rmSync(join(dataDir, f), { force: true });
  server = await startServer(dataDir, port, adminPassword);
  if (!server.fingerprint || server.fingerprint === JSON.parse(readFileSync(join(home, 'profile.json'), 'utf8')).fingerprint) {
    assert.fail(`the server kept its certificate; files in ${dataDir}: ${existsSync(dataDir)}`);
  }
  app = await App.launch(driver.url);
  await app.waitFor('#connection-banner');
  await until('the certificate warning', async () => /证书|certificate/i.test(await app.text('#connection-banner')), 30_000).catch(async (e) => {
    throw new Error(`${e.message}; the banner says: ${await app.text('#connection-banner')}`);
  });
  await app.screenshot(`${shots}/desktop-certificate-changed.png`);
});

test('Quit in the tray menu ends the app', { timeout: 60_000 }, async () => {
  const pid = await appPid();
  // The running app's icon registered last (every start registers its own).
  const item = await until('the tray icon of this run', () => tray.items.at(-1));
  const { menuPath, layout } = await trayMenu(item);
  const quitId = /<\((\d+), \{[^}]*'label': <'(?:退出|Quit)'>/.exec(layout)?.[1];
  assert.ok(quitId, `a Quit item in ${layout}`);
  await busCall(item.name, menuPath, 'com.canonical.dbusmenu.Event', quitId, 'clicked', '<0>', '0');
  await until('the app to exit', () => exited(pid));
});

// Files and folders in the desktop app, end to end: the real app binary
// (tauri-driver under Xvfb), the real TLS server and a colleague on the CLI.
//
//  1. A folder with nested directories and Chinese names is dragged from a
//     file manager (a real XDND drag: drag-source.py offers it, the X pointer
//     carries it onto the app's window) and dropped on the open chat; the
//     upload finishes in the UI; the CLI fetches the folder (`hutong fetch`)
//     and every file's hash equals the source's. The same path named by the
//     page before the drop is refused by the shell.
//  2. The CLI sends a file and an image (`hutong send-file`); the app shows
//     them (the image with its thumbnail); Download fetches the file into the
//     download folder chosen in the native folder chooser from the settings,
//     hash-compared (a folder the page names itself is refused). A script
//     sent the same way is not opened unconfirmed: the shell asks in a native
//     dialog, and Cancel leaves it unopened.
//  3. docs/screenshots/desktop-files.png: a chat with a folder, a file and an
//     image with its thumbnail.
//  4. A file chosen in the native file chooser (the composer's attach menu)
//     is sent, and the CLI fetches the same bytes.
//  5. Ctrl+V in the composer with an image on the X clipboard (put there by
//     xclip) sends it as an image; the CLI fetches a PNG of the same pixels.
//
// Native windows (the drag source, GTK's file chooser and message dialog)
// are driven with the real X pointer and keyboard (xdotool), as a person
// would; WebDriver reaches only the web view.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { crc32, deflateSync, inflateSync } from 'node:zlib';
import {
  Admin,
  App,
  chooseInFileDialog,
  cli,
  freePort,
  nativeDrop,
  startDriver,
  startServer,
  stopProcess,
  until,
  windowShown,
  windowTitled,
  xdo,
} from './harness.mjs';

const adminPassword = 'admin-files-1';
const scratch = mkdtempSync(join(tmpdir(), 'hutong-desktop-files-'));
const dataDir = join(scratch, 'server');
const home = join(scratch, 'app');
const shots = 'docs/screenshots';
const lina = cli(join(scratch, 'cli'));
const password = 'zhangwei-pass-1';

let server;
let driver;
let app;

/** SHA-256 of every file under `root`, by path relative to it (with '/'). */
function hashes(root) {
  const out = {};
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else out[relative(root, path).split('\\').join('/')] = createHash('sha256').update(readFileSync(path)).digest('hex');
    }
  };
  walk(root);
  return out;
}

const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A small RGB PNG (a gradient), so the client core makes a thumbnail of a real image. */
function png(width, height) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      raw[row + 1 + x * 3] = Math.round((x / width) * 255);
      raw[row + 2 + x * 3] = Math.round((y / height) * 255);
      raw[row + 3 + x * 3] = 160;
    }
  }
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * The pixels of an 8-bit RGB or RGBA PNG (not interlaced), as RGBA: enough
 * to compare what was pasted with what arrived, whatever encoder wrote it.
 */
function pixels(file) {
  assert.deepEqual([...file.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], 'a PNG');
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat = [];
  for (let at = 8; at < file.length; ) {
    const len = file.readUInt32BE(at);
    const type = file.toString('ascii', at + 4, at + 8);
    const data = file.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.equal(data[8], 8, 'bit depth 8');
      assert.equal(data[12], 0, 'not interlaced');
      channels = { 2: 3, 6: 4 }[data[9]];
      assert.ok(channels, `colour type ${data[9]}`);
    } else if (type === 'IDAT') {
      idat.push(data);
    }
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = Buffer.alloc(width * height * 4);
  let prev = Buffer.alloc(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? line[i - channels] : 0;
      const b = prev[i];
      const c = i >= channels ? prev[i - channels] : 0;
      const p = a + b - c;
      const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
      const paeth = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      line[i] = (line[i] + [0, a, b, (a + b) >> 1, paeth][filter]) & 0xff;
    }
    for (let x = 0; x < width; x++) {
      for (let k = 0; k < 4; k++) out[(y * width + x) * 4 + k] = k < channels ? line[x * channels + k] : 255;
    }
    prev = line;
  }
  return { width, height, rgba: out };
}

/** The state of the file message whose name is `name`: its seq and its transfer's state. */
function fileMessage(name) {
  return app.exec(
    `const card = [...document.querySelectorAll('#messages .file-card')]
       .find((c) => c.querySelector('.file-name')?.textContent === arguments[0]);
     if (!card) return null;
     const message = card.closest('.message');
     return {
       seq: Number(message.dataset.seq),
       state: message.dataset.state,
       transfer: card.dataset.transfer,
       error: card.querySelector('.file-error')?.textContent ?? null,
       thumbnail: card.querySelector('.thumb img')?.getAttribute('src') ?? null,
       thumbnailLoaded: (card.querySelector('.thumb img')?.naturalWidth ?? 0) > 0,
     };`,
    name,
  );
}

/** The last line of `hutong fetch`: `done <id> wire_bytes=<n> path=<path>`. */
function fetched(stdout) {
  const line = stdout.trim().split('\n').pop();
  const m = /^done (\S+) wire_bytes=(\d+) path=(.+)$/.exec(line);
  assert.ok(m, `hutong fetch printed: ${stdout}`);
  return { id: m[1], wireBytes: Number(m[2]), path: m[3] };
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
  await lina(['send', 'zhangwei', '文件发这里']);
  driver = await startDriver({ HUTONG_DESKTOP_HOME: home, HUTONG_LOG: 'warn,hutong=info', LANG: 'zh_CN.UTF-8' });
  app = await App.launch(driver.url);
  await app.type('#server', `tls://${server.tls}`);
  await app.type('#account', 'zhangwei');
  await app.type('#password', password);
  await app.click('#sign-in');
  await app.click('#confirm-fingerprint');
  await app.waitForText('#conversation-list .conversation', '文件发这里', 30_000);
  await app.exec(
    "[...document.querySelectorAll('#conversation-list .conversation')].find((e) => e.textContent.includes('李娜')).click();",
  );
  await app.waitForText('#messages .message .text', '文件发这里');
}, { timeout: 180_000 });

after(async () => {
  await app?.quit();
  await stopProcess(driver?.child);
  await stopProcess(server?.child);
  rmSync(scratch, { recursive: true, force: true });
}, { timeout: 60_000 });

test('a folder with nested Chinese names dragged from a file manager and dropped reaches the CLI byte for byte', { timeout: 300_000 }, async () => {
  const source = join(scratch, 'source', '项目资料');
  const files = {
    '说明.txt': Buffer.from('胡同：企业自己的即时通讯。\n'),
    '设计/图纸/平面图 v2.bin': randomBytes(3 * 1024 * 1024 + 17),
    '设计/配色.json': Buffer.from(JSON.stringify({ 主色: '#2f6fed' })),
    '文档/会议纪要/2025 年 1 月.md': Buffer.from('# 会议纪要\n- 发布文件传输\n'),
    '文档/空文件.txt': Buffer.alloc(0),
  };
  for (const [path, data] of Object.entries(files)) {
    mkdirSync(join(source, path, '..'), { recursive: true });
    writeFileSync(join(source, path), data);
  }
  mkdirSync(join(source, '空目录'), { recursive: true });

  // The page cannot send what the person did not give it, this path included.
  const named = await app.exec(
    `return window.__TAURI_INTERNALS__.invoke('send_paths', { conversationId: 1, paths: [arguments[0]] }).then(() => 'sent', (e) => e.code);`,
    source,
  );
  assert.equal(named, 'FORBIDDEN');

  await nativeDrop(app, [source], async () => {
    await app.waitFor('#drop-overlay');
    assert.match(await app.text('#drop-overlay'), /松开即可发送/);
  });
  await until('the overlay to go', async () => (await app.exec("return !document.getElementById('drop-overlay');")));
  const sent = await until(
    'the folder upload to finish and the message to be on the server',
    async () => {
      const m = await fileMessage('项目资料');
      if (m?.error) throw new Error(`upload failed: ${m.error}`);
      return m && m.seq > 0 && m.state === 'sent' ? m : null;
    },
    120_000,
  );
  // The folder card: its file count.
  await app.waitForText('#messages .file-card .file-count', '5 个文件');

  const dest = join(scratch, 'lina-fetched');
  mkdirSync(dest, { recursive: true });
  const out = fetched(await lina(['fetch', 'zhangwei', String(sent.seq), '--to', dest]));
  assert.equal(out.path, join(dest, '项目资料'));
  assert.deepEqual(hashes(out.path), hashes(source));
  assert.ok(statSync(join(out.path, '空目录')).isDirectory(), 'the empty directory came too');
});

test('a file and an image from the CLI: the thumbnail shows, Download saves into the chosen folder', { timeout: 300_000 }, async () => {
  // The download folder, chosen in the native folder chooser from the
  // settings (a path with Chinese and a space).
  const downloads = join(scratch, '我的 下载');
  mkdirSync(downloads, { recursive: true });
  await app.click('#nav-settings');
  // A folder the page names itself is refused (script in the page must not pick where files land).
  const named = await app.exec(
    `const i = window.__TAURI_INTERNALS__;
     return i.invoke('settings').then((s) => i.invoke('save_settings', { settings: { ...s, downloadDir: arguments[0] } }))
       .then(() => 'saved', (e) => e.code);`,
    join(home, 'autostart'),
  );
  assert.equal(named, 'FORBIDDEN');
  await app.click('#choose-download-dir');
  await chooseInFileDialog('选择下载文件夹', downloads);
  await until('the download folder saved', () => {
    try {
      return JSON.parse(readFileSync(join(home, 'settings.json'), 'utf8')).downloadDir === downloads;
    } catch {
      return false;
    }
  });
  assert.equal(await app.exec("return document.getElementById('setting-download-dir').value;"), downloads);
  await app.click('#nav-chats');
  await app.exec(
    "[...document.querySelectorAll('#conversation-list .conversation')].find((e) => e.textContent.includes('李娜')).click();",
  );

  const outbound = join(scratch, 'outbound');
  mkdirSync(outbound, { recursive: true });
  const contract = join(outbound, '合同 2025（终版）.pdf');
  writeFileSync(contract, Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(2 * 1024 * 1024)]));
  const picture = join(outbound, '团建合影.png');
  writeFileSync(picture, png(640, 400));
  await lina(['send-file', 'zhangwei', picture]);
  await lina(['send-file', 'zhangwei', contract]);

  const image = await until('the image with its thumbnail', async () => {
    const m = await fileMessage('团建合影.png');
    return m?.thumbnail && m.thumbnailLoaded ? m : null;
  }, 60_000);
  assert.match(image.thumbnail, /^data:image\/jpeg;base64,/);
  const file = await until('the file message', () => fileMessage('合同 2025（终版）.pdf'), 60_000);
  assert.equal(file.transfer, 'none');

  await app.exec(
    `[...document.querySelectorAll('#messages .file-card')]
       .find((c) => c.querySelector('.file-name')?.textContent === arguments[0])
       .querySelector('button.download').click();`,
    '合同 2025（终版）.pdf',
  );
  await until('the download to finish', async () => {
    const m = await fileMessage('合同 2025（终版）.pdf');
    if (m?.transfer === 'failed') throw new Error(`download failed: ${m.error}`);
    return m?.transfer === 'done';
  }, 120_000);
  assert.equal(sha256(join(downloads, '合同 2025（终版）.pdf')), sha256(contract));
  // Open and Show in folder are offered once it is here.
  assert.equal(
    await app.exec(
      `const card = [...document.querySelectorAll('#messages .file-card')].find((c) => c.querySelector('.file-name')?.textContent === arguments[0]);
       return !!card.querySelector('button.open') && !!card.querySelector('button.reveal');`,
      '合同 2025（终版）.pdf',
    ),
    true,
  );
  // Opening any other path is refused by the shell (the UI is not trusted with paths).
  const refused = await app.exec(
    `return window.__TAURI_INTERNALS__.invoke('open_path', { path: '/etc/passwd' }).then(() => 'opened', (e) => e.code);`,
  );
  assert.equal(refused, 'FORBIDDEN');

  // Tall enough for the folder, the image and the file at once.
  await app.cmd('POST', '/window/rect', { width: 1120, height: 920 }).catch(() => {});
  await app.exec("document.querySelector('#new-messages')?.click();");
  await app.screenshot(`${shots}/desktop-files.png`);

  // A script: the shell does not open it unconfirmed, and the card asks first.
  const script = join(outbound, '部署.sh');
  writeFileSync(script, '#!/bin/sh\necho deployed\n');
  await lina(['send-file', 'zhangwei', script]);
  await until('the script message', () => fileMessage('部署.sh'), 60_000);
  const onCard = (js) =>
    app.exec(
      `const card = [...document.querySelectorAll('#messages .file-card')].find((c) => c.querySelector('.file-name')?.textContent === '部署.sh');
       ${js}`,
    );
  await onCard("card.querySelector('button.download').click();");
  await until('the script downloaded', async () => (await fileMessage('部署.sh'))?.transfer === 'done', 120_000);
  // Open asks in a native dialog (the page cannot answer it for the person); Cancel leaves it unopened.
  const opened = app.exec(
    `return window.__TAURI_INTERNALS__.invoke('open_path', { path: arguments[0] }).then((o) => o, (e) => e.code);`,
    join(downloads, '部署.sh'),
  );
  const dialog = await windowTitled('打开程序？');
  await xdo('windowfocus', '--sync', dialog);
  await xdo('key', 'Escape');
  assert.equal(await opened, false, 'the script was not opened');
  await until('the dialog to close', async () => !(await windowShown('打开程序？')));
});

test('a file chosen in the native file chooser from the composer is sent', { timeout: 180_000 }, async () => {
  mkdirSync(join(scratch, 'outbound'), { recursive: true });
  const report = join(scratch, 'outbound', '季度报告 Q3.txt');
  writeFileSync(report, '第三季度：收入增长。\n');
  await app.click('#attach-button');
  await app.click('#attach-files');
  await chooseInFileDialog('选择要发送的文件', report);
  const sent = await until('the chosen file on the server', async () => {
    const m = await fileMessage('季度报告 Q3.txt');
    if (m?.error) throw new Error(`upload failed: ${m.error}`);
    return m && m.seq > 0 && m.state === 'sent' ? m : null;
  }, 60_000);
  const dest = join(scratch, 'lina-report');
  mkdirSync(dest, { recursive: true });
  const out = fetched(await lina(['fetch', 'zhangwei', String(sent.seq), '--to', dest]));
  assert.equal(sha256(out.path), sha256(report));
});

test('Ctrl+V of an image in the composer sends it; text pastes stay text', { timeout: 180_000 }, async () => {
  const shot = join(scratch, 'clipboard.png');
  writeFileSync(shot, png(320, 200));
  // xclip owns the X clipboard and serves the PNG until someone else takes it.
  const owner = spawn('xclip', ['-quiet', '-selection', 'clipboard', '-t', 'image/png', '-i', shot], { stdio: 'ignore' });
  try {
    await until('xclip to own the clipboard', async () => {
      const targets = await new Promise((resolve) => {
        const p = spawn('xclip', ['-o', '-selection', 'clipboard', '-t', 'TARGETS'], { stdio: ['ignore', 'pipe', 'ignore'] });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.on('close', () => resolve(out));
      });
      return targets.includes('image/png');
    });
    const before = await app.exec("return document.querySelectorAll('#messages .file-card').length;");
    await app.click('#composer');
    // Control down, v, then release every modifier (W3C element send keys).
    await app.type('#composer', '\uE009v\uE000');
    const pasted = await until(
      'the pasted image on the server',
      async () => {
        const found = await app.exec(
          `const cards = [...document.querySelectorAll('#messages .file-card')];
           const card = cards.find((c) => /^image-\\d{8}-\\d{6}(-\\d+)?\\.png$/.test(c.querySelector('.file-name')?.textContent ?? ''));
           if (!card) return null;
           const m = card.closest('.message');
           return { name: card.querySelector('.file-name').textContent, seq: Number(m.dataset.seq), kind: card.dataset.kind,
                    error: card.querySelector('.file-error')?.textContent ?? null };`,
        );
        if (found?.error) throw new Error(`paste failed: ${found.error}`);
        return found && found.seq > 0 ? found : null;
      },
      60_000,
    );
    assert.equal(pasted.kind, 'image');
    assert.equal(await app.exec("return document.querySelectorAll('#messages .file-card').length;"), before + 1);
    assert.equal(await app.exec("return document.getElementById('composer').value;"), '', 'no text was pasted');
    // The other side gets the same image, pixel for pixel. (Not the same file:
    // the clipboard hands the app decoded pixels, which it writes as a PNG of its own.)
    const dest = join(scratch, 'pasted');
    mkdirSync(dest, { recursive: true });
    const out = fetched(await lina(['fetch', 'zhangwei', String(pasted.seq), '--to', dest]));
    const saved = pixels(readFileSync(out.path));
    const source = pixels(readFileSync(shot));
    assert.deepEqual([saved.width, saved.height], [320, 200]);
    assert.ok(saved.rgba.equals(source.rgba), 'the pasted pixels arrived unchanged');
    // And the PNG the app sent is the one that arrived, byte for byte (it
    // waits in the app's tmp/ while its upload may still need it).
    const sent = readFileSync(join(home, 'tmp', pasted.name));
    assert.equal(
      createHash('sha256').update(readFileSync(out.path)).digest('hex'),
      createHash('sha256').update(sent).digest('hex'),
      'the PNG bytes the app sent are the bytes that arrived',
    );
  } finally {
    await stopProcess(owner);
  }
  // Text on the clipboard pastes as text.
  const text = spawn('xclip', ['-quiet', '-selection', 'clipboard', '-i'], { stdio: ['pipe', 'ignore', 'ignore'] });
  text.stdin.end('粘贴的文字');
  try {
    await until('the text on the clipboard', async () => {
      const p = spawn('xclip', ['-o', '-selection', 'clipboard'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      await new Promise((r) => p.on('close', r));
      return out === '粘贴的文字';
    });
    await app.type('#composer', '\uE009v\uE000');
    await until('the text in the composer', async () => (await app.exec("return document.getElementById('composer').value;")) === '粘贴的文字');
  } finally {
    await stopProcess(text);
  }
});

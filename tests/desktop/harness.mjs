// What the desktop end-to-end tests stand on: the real hutong-server and
// hutong CLI binaries, the real app binary started by tauri-driver (which
// drives WebKitWebDriver), and a small W3C WebDriver client over fetch.
//
// scripts/desktop-e2e.sh provides the display (Xvfb), the session bus with a
// notification daemon, and tauri-driver on PATH; the binaries come from
// ${CARGO_TARGET_DIR:-target}/debug.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const target = process.env.CARGO_TARGET_DIR ?? 'target';
export const serverBin = process.env.HUTONG_SERVER_BIN ?? join(target, 'debug', 'hutong-server');
export const cliBin = process.env.HUTONG_CLI_BIN ?? join(target, 'debug', 'hutong');
export const appBin = process.env.HUTONG_DESKTOP_BIN ?? join(target, 'debug', 'hutong-desktop');
const run = promisify(execFile);
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

/** Polls `check` until it returns a truthy value (which it returns) or the deadline passes. */
export async function until(what, check, timeoutMs = 20_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A free TCP port on loopback (for a server that must come back on the same address). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts hutong-server as shipped (TLS on `tcpPort`, HTTPS on a free port)
 * and reads the addresses and fingerprint it prints.
 */
export async function startServer(dataDir, tcpPort, adminPassword) {
  for (const bin of [serverBin, cliBin, appBin]) {
    assert.ok(existsSync(bin), `${bin} is missing: run scripts/desktop-e2e.sh (it builds what it needs)`);
  }
  const child = spawn(
    serverBin,
    ['--data-dir', dataDir, 'serve', '--tcp-listen', `127.0.0.1:${tcpPort}`, '--http-listen', '127.0.0.1:0'],
    { env: { ...process.env, HUTONG_ADMIN_PASSWORD: adminPassword, HUTONG_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout });
  let fingerprint = null;
  const [tls, http] = await new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`hutong-server exited early (${code ?? signal})`)));
    lines.on('line', (line) => {
      const f = /fingerprint \(SHA-256\): (\S+)/.exec(line);
      if (f) fingerprint = f[1];
      const m = /^listening tls:\/\/(\S+) wss:\/\/(\S+)\/ws/.exec(line);
      if (m) resolve([m[1], m[2]]);
    });
  });
  return { child, tls, http, fingerprint, certFile: join(dataDir, 'tls-cert.der') };
}

/**
 * A request over HTTPS that accepts only the server's own certificate (its
 * fingerprint pinned, as the client core does); answers like fetch.
 */
export function pinnedFetch(url, certFile, { method = 'GET', headers = {}, body } = {}) {
  const cert = new X509Certificate(readFileSync(certFile));
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
          resolve({
            status: res.statusCode,
            ok: res.statusCode >= 200 && res.statusCode < 300,
            text: async () => text,
            json: async () => JSON.parse(text),
          });
        });
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export async function stopProcess(child, signal = 'SIGTERM') {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The administration API, to seed the org tree and accounts. */
export class Admin {
  constructor(http, certFile) {
    this.http = http;
    this.certFile = certFile;
  }
  async login(password) {
    const r = await pinnedFetch(`https://${this.http}/api/admin/v1/login`, this.certFile, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ account: 'admin', password }),
    });
    assert.equal(r.status, 200, 'admin login');
    this.token = (await r.json()).token;
  }
  async call(method, path, body) {
    const r = await pinnedFetch(`https://${this.http}/api/admin/v1${path}`, this.certFile, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }
}

/** The hutong CLI with its own home; resolves with stdout. */
export function cli(home) {
  return async (args, env = {}) => {
    const { stdout } = await run(cliBin, ['--timeout', '20', ...args], {
      env: { ...process.env, HUTONG_HOME: home, ...env },
      timeout: 60_000,
    });
    return stdout;
  };
}

/** tauri-driver on a free port, with the environment the app inherits. */
export async function startDriver(env) {
  const port = await freePort();
  const nativePort = await freePort();
  // What the app and its web view keep outside $HUTONG_DESKTOP_HOME (the window's size and
  // place, the web view's storage with unsent drafts, caches) goes to directories of this
  // driver's own, so no run inherits another's.
  const xdg = mkdtempSync(join(tmpdir(), 'hutong-desktop-xdg-'));
  process.on('exit', () => rmSync(xdg, { recursive: true, force: true }));
  const dirs = { XDG_CONFIG_HOME: join(xdg, 'config'), XDG_DATA_HOME: join(xdg, 'data'), XDG_CACHE_HOME: join(xdg, 'cache') };
  const child = spawn('tauri-driver', ['--port', String(port), '--native-port', String(nativePort)], {
    env: { ...process.env, ...dirs, ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await until('tauri-driver', async () => (await fetch(`${url}/status`)).ok, 30_000);
  return { child, url };
}

/** One WebDriver session: one run of the app. */
export class App {
  static async launch(driverUrl, args = []) {
    const r = await fetch(`${driverUrl}/session`, {
      method: 'POST',
      signal: AbortSignal.timeout(60_000),
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        capabilities: { alwaysMatch: { 'tauri:options': { application: appBin, args } } },
      }),
    });
    const body = await r.json();
    assert.ok(r.ok, `new session: ${JSON.stringify(body)}`);
    return new App(driverUrl, body.value.sessionId);
  }

  constructor(driverUrl, id) {
    this.base = `${driverUrl}/session/${id}`;
  }

  async cmd(method, path, body) {
    const r = await fetch(`${this.base}${path}`, {
      method,
      headers: { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    }).catch((e) => {
      throw new Error(`${method} ${path}: ${e.message}`);
    });
    const json = await r.json();
    if (!r.ok) {
      const err = new Error(`${method} ${path}: ${json.value?.error}: ${json.value?.message}`);
      err.webdriver = json.value?.error;
      throw err;
    }
    return json.value;
  }

  /** Runs `script` (a function body) in the page with `args`. */
  exec(script, ...args) {
    return this.cmd('POST', '/execute/sync', { script, args });
  }

  async find(css) {
    const v = await this.cmd('POST', '/element', { using: 'css selector', value: css });
    return v[ELEMENT];
  }

  /** Waits for an element to exist and be displayed; returns its id. */
  async waitFor(css, timeoutMs = 20_000) {
    return until(`element ${css}`, async () => {
      const id = await this.find(css);
      return (await this.cmd('GET', `/element/${id}/displayed`)) ? id : null;
    }, timeoutMs);
  }

  async click(css) {
    const id = await this.waitFor(css);
    await this.cmd('POST', `/element/${id}/click`, {});
  }

  async type(css, text) {
    const id = await this.waitFor(css);
    await this.cmd('POST', `/element/${id}/value`, { text });
  }

  async text(css) {
    return this.cmd('GET', `/element/${await this.find(css)}/text`);
  }

  /** Texts of every element matching `css`, in document order. */
  texts(css) {
    return this.exec('return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent.trim());', css);
  }

  /** Waits until some element matching `css` has text containing `needle`. */
  waitForText(css, needle, timeoutMs = 20_000) {
    return until(`"${needle}" in ${css}`, async () => (await this.texts(css)).some((t) => t.includes(needle)), timeoutMs);
  }

  async screenshot(path) {
    mkdirSync('docs/screenshots', { recursive: true });
    // WebKitGTK takes the picture on the next repaint, and an idle page (no
    // caret blinking, nothing animating) may not repaint: keep one going.
    await this.exec(`const dot = document.createElement('div');
      dot.id = '__repaint';
      dot.style.cssText = 'position:fixed;left:0;top:0;width:1px;height:1px;opacity:0.01;pointer-events:none';
      document.body.append(dot);
      let n = 0;
      const step = () => { if (!dot.isConnected) return; dot.style.transform = 'translateX(' + (n++ % 2) + 'px)'; requestAnimationFrame(step); };
      requestAnimationFrame(step);`);
    try {
      writeFileSync(path, Buffer.from(await this.cmd('GET', '/screenshot'), 'base64'));
      await this.exec("document.getElementById('__repaint')?.remove();");
    } catch (e) {
      // What the screen showed when the web view could not take its picture.
      await run('import', ['-window', 'root', '/tmp/hutong-screenshot-failed.png']).catch(() => {});
      throw e;
    }
  }

  /** Ends the session: tauri-driver stops the app. */
  async quit() {
    await fetch(this.base, { method: 'DELETE' }).catch(() => {});
  }
}

/**
 * Stands in for a desktop panel's tray (tray-watcher.py on the session bus);
 * `item` resolves to the bus name and object path of the first tray icon that
 * registers (`items` lists every registration), whose properties and menu
 * `busCall` then reads as a panel does.
 */
export async function startTrayWatcher() {
  const child = spawn('/usr/bin/python3', [join(import.meta.dirname, 'tray-watcher.py')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  let ready;
  let found;
  const readyP = new Promise((r) => (ready = r));
  const item = new Promise((r) => (found = r));
  const items = [];
  lines.on('line', (line) => {
    if (line === 'ready') ready();
    const m = /^item (\S+) (\S+)$/.exec(line);
    if (m) {
      items.push({ name: m[1], path: m[2] });
      found(items[0]);
    }
  });
  await readyP;
  return { child, item, items };
}

/** A D-Bus method call on the session bus through gdbus; its printed answer. */
export async function busCall(dest, path, method, ...args) {
  const { stdout } = await run('gdbus', ['call', '--session', '--dest', dest, '--object-path', path, '--method', method, '--', ...args]);
  return stdout;
}

/** Watches the session bus for Notify calls (what reached the notification daemon). */
export function watchNotifications() {
  const child = spawn(
    'dbus-monitor',
    ['--session', "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const seen = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const m = /^\s*string "(.*)"$/.exec(line);
    if (m) seen.push(m[1]);
  });
  return { child, seen };
}

/** Runs xdotool (the real X pointer and keyboard, through XTEST) and returns what it printed. */
export async function xdo(...args) {
  // A UTF-8 locale that every system has: window titles and typed text are Chinese.
  const env = { ...process.env, LC_ALL: 'C.UTF-8' };
  const { stdout } = await run('xdotool', args, { timeout: 30_000, env });
  return stdout.trim();
}

/**
 * Every top-level window on the display with its title (as UTF-8, read by
 * xwininfo: xdotool's own name search goes through Xlib's locale support,
 * which does not match Chinese titles here).
 */
async function windows() {
  const { stdout } = await run('xwininfo', ['-root', '-tree'], { env: { ...process.env, LC_ALL: 'C.UTF-8' } });
  return [...stdout.matchAll(/^\s+(0x[0-9a-f]+) "(.*)": \(/gm)].map((m) => ({ id: m[1], title: m[2] }));
}

/** The id of the window whose title is exactly `title`, once there is one. */
export function windowTitled(title, timeoutMs = 20_000) {
  return until(`a window titled ${title}`, async () => (await windows()).find((w) => w.title === title)?.id, timeoutMs).catch(
    async (e) => {
      // Name what is on screen instead: the failure then says what came up.
      const titles = (await windows().catch(() => [])).map((w) => w.title);
      throw new Error(`${e.message} (windows: ${JSON.stringify(titles)})`);
    },
  );
}

/** Whether a window titled `title` exists now. */
export async function windowShown(title) {
  return (await windows()).some((w) => w.title === title);
}

/**
 * Answers the native (GTK) file or folder chooser titled `title` as a person
 * would: focus it, open its location field (Ctrl+L), type `path`, Enter.
 * Typing Chinese makes xdotool remap keys, which the chooser can misread
 * under load; a chooser that did not take the path (still open) gets it
 * typed again. What it chose is checked by the caller (the path that arrives).
 */
export async function chooseInFileDialog(title, path) {
  const id = await windowTitled(title);
  for (let attempt = 1; ; attempt++) {
    await xdo('windowfocus', '--sync', id);
    await xdo('key', '--clearmodifiers', 'ctrl+l');
    await xdo('key', '--clearmodifiers', 'ctrl+a', 'BackSpace');
    await xdo('type', '--delay', '40', path);
    await xdo('key', 'Return');
    try {
      await until(`the ${title} dialog to close`, async () => !(await windowShown(title)), 5_000);
      return;
    } catch (e) {
      if (attempt < 3) continue;
      const shot = join(tmpdir(), 'hutong-dialog-failed.png');
      await run('/usr/bin/python3', [join(import.meta.dirname, 'screen-shot.py'), shot]).catch(() => {});
      throw new Error(`${e.message} (the screen: ${shot})`);
    }
  }
}

/**
 * A native drag of `paths` onto the app's window, as from a file manager:
 * drag-source.py offers them over XDND in a small window beside the app,
 * and the real pointer presses there, moves onto the app's window (its
 * centre, from WebDriver) in steps, runs `whileOver` (if given) while the
 * drag hovers there, and releases. Resolves when the drag source saw the
 * drag end.
 */
export async function nativeDrop(app, paths, whileOver) {
  const rect = await app.cmd('GET', '/window/rect');
  const source = spawn('/usr/bin/python3', [join(import.meta.dirname, 'drag-source.py'), '1450', '20', ...paths], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: source.stdout });
  const seen = [];
  lines.on('line', (l) => seen.push(l));
  try {
    await until('the drag source window', () => seen.includes('ready'));
    const [toX, toY] = [Math.round(rect.x + rect.width / 2), Math.round(rect.y + rect.height / 2)];
    // Press inside the source, cross the drag threshold, then travel onto the
    // app in steps: one xdotool call each, so every step is its own motion
    // event that GTK (the source) and the web view (the target) answer.
    await xdo('mousemove', '1500', '60', 'mousedown', '1');
    const path = [[1490, 70], [1470, 90]];
    for (let i = 1; i <= 10; i++) {
      path.push([Math.round(1470 + ((toX - 1470) * i) / 10), Math.round(90 + ((toY - 90) * i) / 10)]);
    }
    path.push([toX + 2, toY + 2]);
    for (const [x, y] of path) await xdo('mousemove', String(x), String(y));
    if (whileOver) await whileOver();
    await xdo('mouseup', '1');
    await until('the drag to end', () => seen.includes('drag-end'), 20_000);
  } finally {
    await stopProcess(source);
  }
}

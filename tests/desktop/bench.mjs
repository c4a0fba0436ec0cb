// The desktop app's performance figures (docs/PERFORMANCE.md), measured on
// the real app binary under Xvfb with a cache of 100,000 messages in 500
// conversations prepared by hutong-bench-desktop-seed (a real server in that
// process). Run with scripts/bench-desktop.sh, which builds what it needs.
//
//  - cold start: process start to the first usable screen (the conversation
//    list drawn), median of several starts;
//  - opening the conversation of 10,000 messages: click to its newest message
//    drawn, median;
//  - a burst of 1,000 incoming messages in the open conversation: the longest
//    gap between animation frames while it lands, and the time until the last
//    one is on screen;
//  - memory of all the app's processes (the app, WebKit's web and network
//    processes): RSS and PSS summed.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { App, appBin, startDriver, stopProcess, until } from './harness.mjs';

const target = process.env.CARGO_TARGET_DIR ?? 'target';
const seedBin = process.env.HUTONG_SEED_BIN ?? join(target, 'release', 'hutong-bench-desktop-seed');
const starts = Number(process.env.STARTS ?? 7);
const opens = Number(process.env.OPENS ?? 7);
const scratch = mkdtempSync(join(tmpdir(), 'hutong-desktop-bench-'));
const home = join(scratch, 'home');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function lines(stream) {
  const waiting = [];
  const seen = [];
  createInterface({ input: stream }).on('line', (line) => {
    seen.push(line);
    for (const w of [...waiting]) {
      const m = w.re.exec(line);
      if (m) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  return (re) =>
    new Promise((resolve) => {
      const hit = seen.map((l) => re.exec(l)).find(Boolean);
      if (hit) resolve(hit);
      else waiting.push({ re, resolve });
    });
}

/** Pids of `root` and every process below it. */
function tree(root) {
  const children = new Map();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  const out = [];
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop();
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** RSS and PSS summed over `pids` (PSS shares the libraries the processes map in common fairly). */
function memory(pids) {
  let rss = 0;
  let pss = 0;
  const names = [];
  for (const pid of pids) {
    try {
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(rollup)[1]);
      rss += kb('Rss');
      pss += kb('Pss');
      const name = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      names.push(`${name} ${(kb('Pss') / 1024).toFixed(0)} MB (anonymous ${(kb('Pss_Anon') / 1024).toFixed(0)} MB)`);
    } catch {
      // gone meanwhile
    }
  }
  return { rssMb: rss / 1024, pssMb: pss / 1024, names };
}

/**
 * With HUTONG_BENCH_MAPPINGS set: the largest contributors to each process's
 * PSS by mapping (a library, the heap, anonymous memory), to see where it goes.
 */
function mappings(pids, when) {
  if (!process.env.HUTONG_BENCH_MAPPINGS) return;
  for (const pid of pids) {
    let smaps;
    try {
      smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
    } catch {
      continue;
    }
    const byName = new Map();
    let name = '';
    for (const line of smaps.split('\n')) {
      const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (head) name = head[1] || '[anonymous]';
      const pss = /^Pss:\s+(\d+)/.exec(line);
      if (pss) byName.set(name, (byName.get(name) ?? 0) + Number(pss[1]));
    }
    const top = [...byName].sort((a, b) => b[1] - a[1]).slice(0, 15);
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    console.log(`mappings of ${comm} (${when}): ${top.map(([n, kb]) => `${n.split('/').pop()} ${(kb / 1024).toFixed(1)}`).join(', ')}`);
  }
}

const seed = spawn(seedBin, ['--home', home], { stdio: ['pipe', 'pipe', 'inherit'] });
const seedLine = lines(seed.stdout);
const [, server, bigId] = await seedLine(/^ready (\S+) (\d+)/);
console.log(`seeded: server ${server}, big conversation #${bigId}`);
const env = { ...process.env, HUTONG_DESKTOP_HOME: home, HUTONG_LOG: 'warn' };

// 1. Cold start, the app alone (no WebDriver in between).
const startTimes = [];
for (let i = 0; i < starts; i++) {
  const t0 = performance.now();
  const child = spawn(appBin, [], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const m = await lines(child.stdout)(/ui ready in (\d+) ms/);
  startTimes.push(performance.now() - t0);
  console.log(`start ${i + 1}: ${(performance.now() - t0).toFixed(0)} ms (app's own clock ${m[1]} ms)`);
  await stopProcess(child);
}

// 2-4. Through WebDriver.
const driver = await startDriver(env);
const app = await App.launch(driver.url);
await app.waitFor('#conversation-list .conversation', 60_000);
// The big conversation's messages are the oldest: scroll the list until its row is drawn.
await until('the big conversation in the list', () =>
  app.exec(
    `const list = document.getElementById('conversation-list');
     list.scrollTop = list.scrollHeight;
     list.dispatchEvent(new Event('scroll'));
     return !!list.querySelector('.conversation[data-id="${bigId}"]');`,
  ), 60_000);
const appPid = tree(driver.child.pid).find((pid) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith('hutong-desktop');
  } catch {
    return false;
  }
});
const memAtStart = memory(tree(appPid));
mappings(tree(appPid), 'after start');
const openTimes = [];
for (let i = 0; i < opens; i++) {
  // Open another conversation first, so each measurement is a real switch.
  await app.exec(`document.querySelector('#conversation-list .conversation:not([data-id="${bigId}"])').click();`);
  await app.waitFor('#composer');
  const ms = await app.cmd('POST', '/execute/async', {
    script: `const done = arguments[arguments.length - 1];
      const t0 = performance.now();
      document.querySelector('#conversation-list .conversation[data-id="${bigId}"]').click();
      const check = () => document.querySelector('#messages .message[data-seq="${10_000}"]')
        ? requestAnimationFrame(() => done(performance.now() - t0)) : requestAnimationFrame(check);
      requestAnimationFrame(check);`,
    args: [],
  });
  openTimes.push(ms);
  console.log(`open #${bigId}: ${ms.toFixed(1)} ms`);
}
const domNodes = await app.exec("return document.querySelectorAll('#messages .message').length;");

// The burst: watch frame gaps while 1,000 messages land in the open conversation.
await app.exec(`window.__gaps = { max: 0, last: performance.now(), frames: 0, on: true };
  const tick = (t) => { const g = window.__gaps; if (!g.on) return; g.max = Math.max(g.max, t - g.last); g.last = t; g.frames++; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);`);
const burstStart = performance.now();
seed.stdin.write('burst 1000\n');
await seedLine(/^burst-sent 1000/);
const sentMs = performance.now() - burstStart;
await until('the last burst message on screen', async () =>
  (await app.texts('#messages .message .text')).some((t) => t.includes('#999')), 60_000, 20);
const shownMs = performance.now() - burstStart;
const gaps = await app.exec('window.__gaps.on = false; return window.__gaps;');

const mem = memory(tree(appPid));
// And once the page has been idle a while (JavaScriptCore collects garbage lazily).
await new Promise((r) => setTimeout(r, 20_000));
const memIdle = memory(tree(appPid));
mappings(tree(appPid), 'idle after the burst');

console.log('\n== desktop app ==');
console.log(`cold start to a usable window: median ${median(startTimes).toFixed(0)} ms (${startTimes.map((t) => t.toFixed(0)).join(', ')})`);
console.log(`open a 10,000-message conversation: median ${median(openTimes).toFixed(1)} ms (${openTimes.map((t) => t.toFixed(1)).join(', ')}); ${domNodes} message nodes in the DOM`);
console.log(`burst of 1,000 incoming: server took them in ${sentMs.toFixed(0)} ms, last on screen after ${shownMs.toFixed(0)} ms; longest frame gap ${gaps.max.toFixed(0)} ms over ${gaps.frames} frames`);
console.log(`memory after start (list drawn): RSS ${memAtStart.rssMb.toFixed(0)} MB, PSS ${memAtStart.pssMb.toFixed(0)} MB (PSS: ${memAtStart.names.join(', ')})`);
console.log(`memory, all app processes, 20 s later, idle: RSS ${memIdle.rssMb.toFixed(0)} MB, PSS ${memIdle.pssMb.toFixed(0)} MB (PSS: ${memIdle.names.join(', ')})`);
console.log(`memory, all app processes, after the opens and the burst: RSS ${mem.rssMb.toFixed(0)} MB, PSS ${mem.pssMb.toFixed(0)} MB (PSS: ${mem.names.join(', ')})`);

await app.quit();
await stopProcess(driver.child);
seed.stdin.end();
await stopProcess(seed);
rmSync(scratch, { recursive: true, force: true });

// The UI's `invoke` calls checked against the commands the shell registers:
// a name the shell does not register, or an argument it does not take (or a
// required one left out), fails at run time only, in front of the user. This
// reads the sources themselves (src-tauri's `generate_handler!` list and each
// command's parameters, and every `invoke` in api.ts), so it fails as soon as
// either side changes alone.
import { describe, expect, it } from 'vitest';
import shellCommandsRs from '../../../../src-tauri/commands.rs?raw';
import noticesRs from '../../../../src-tauri/notices.rs?raw';
import desktopRs from '../../../../src-tauri/desktop.rs?raw';
import apiTs from './api.ts?raw';

/** Every file of the shell that declares commands. */
const commandsRs = `${shellCommandsRs}\n${noticesRs}`;

/** One command as the shell declares it: the arguments the UI passes (by their JSON names). */
type Command = { params: { key: string; optional: boolean }[] };

/** Parameters Tauri fills in itself; the UI never passes them. */
const INJECTED = /^(tauri::)?(State|AppHandle|Window|WebviewWindow|Webview|ipc::Request)\b/;

/** Splits `text` at commas outside any (), <> or []. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(' || c === '<' || c === '[') depth++;
    else if (c === ')' || c === '>' || c === ']') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

const camel = (snake: string) => snake.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Every `#[tauri::command]` function of a Rust source, by name. */
export function rustCommands(source: string): Map<string, Command> {
  const found = new Map<string, Command>();
  const head = /#\[tauri::command(\([^)]*\))?\]\s*pub\s+(?:async\s+)?fn\s+([a-z0-9_]+)\s*\(/g;
  for (let m = head.exec(source); m; m = head.exec(source)) {
    const snakeKeys = /rename_all\s*=\s*"snake_case"/.test(m[1] ?? '');
    // The parameter list ends at the parenthesis that closes the one `head` ended with.
    let depth = 1;
    let i = head.lastIndex;
    while (depth > 0 && i < source.length) {
      const c = source[i++];
      if (c === '(') depth++;
      else if (c === ')') depth--;
    }
    const params = splitTopLevel(source.slice(head.lastIndex, i - 1))
      .map((p) => {
        const colon = p.indexOf(':');
        return { name: p.slice(0, colon).trim().replace(/^mut\s+/, ''), type: p.slice(colon + 1).trim() };
      })
      .filter((p) => !INJECTED.test(p.type))
      .map((p) => ({ key: snakeKeys ? p.name : camel(p.name), optional: /^Option\s*</.test(p.type) }));
    found.set(m[2]!, { params });
  }
  return found;
}

/** The names in `generate_handler![...]`. */
export function registered(source: string): string[] {
  const list = /generate_handler!\[([^\]]*)\]/.exec(source);
  if (!list) return [];
  return splitTopLevel(list[1]!).map((path) => path.split('::').pop()!);
}

/** Every `invoke('name', { keys })` call: its name and the keys it passes (null: not an object literal). */
export function invokes(source: string): { name: string; keys: string[] | null }[] {
  const calls: { name: string; keys: string[] | null }[] = [];
  const call = /\binvoke\s*(?:<(?:[^()]|\([^()]*\))*?>)?\s*\(\s*'([^']*)'\s*(?:,\s*([^)]*?))?\s*\)/g;
  for (let m = call.exec(source); m; m = call.exec(source)) {
    const args = m[2]?.trim();
    let keys: string[] | null = [];
    if (args) {
      const literal = /^\{([^{}]*)\}$/.exec(args);
      keys = literal ? splitTopLevel(literal[1]!).map((entry) => entry.split(':')[0]!.trim()) : null;
    }
    calls.push({ name: m[1]!, keys });
  }
  return calls;
}

/** Every way the UI's calls and the shell's commands disagree, in sentences. */
export function mismatches(commands: string, desktop: string, api: string): string[] {
  const declared = rustCommands(commands);
  const names = registered(desktop);
  const calls = invokes(api);
  const problems: string[] = [];
  if (names.length === 0) problems.push('no generate_handler! list found');
  if (calls.length === 0) problems.push('no invoke calls found');
  for (const name of names) {
    if (!declared.has(name)) problems.push(`registered command ${name} is not a #[tauri::command] fn`);
    if (!calls.some((c) => c.name === name)) problems.push(`registered command ${name} is never invoked`);
  }
  for (const { name, keys } of calls) {
    const command = declared.get(name);
    if (!names.includes(name) || !command) {
      problems.push(`the UI invokes ${name}, which the shell does not register`);
      continue;
    }
    if (keys === null) {
      problems.push(`${name}: arguments are not an object literal, so they cannot be checked`);
      continue;
    }
    for (const key of keys) {
      if (!command.params.some((p) => p.key === key)) problems.push(`${name}: unknown argument ${key}`);
    }
    for (const p of command.params) {
      if (!p.optional && !keys.includes(p.key)) problems.push(`${name}: missing argument ${p.key}`);
    }
  }
  return problems;
}

describe('the UI and the shell agree on commands', () => {
  it('every invoke names a registered command with exactly its arguments', () => {
    expect(mismatches(commandsRs, desktopRs, apiTs)).toEqual([]);
    // The parse found the real thing, not an empty list on both sides.
    expect(registered(desktopRs).length).toBeGreaterThanOrEqual(30);
    expect(rustCommands(commandsRs).get('change_password')?.params.map((p) => p.key)).toEqual([
      'server',
      'account',
      'oldPassword',
      'newPassword',
      'fingerprint',
      'insecurePlaintext',
    ]);
  });

  it('no other UI module calls invoke, so api.ts is the whole surface', () => {
    const sources = import.meta.glob(['../**/*.ts', '../**/*.svelte', '!../**/*.test.ts'], {
      query: '?raw',
      import: 'default',
      eager: true,
    }) as Record<string, string>;
    expect(Object.keys(sources).length).toBeGreaterThan(10);
    const callers = Object.entries(sources)
      .filter(([, text]) => /@tauri-apps\/api\/core|\binvoke\s*[<(]/.test(text))
      .map(([path]) => path);
    expect(callers).toEqual(['./api.ts']);
  });

  it('finds a renamed command, a renamed argument, a missing one and an unregistered command', () => {
    const renamed = apiTs.replace("invoke<void>('mark_read'", "invoke<void>('mark_as_read'");
    expect(mismatches(commandsRs, desktopRs, renamed)).toEqual([
      'registered command mark_read is never invoked',
      'the UI invokes mark_as_read, which the shell does not register',
    ]);
    const snake = apiTs.replace("'mark_read', { conversationId, seq }", "'mark_read', { conversation_id: conversationId, seq }");
    expect(mismatches(commandsRs, desktopRs, snake)).toContain('mark_read: unknown argument conversation_id');
    expect(mismatches(commandsRs, desktopRs, snake)).toContain('mark_read: missing argument conversationId');
    const unregistered = desktopRs.replace('commands::recall,', '');
    expect(mismatches(commandsRs, unregistered, apiTs)).toEqual([
      'the UI invokes recall, which the shell does not register',
    ]);
    // An optional argument may be left out (Tauri passes None); a required one may not.
    const noConfirm = apiTs.replace('{ path, confirmed }', '{ path }');
    expect(mismatches(commandsRs, desktopRs, noConfirm)).toEqual([]);
  });
});

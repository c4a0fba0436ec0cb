// Helpers for the component tests: a stand-in for the shell (every command a
// vi.fn with a harmless default answer, events pushed with `emit`), sample
// data builders, and form input. Test files replace the api module with
//   vi.mock('./lib/api', async () => (await import('./lib/fake-api')).apiModule);
import { flushSync, tick } from 'svelte';
import type { AppEvent, ConversationView, Person } from './types';
import { DEFAULT_SETTINGS, nav, session } from './session.svelte';
import { bus, ME, resetApi } from './fake-api';

export { apiModule, bus, fakeApi, ME, msg, sessionState, transfer, type FakeApi } from './fake-api';
import { resetTransfers } from './transfers.svelte';
import { convos } from './convos.svelte';
import { clearDrafts } from './drafts';

/** Puts every command back to its default answer and clears the calls and shared state. */
export function resetFake(): void {
  resetApi();
  session.userId = ME;
  session.displayName = '我自己';
  session.account = 'me';
  session.server = 'tls://chat.example.com:7300';
  session.status = { state: 'online' };
  session.statusAt = Date.now();
  session.systemLocale = 'en-US';
  session.settings = { ...DEFAULT_SETTINGS };
  session.defaultDownloadDir = '/home/me/Downloads/Hutong';
  resetTransfers();
  nav.tab = 'chats';
  nav.conversationId = null;
  convos.list = [];
  convos.loaded = false;
  convos.error = '';
  clearDrafts();
  localStorage.clear();
}

/** Sends an event as the shell would; events go to whoever subscribed with onEvent, else straight to the bus. */
export async function emit(e: AppEvent): Promise<void> {
  if (bus.listener) bus.listener(e);
  else (await import('./events')).dispatch(e);
  await settle();
}

/** Lets pending promises, microtasks and Svelte updates finish (no timers). */
export async function settle(rounds = 6): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await Promise.resolve();
    await tick();
  }
  flushSync();
}

export function conv(over: Partial<ConversationView> = {}): ConversationView {
  return {
    id: 10,
    kind: 'direct',
    name: '李四',
    peerId: 2,
    lastSeq: 0,
    unread: 0,
    active: true,
    members: [ME, 2],
    lastText: null,
    lastSenderName: null,
    lastAtMs: null,
    pinned: false,
    muted: false,
    ...over,
  };
}

export function person(over: Partial<Person> = {}): Person {
  return {
    userId: 2,
    account: 'lisi',
    displayName: '李四',
    title: 'Engineer',
    departmentId: 5,
    departmentName: 'R&D',
    phone: '13800000000',
    email: 'lisi@example.com',
    presence: 'online',
    ...over,
  };
}

/** Types into a field the way a person would (value, then input and change events). */
export function type(el: Element | null, value: string): void {
  if (!(el instanceof HTMLInputElement || el instanceof HTMLSelectElement || el instanceof HTMLTextAreaElement)) {
    throw new Error(`not a form field: ${String(el)}`);
  }
  el.value = value;
  if (el instanceof HTMLTextAreaElement || el instanceof HTMLInputElement) el.setSelectionRange?.(value.length, value.length);
  el.dispatchEvent(new Event('input', { bubbles: true }));
  el.dispatchEvent(new Event('change', { bubbles: true }));
}

export function click(el: Element | null): void {
  if (!(el instanceof HTMLElement)) throw new Error(`not clickable: ${String(el)}`);
  el.click();
}

export function key(el: Element | null, init: KeyboardEventInit & { keyCode?: number }): KeyboardEvent {
  if (!el) throw new Error('no element for the key press');
  const e = new KeyboardEvent('keydown', { bubbles: true, cancelable: true, ...init });
  if (init.keyCode !== undefined) Object.defineProperty(e, 'keyCode', { value: init.keyCode });
  el.dispatchEvent(e);
  return e;
}

export function submit(form: Element | null): void {
  if (!(form instanceof HTMLFormElement)) throw new Error(`not a form: ${String(form)}`);
  form.dispatchEvent(new Event('submit', { bubbles: true, cancelable: true }));
}

/** A promise and the functions that settle it, for answers a test releases by hand. */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

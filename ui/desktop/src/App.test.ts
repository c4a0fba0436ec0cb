import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import App from './App.svelte';
import ConnectionBanner from './ConnectionBanner.svelte';
import { setLocale } from './lib/locale.svelte';
import { nav, session, setStatus } from './lib/session.svelte';
import { click, conv, emit, fakeApi, key, msg, person, resetFake, sessionState, settle, type } from './lib/testing';
import type { AppEvent } from './lib/types';

vi.mock('./lib/api', async () => (await import('./lib/fake-api')).apiModule);

beforeEach(() => {
  resetFake();
  setLocale('en');
});
afterEach(() => {
  document.body.innerHTML = '';
});

async function renderApp() {
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(App, { target });
  await settle();
  return { target, app };
}

const ids = (t: HTMLElement) => [...t.querySelectorAll('.conversation')].map((c) => Number(c.getAttribute('data-id')));

describe('App', () => {
  it('shows sign-in when nobody is signed in and reports ready once', async () => {
    fakeApi.sessionState.mockResolvedValue(
      sessionState({ signedIn: false, server: null, account: null, systemLocale: 'zh-CN', defaultServer: 'tls://corp.example:7300' }),
    );
    const { target, app } = await renderApp();
    expect(target.querySelector('#sign-in')?.textContent).toBe('登录');
    expect((target.querySelector('#server') as HTMLInputElement).value).toBe('tls://corp.example:7300');
    expect(fakeApi.uiReady).toHaveBeenCalledTimes(1);
    expect(fakeApi.onEvent).toHaveBeenCalledTimes(1);
    unmount(app);
  });

  it('goes straight to the main window, follows settings language and opens conversations on request', async () => {
    fakeApi.conversations.mockResolvedValue([conv({ id: 10, name: '李四' }), conv({ id: 11, name: 'Team', kind: 'group' })]);
    const { target, app } = await renderApp();
    expect(target.querySelector('#conversation-list')).not.toBeNull();
    expect(fakeApi.uiReady).toHaveBeenCalledTimes(1);
    expect(target.querySelector('#nav-chats')?.getAttribute('aria-label')).toBe('Chats');
    await emit({ event: 'openConversation', conversationId: 11 });
    expect(nav.conversationId).toBe(11);
    expect(target.querySelector('#chat .chat-name')?.textContent).toBe('Team');
    // Settings: switching the language applies at once.
    click(target.querySelector('#nav-settings'));
    await settle();
    fakeApi.saveSettings.mockImplementation(async (s) => s);
    type(target.querySelector('#setting-locale'), 'zh-CN');
    await settle();
    expect(fakeApi.saveSettings).toHaveBeenCalledWith(expect.objectContaining({ locale: 'zh-CN' }));
    expect(target.querySelector('#nav-chats')?.getAttribute('aria-label')).toBe('消息');
    expect(fakeApi.setFocus).toHaveBeenLastCalledWith(null);
    type(target.querySelector('#setting-theme'), 'dark');
    await settle();
    expect(document.documentElement.dataset.theme).toBe('dark');
    click(target.querySelector('#sign-out'));
    await settle();
    expect(fakeApi.signOut).toHaveBeenCalled();
    expect(target.querySelector('#sign-in')).not.toBeNull();
    unmount(app);
  });

  it('orders conversations, shows badges and previews, pins and mutes from the context menu, reloads on events', async () => {
    const today = new Date();
    today.setHours(9, 7, 0, 0);
    fakeApi.conversations.mockResolvedValue([
      conv({ id: 1, name: 'Old', lastAtMs: today.getTime() - 86_400_000, unread: 3 }),
      conv({ id: 2, name: 'New', lastAtMs: today.getTime(), unread: 150, kind: 'group', lastText: 'hi', lastSenderName: 'Ann' }),
      conv({ id: 3, name: 'Pinned', lastAtMs: 5, pinned: true }),
      conv({ id: 4, name: 'Muted', lastAtMs: 10, muted: true, unread: 4 }),
    ]);
    const { target, app } = await renderApp();
    expect(ids(target)).toEqual([3, 2, 1, 4]);
    const item = (id: number) => target.querySelector(`.conversation[data-id="${id}"]`) as HTMLElement;
    expect(item(2).querySelector('.unread')?.textContent).toBe('99+');
    expect(item(2).querySelector('.preview')?.textContent).toBe('Ann: hi');
    expect(item(2).querySelector('.time')?.textContent).toBe('09:07');
    expect(item(1).querySelector('.unread')?.textContent).toBe('3');
    expect(item(1).querySelector('.time')?.textContent).toBe('Yesterday');
    expect(item(4).querySelector('.unread.dot')?.textContent).toBe('');
    expect(item(4).querySelector('.muted-icon')).not.toBeNull();
    expect(item(3).querySelector('.unread')).toBeNull();

    item(1).dispatchEvent(new MouseEvent('contextmenu', { bubbles: true, cancelable: true, clientX: 10, clientY: 10 }));
    await settle();
    click(document.querySelector('.menu-pin'));
    await settle();
    expect(fakeApi.setPinned).toHaveBeenCalledWith(1, true);
    item(4).dispatchEvent(new MouseEvent('contextmenu', { bubbles: true, cancelable: true }));
    await settle();
    expect(document.querySelector('.menu-mute')?.textContent).toBe('Unmute');
    click(document.querySelector('.menu-mute'));
    await settle();
    expect(fakeApi.setMuted).toHaveBeenCalledWith(4, false);

    fakeApi.conversations.mockResolvedValue([conv({ id: 1, name: 'Old', pinned: true }), conv({ id: 2, name: 'New' })]);
    fakeApi.conversations.mockClear();
    await emit({ event: 'conversationsChanged' });
    await emit({ event: 'acked', clientMsgId: 'x', conversationId: 1, seq: 1 });
    expect(ids(target)).toEqual([1, 2]);
    unmount(app);
  });

  it('draws only the rows of a long conversation list that are in view', async () => {
    fakeApi.conversations.mockResolvedValue(
      Array.from({ length: 500 }, (_, i) => conv({ id: i + 1, name: `群 ${i + 1}`, lastAtMs: 1_000_000 - i })),
    );
    const { target, app } = await renderApp();
    const list = target.querySelector('#conversation-list') as HTMLElement;
    expect(list.getAttribute('role')).toBe('list');
    expect(list.getAttribute('data-count')).toBe('500');
    expect(ids(target)[0]).toBe(1);
    expect(ids(target).length).toBeGreaterThan(5);
    expect(ids(target).length).toBeLessThan(30);
    expect(target.querySelectorAll('#conversation-list [role="listitem"] .conversation')).toHaveLength(ids(target).length);
    // Scrolled to the end, the oldest conversations are drawn and the first are gone.
    list.scrollTop = 499 * 62;
    list.dispatchEvent(new Event('scroll'));
    await settle();
    expect(ids(target)).toContain(500);
    expect(ids(target)).not.toContain(1);
    expect(ids(target).length).toBeLessThan(30);
    // Rows drawn by the virtual list open their conversation and show which one is open.
    (target.querySelector('.conversation[data-id="499"]') as HTMLElement).click();
    await settle();
    (target.querySelector('.conversation[data-id="500"]') as HTMLElement).click();
    await settle();
    expect([...target.querySelectorAll('.conversation.selected')].map((e) => e.getAttribute('data-id'))).toEqual(['500']);
    unmount(app);
  });

  it('reloads the list once for a burst of events', async () => {
    const { app } = await renderApp();
    fakeApi.conversations.mockClear();
    const e: AppEvent = { event: 'messages', messages: [msg({ conversationId: 99 })] };
    const { bus } = await import('./lib/fake-api');
    bus.listener?.(e);
    bus.listener?.(e);
    bus.listener?.({ event: 'conversationsChanged' });
    await settle();
    expect(fakeApi.conversations).toHaveBeenCalledTimes(1);
    unmount(app);
  });

  it('keeps the draft of each conversation when switching', async () => {
    fakeApi.conversations.mockResolvedValue([conv({ id: 10, name: 'A' }), conv({ id: 11, name: 'B', peerId: 3 })]);
    const { target, app } = await renderApp();
    click(target.querySelector('.conversation[data-id="10"]'));
    await settle();
    type(target.querySelector('#composer'), 'draft for A');
    click(target.querySelector('.conversation[data-id="11"]'));
    await settle();
    expect((target.querySelector('#composer') as HTMLTextAreaElement).value).toBe('');
    type(target.querySelector('#composer'), 'draft for B');
    click(target.querySelector('.conversation[data-id="10"]'));
    await settle();
    expect((target.querySelector('#composer') as HTMLTextAreaElement).value).toBe('draft for A');
    expect(localStorage.getItem('hutong.draft.11')).toBe('draft for B');
    unmount(app);
  });

  it('searches globally with Ctrl+K and groups the hits, matches as text', async () => {
    fakeApi.search.mockResolvedValue({
      people: [person({ userId: 2, displayName: '李四' })],
      conversations: [conv({ id: 12, name: 'Design', kind: 'group' })],
      messages: [{ ...msg({ conversationId: 12, seq: 3, text: 'see <b>the</b> plan', senderName: 'Ann' }), conversationName: 'Design' }],
    });
    const { target, app } = await renderApp();
    key(document.body, { key: 'k', ctrlKey: true });
    await settle();
    const input = target.querySelector('#global-search') as HTMLInputElement;
    expect(document.activeElement).toBe(input);
    vi.useFakeTimers();
    type(input, 'plan');
    vi.advanceTimersByTime(300);
    vi.useRealTimers();
    await settle();
    expect(fakeApi.search).toHaveBeenCalledWith('plan');
    const results = target.querySelector('#search-results') as HTMLElement;
    expect([...results.querySelectorAll('h3')].map((h) => h.textContent)).toEqual(['People', 'Chats', 'Messages']);
    const hit = results.querySelector('.message-hit') as HTMLElement;
    expect(hit.querySelector('mark')?.textContent).toBe('plan');
    expect(hit.textContent).toContain('Ann: see <b>the</b> plan');
    expect(hit.querySelector('b')).toBeNull();
    click(hit);
    await settle();
    expect(nav.conversationId).toBe(12);
    expect(target.querySelector('#search-results')).toBeNull();
    unmount(app);
  });
});

describe('ConnectionBanner', () => {
  function renderBanner() {
    const target = document.body.appendChild(document.createElement('div'));
    const onSignInAgain = vi.fn();
    const app = mount(ConnectionBanner, { target, props: { onSignInAgain } });
    return { target, app, onSignInAgain };
  }
  const text = (t: HTMLElement) => t.querySelector('#connection-banner')?.textContent?.replace(/\s+/g, ' ').trim();

  it('is hidden online and explains every other state in both languages', async () => {
    const { target, app, onSignInAgain } = renderBanner();
    await settle();
    expect(target.querySelector('#connection-banner')).toBeNull();
    setStatus({ state: 'reconnecting', inMs: 5000, reason: 'connection reset' });
    await settle();
    expect(text(target)).toBe('Reconnecting in 5 s… connection reset');
    setLocale('zh-CN');
    await settle();
    expect(text(target)).toBe('正在重新连接，5 秒后重试… connection reset');
    setStatus({ state: 'connecting' });
    await settle();
    expect(text(target)).toBe('正在连接…');
    setStatus({ state: 'offline', code: 'NETWORK', reason: 'no route' });
    await settle();
    expect(text(target)).toBe('离线 — 消息将在恢复连接后发送 no route');
    expect(target.querySelector('#sign-in-again')).toBeNull();
    setLocale('en');
    setStatus({ state: 'offline', code: 'SESSION_REVOKED', reason: 'signed in elsewhere' });
    await settle();
    // Nothing goes out until the person signs in again: the banner says why instead.
    expect(text(target)).toBe('You were signed out (signed in elsewhere or revoked by an administrator) Sign in again');
    setLocale('zh-CN');
    setStatus({ state: 'offline', code: 'FINGERPRINT_CHANGED', reason: 'the server’s certificate changed' });
    await settle();
    expect(text(target)).toBe('服务器证书已变更，可能正遭受攻击，请联系管理员 重新登录');
    setLocale('en');
    click(target.querySelector('#sign-in-again'));
    expect(onSignInAgain).toHaveBeenCalled();
    unmount(app);
  });

  it('counts down each second', async () => {
    vi.useFakeTimers();
    try {
      const { target, app } = renderBanner();
      setStatus({ state: 'reconnecting', inMs: 3000, reason: '' });
      await settle();
      expect(text(target)).toBe('Reconnecting in 3 s…');
      vi.advanceTimersByTime(1000);
      await settle();
      expect(text(target)).toBe('Reconnecting in 2 s…');
      unmount(app);
    } finally {
      vi.useRealTimers();
    }
  });

  it('signs out and returns to sign-in from the banner', async () => {
    fakeApi.sessionState.mockResolvedValue(
      sessionState({ status: { state: 'offline', code: 'FINGERPRINT_CHANGED', reason: 'certificate changed' } }),
    );
    const { target, app } = await renderApp();
    expect(session.status.state).toBe('offline');
    click(target.querySelector('#sign-in-again'));
    await settle();
    expect(fakeApi.signOut).toHaveBeenCalled();
    expect(target.querySelector('#sign-in')).not.toBeNull();
    unmount(app);
  });
});

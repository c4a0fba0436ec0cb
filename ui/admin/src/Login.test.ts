import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import Login from './Login.svelte';
import { setLang } from './lib/locale.svelte';
import { fakeServer, json, submit, type } from './lib/testing';

afterEach(() => {
  vi.restoreAllMocks();
  document.body.innerHTML = '';
});

function render(onLoggedIn = vi.fn()) {
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(Login, { target, props: { onLoggedIn } });
  return { target, app, onLoggedIn };
}

describe('Login', () => {
  it('shows the localized sentence for wrong credentials and does not log in', async () => {
    setLang('zh');
    const calls = fakeServer({ 'POST /login': () => json(401, { code: 'BAD_CREDENTIALS', message: 'wrong account or password' }) });
    const { target, app, onLoggedIn } = render();
    type(target.querySelector('input[name=account]'), ' admin ');
    type(target.querySelector('input[name=password]'), 'nope-nope');
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(target.querySelector('[role=alert]')?.textContent).toBe('账号或密码错误'));
    expect(calls[0]?.body).toEqual({ account: 'admin', password: 'nope-nope' });
    expect(onLoggedIn).not.toHaveBeenCalled();
    unmount(app);
  });

  it('explains a disabled account, throttling and an unreachable server', async () => {
    setLang('en');
    const answers = [
      json(403, { code: 'ACCOUNT_DISABLED', message: 'account disabled' }),
      json(429, { code: 'RATE_LIMITED', message: 'slow down' }),
    ];
    vi.spyOn(globalThis, 'fetch').mockImplementation(async () => {
      const next = answers.shift();
      if (!next) throw new TypeError('Failed to fetch');
      return next;
    });
    const { target, app } = render();
    const alert = () => target.querySelector('[role=alert]')?.textContent;
    for (const expected of ['This account is disabled', 'Too many attempts; try again later', 'Cannot reach the server; check the network']) {
      submit(target.querySelector('form'));
      await vi.waitFor(() => expect(alert()).toBe(expected));
    }
    unmount(app);
  });

  it('never renders the server’s text as markup', async () => {
    setLang('en');
    fakeServer({ 'POST /login': () => json(418, { code: 'TEAPOT', message: '<img src=x onerror="alert(1)">' }) });
    const { target, app } = render();
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(target.querySelector('[role=alert]')?.textContent).toBe('<img src=x onerror="alert(1)">'));
    expect(target.querySelector('img')).toBeNull();
    unmount(app);
  });

  it('hands the profile, token and password over on success', async () => {
    setLang('en');
    const me = { id: 1, account: 'admin', display_name: 'Admin', roles: ['admin'], must_change_password: false };
    fakeServer({ 'POST /login': () => json(200, { token: 't0k', me }) });
    const { target, app, onLoggedIn } = render();
    expect(target.querySelector('h1')?.textContent).toBe('Sign in to the admin console');
    type(target.querySelector('input[name=account]'), 'admin');
    type(target.querySelector('input[name=password]'), 'secret-123');
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(onLoggedIn).toHaveBeenCalledWith(me, 't0k', 'secret-123'));
    flushSync();
    expect(target.querySelector('[role=alert]')).toBeNull();
    unmount(app);
  });
});

import { describe, expect, it, vi, afterEach } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import Login from './Login.svelte';
import { api } from './lib/api';
import { setLang } from './lib/locale.svelte';

afterEach(() => vi.restoreAllMocks());

async function settle() {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  flushSync();
}

describe('Login', () => {
  it('shows a localized error for wrong credentials and does not log in', async () => {
    setLang('zh');
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(
      new Response(JSON.stringify({ code: 'BAD_CREDENTIALS', message: 'wrong account or password' }), { status: 401 }),
    );
    const onLoggedIn = vi.fn();
    const target = document.createElement('div');
    const app = mount(Login, { target, props: { onLoggedIn } });
    (target.querySelector('input[name=account]') as HTMLInputElement).value = 'admin';
    target.querySelector('input[name=account]')?.dispatchEvent(new Event('input'));
    (target.querySelector('input[name=password]') as HTMLInputElement).value = 'nope-nope';
    target.querySelector('input[name=password]')?.dispatchEvent(new Event('input'));
    target.querySelector('form')?.dispatchEvent(new Event('submit', { cancelable: true }));
    await settle();
    await settle();
    expect(target.querySelector('[role=alert]')?.textContent).toBe('账号或密码错误');
    expect(onLoggedIn).not.toHaveBeenCalled();
    unmount(app);
  });

  it('hands the token and profile over on success', async () => {
    setLang('en');
    const me = { id: 1, account: 'admin', display_name: 'Admin', roles: ['admin'], must_change_password: false };
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(new Response(JSON.stringify({ token: 't0k', me }), { status: 200 }));
    const onLoggedIn = vi.fn();
    const target = document.createElement('div');
    const app = mount(Login, { target, props: { onLoggedIn } });
    expect(target.querySelector('h1')?.textContent).toBe('Sign in to the admin console');
    target.querySelector('form')?.dispatchEvent(new Event('submit', { cancelable: true }));
    await settle();
    await settle();
    expect(onLoggedIn).toHaveBeenCalledWith(me, 't0k');
    expect(api.token).toBeNull();
    unmount(app);
  });
});

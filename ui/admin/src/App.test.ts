import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import App from './App.svelte';
import { api } from './lib/api';
import { setLang } from './lib/locale.svelte';
import { button, click, fakeServer, json, submit, type } from './lib/testing';

const admin = { id: 1, account: 'admin', display_name: 'Administrator', roles: ['admin'], must_change_password: false };
const emptyDirectory = {
  'GET /departments': () => json(200, { departments: [] }),
  'GET /people': () => json(200, { people: [], total: 0 }),
};

beforeEach(() => {
  sessionStorage.clear();
  localStorage.clear();
  api.token = null;
});

afterEach(() => {
  vi.restoreAllMocks();
  document.body.innerHTML = '';
});

function render() {
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(App, { target });
  return { target, app };
}

async function signIn(target: HTMLElement, account = 'admin', password = 'admin-pass-1') {
  type(target.querySelector('input[name=account]'), account);
  type(target.querySelector('input[name=password]'), password);
  submit(target.querySelector('form'));
}

describe('App', () => {
  it('switches every text between Chinese and English and remembers the choice', async () => {
    setLang('zh');
    fakeServer({ 'POST /login': () => json(200, { token: 't', me: admin }), ...emptyDirectory });
    const { target, app } = render();
    expect(target.querySelector('h1')?.textContent).toBe('登录管理后台');
    click(target.querySelector('[data-testid=lang-en]'));
    flushSync();
    expect(target.querySelector('h1')?.textContent).toBe('Sign in to the admin console');
    expect(localStorage.getItem('hutong.admin.lang')).toBe('en');

    await signIn(target);
    await vi.waitFor(() => expect(target.querySelector('[data-testid=nav-directory]')?.textContent?.trim()).toBe('Directory'));
    click(target.querySelector('[data-testid=lang-zh]'));
    flushSync();
    expect(target.querySelector('[data-testid=nav-directory]')?.textContent?.trim()).toBe('组织架构');
    expect(target.querySelector('[data-testid=nav-import]')?.textContent?.trim()).toBe('导入导出');
    expect(document.documentElement.lang).toBe('zh-CN');
    unmount(app);
  });

  it('asks for a new password before anything else when the server requires it', async () => {
    setLang('en');
    let changed = false;
    const calls = fakeServer({
      'POST /login': () => json(200, { token: 'tok', me: { ...admin, must_change_password: true } }),
      'POST /me/password': () => {
        changed = true;
        return new Response(null, { status: 204 });
      },
      'GET /departments': () =>
        changed ? json(200, { departments: [] }) : json(403, { code: 'PASSWORD_CHANGE_REQUIRED', message: 'choose a new password first' }),
      'GET /people': () => json(200, { people: [], total: 0 }),
    });
    const { target, app } = render();
    await signIn(target, 'admin', 'one-time-pw');
    await vi.waitFor(() => expect(target.querySelector('[data-testid=change-password]')).not.toBeNull());
    expect(target.querySelector('nav')).toBeNull();
    // The current password was just typed, so it is not asked again.
    expect(target.querySelector('input[name=old_password]')).toBeNull();

    type(target.querySelector('input[name=new_password]'), 'brand-new-pw');
    type(target.querySelector('input[name=repeat]'), 'brand-new-px');
    submit(target.querySelector('form'));
    flushSync();
    expect(target.querySelector('[role=alert]')?.textContent).toBe('The new passwords do not match');

    type(target.querySelector('input[name=repeat]'), 'brand-new-pw');
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(target.querySelector('[data-testid=nav-directory]')).not.toBeNull());
    const change = calls.find((c) => c.path === '/me/password');
    expect(change?.body).toEqual({ old_password: 'one-time-pw', new_password: 'brand-new-pw' });
    expect(change?.headers['Authorization']).toBe('Bearer tok');
    unmount(app);
  });

  it('shows the screens a role allows, and "your role cannot do this" to anyone else', async () => {
    setLang('en');
    fakeServer({
      'POST /login': (call) => {
        const account = (call.body as { account: string }).account;
        const roles = account === 'auditor' ? ['auditor'] : ['staff'];
        return json(200, { token: account, me: { ...admin, account, roles } });
      },
      'GET /audit/log': () => json(200, { entries: [], total: 0 }),
      'POST /logout': () => new Response(null, { status: 204 }),
    });
    const { target, app } = render();
    await signIn(target, 'auditor');
    await vi.waitFor(() => expect(target.querySelector('[data-testid=nav-audit]')).not.toBeNull());
    expect([...target.querySelectorAll('nav button')].map((b) => b.textContent?.trim())).toEqual(['Audit search', 'Action log', 'Pending changes']);

    click(target.querySelector('[data-testid=logout]'));
    await vi.waitFor(() => expect(target.querySelector('input[name=account]')).not.toBeNull());
    await signIn(target, 'zhangsan');
    await vi.waitFor(() => expect(target.querySelector('[data-testid=forbidden]')?.textContent).toContain('Your role cannot do this'));
    unmount(app);
  });

  it('goes back to sign-in, saying why, when the session ends', async () => {
    setLang('zh');
    fakeServer({
      'POST /login': () => json(200, { token: 'tok', me: admin }),
      'GET /departments': () => json(401, { code: 'UNAUTHENTICATED', message: 'the session ended' }),
      'GET /people': () => json(401, { code: 'UNAUTHENTICATED', message: 'the session ended' }),
    });
    const { target, app } = render();
    await signIn(target);
    await vi.waitFor(() => expect(target.querySelector('[role=status]')?.textContent).toBe('登录已失效，请重新登录'));
    expect(target.querySelector('nav')).toBeNull();
    expect(sessionStorage.getItem('hutong.admin.token')).toBeNull();
    expect(api.token).toBeNull();
    unmount(app);
  });

  it('after a reload asks the current password too, and a wrong one is an error, not a sign-out', async () => {
    setLang('en');
    sessionStorage.setItem('hutong.admin.token', 'kept');
    fakeServer({
      'GET /me': () => json(200, { ...admin, must_change_password: true }),
      'POST /me/password': () => json(401, { code: 'BAD_CREDENTIALS', message: 'wrong account or password' }),
    });
    const { target, app } = render();
    await vi.waitFor(() => expect(target.querySelector('input[name=old_password]')).not.toBeNull());
    type(target.querySelector('input[name=old_password]'), 'not-it-at-all');
    type(target.querySelector('input[name=new_password]'), 'brand-new-pw');
    type(target.querySelector('input[name=repeat]'), 'brand-new-pw');
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(target.querySelector('[role=alert]')?.textContent).toBe('Wrong account or password'));
    expect(target.querySelector('[data-testid=change-password]')).not.toBeNull();
    expect(sessionStorage.getItem('hutong.admin.token')).toBe('kept');
    unmount(app);
  });

  it('warns on every page when the server does not encrypt the connection', async () => {
    setLang('en');
    fakeServer({ 'GET /health': () => json(200, { status: 'ok', tls: false }) });
    const { target, app } = render();
    await vi.waitFor(() =>
      expect(target.querySelector('[data-testid=insecure-banner]')?.textContent).toContain('not encrypted by Hutong'),
    );
    unmount(app);

    setLang('zh');
    fakeServer({ 'GET /health': () => json(200, { status: 'ok', tls: true }) });
    const secure = render();
    await vi.waitFor(() => expect(secure.target.querySelector('h1')?.textContent).toBe('登录管理后台'));
    await new Promise((r) => setTimeout(r, 0));
    expect(secure.target.querySelector('[data-testid=insecure-banner]')).toBeNull();
    unmount(secure.app);
  });

  it('keeps the session across a reload', async () => {
    setLang('en');
    sessionStorage.setItem('hutong.admin.token', 'kept');
    const calls = fakeServer({ 'GET /me': () => json(200, admin), ...emptyDirectory });
    const { target, app } = render();
    await vi.waitFor(() => expect(target.querySelector('[data-testid=who]')?.textContent).toContain('Administrator'));
    expect(calls.find((c) => c.path === '/me')?.headers['Authorization']).toBe('Bearer kept');
    expect(() => button(target, 'Sign out')).not.toThrow();
    unmount(app);
  });
});

import { afterEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import Apps from './Apps.svelte';
import type { App, AppEvent } from './lib/api';
import { setLang } from './lib/locale.svelte';
import { button, click, fakeServer, json, submit, type } from './lib/testing';

afterEach(() => {
  vi.restoreAllMocks();
  document.body.innerHTML = '';
});

const app: App = {
  id: 3,
  name: '审批系统',
  avatar_url: '',
  scopes: ['messages:send'],
  allowed_cidrs: ['10.0.0.0/8'],
  callback_url: 'http://oa/events',
  client_id: 'app_0011',
  bot_user_id: 9,
  disabled: false,
  created_at: 0,
  updated_at: 0,
};

describe('Apps', () => {
  it('creates an application and shows its secrets once', async () => {
    setLang('en');
    let list: App[] = [];
    const calls = fakeServer({
      'GET /apps': () => json(200, { apps: list }),
      'POST /apps': () => {
        list = [app];
        return json(201, { app, client_id: 'app_0011', client_secret: 's3cr3t', signing_secret: 'sign1' });
      },
    });
    const target = document.body.appendChild(document.createElement('div'));
    const page = mount(Apps, { target });
    await vi.waitFor(() => expect(target.textContent).toContain('No applications'));
    click(button(target, 'New application'));
    await vi.waitFor(() => expect(document.querySelector('[data-testid=new-app]')).not.toBeNull());
    type(document.querySelector('input[name=name]'), '审批系统');
    type(document.querySelector('textarea[name=cidrs]'), '10.0.0.0/8\n\n');
    submit(document.querySelector('[data-testid=new-app] form'));
    await vi.waitFor(() => expect(document.querySelector('[data-testid=app-secrets]')).not.toBeNull());
    expect((document.querySelector('[data-testid=client-secret]') as HTMLInputElement).value).toBe('s3cr3t');
    const sent = calls.find((c) => c.method === 'POST' && c.path === '/apps')?.body;
    expect(sent).toEqual({ name: '审批系统', scopes: ['messages:send'], allowed_cidrs: ['10.0.0.0/8'], callback_url: '' });
    click(button(document.body, 'OK'));
    await vi.waitFor(() => expect(document.querySelector('[data-testid=app-secrets]')).toBeNull());
    expect(document.body.textContent).not.toContain('s3cr3t');
    expect(target.querySelector('[data-testid=app-3]')?.textContent).toContain('app_0011');
    unmount(page);
  });

  it('shows event deliveries with their last error (in Chinese)', async () => {
    setLang('zh');
    const event: AppEvent = {
      id: 1,
      app_id: 3,
      kind: 'message.received',
      created_at: 0,
      state: 'pending',
      attempts: 2,
      next_attempt_at: 0,
      last_error: 'HTTP 500',
      delivered_at: null,
    };
    fakeServer({
      'GET /apps': () => json(200, { apps: [app] }),
      'GET /apps/3/events': () => json(200, { events: [event] }),
    });
    const target = document.body.appendChild(document.createElement('div'));
    const page = mount(Apps, { target });
    await vi.waitFor(() => expect(target.querySelector('[data-testid=app-3]')).not.toBeNull());
    click(button(target, '事件投递'));
    await vi.waitFor(() => expect(target.querySelector('[data-testid=event-1]')?.textContent).toContain('HTTP 500'));
    expect(target.querySelector('[data-testid=event-1]')?.textContent).toContain('等待重试');
    unmount(page);
  });
});

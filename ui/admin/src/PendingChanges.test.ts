import { afterEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import PendingChanges from './PendingChanges.svelte';
import type { Me, PendingChange } from './lib/api';
import { setLang } from './lib/locale.svelte';
import { button, click, fakeServer, json } from './lib/testing';

afterEach(() => {
  vi.restoreAllMocks();
  document.body.innerHTML = '';
});

const me = (id: number, roles: Me['roles']): Me => ({
  id,
  account: `u${id}`,
  display_name: `U${id}`,
  roles,
  must_change_password: false,
  second_factor: 'done',
  totp_enrolled: false,
});

const change: PendingChange = {
  id: 7,
  kind: 'person.roles',
  target: 'admin',
  detail: { id: 1, roles: ['admin', 'auditor'] },
  requested_by: 1,
  requested_at_ms: 0,
  state: 'pending',
  decided_by: null,
};

describe('PendingChanges', () => {
  it('lets an auditor who did not ask confirm a change', async () => {
    setLang('en');
    let state: PendingChange['state'] = 'pending';
    const calls = fakeServer({
      'GET /pending-changes': () => json(200, { changes: [{ ...change, state }] }),
      'POST /pending-changes/7/confirm': () => {
        state = 'confirmed';
        return json(200, { change: { ...change, state } });
      },
    });
    const target = document.body.appendChild(document.createElement('div'));
    const app = mount(PendingChanges, { target, props: { me: me(2, ['auditor']) } });
    await vi.waitFor(() => expect(target.querySelector('[data-testid=change-7]')?.textContent).toContain('admin, auditor'));
    click(button(target, 'Confirm'));
    await vi.waitFor(() => expect(target.querySelector('[data-testid=change-7]')?.textContent).toContain('Confirmed'));
    expect(calls.some((c) => c.method === 'POST' && c.path === '/pending-changes/7/confirm')).toBe(true);
    unmount(app);
  });

  it('offers the requester only a withdrawal (in Chinese)', async () => {
    setLang('zh');
    fakeServer({ 'GET /pending-changes': () => json(200, { changes: [change] }) });
    const target = document.body.appendChild(document.createElement('div'));
    const app = mount(PendingChanges, { target, props: { me: me(1, ['admin', 'auditor']) } });
    await vi.waitFor(() => expect(target.querySelector('[data-testid=change-7]')).not.toBeNull());
    const labels = [...target.querySelectorAll('[data-testid=change-7] button')].map((b) => b.textContent);
    expect(labels).toEqual(['撤回']);
    unmount(app);
  });
});

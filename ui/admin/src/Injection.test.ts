// 328 script-injection payloads (tests/corpus/injection.mjs) as department
// names and people's names, accounts and titles, rendered by the console's
// own directory page: each must arrive as the same text, and nothing in the
// page may carry an event handler or a javascript: URL, or have more
// elements than the same page with harmless names.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import Directory from './Directory.svelte';
import { setLang } from './lib/locale.svelte';
import { click, fakeServer, json } from './lib/testing';
import type { Department, Person } from './lib/api';
import { dangers, payloads, shape } from '../../../tests/corpus/injection.mjs';

const corpus = payloads();
const pwned = vi.fn();

beforeEach(() => {
  setLang('zh');
  (globalThis as unknown as { __pwned: unknown }).__pwned = pwned;
});
afterEach(() => {
  vi.restoreAllMocks();
  document.body.innerHTML = '';
});

/** The directory with the root's departments and people named by `name(i)`. */
async function render(name: (i: number) => string) {
  const departments: Department[] = [
    { id: 1, parent_id: null, name: '胡同科技', sort_order: 0, hidden: false, member_count: corpus.length },
    ...corpus.map((_, i) => ({ id: 10 + i, parent_id: 1, name: name(i), sort_order: i, hidden: false, member_count: 0 })),
  ];
  const people: Person[] = corpus.map((_, i) => ({
    id: 1000 + i,
    account: `p${i}`,
    display_name: name(i),
    employee_no: '',
    title: name(i),
    phone: '',
    email: '',
    avatar: '',
    primary_department_id: 1,
    department_ids: [],
    manager_id: null,
    status: 'active',
    roles: ['staff'],
    online: false,
  }));
  fakeServer({
    'GET /departments': () => json(200, { departments }),
    'GET /people': () => json(200, { people, total: people.length }),
  });
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(Directory, { target });
  await vi.waitFor(() => expect(target.querySelectorAll('.tree-row .dept-name').length).toBe(corpus.length + 1));
  click(target.querySelector('[data-testid="dept-胡同科技"]'));
  await vi.waitFor(() => expect(target.querySelector('[data-testid=person-p0]')).not.toBeNull());
  return { target, done: () => unmount(app) };
}

describe('script-injection payloads render as inert text in the console', () => {
  it('in department names and people’s names and titles', async () => {
    expect(corpus.length).toBeGreaterThanOrEqual(300);
    const benign = await render((i) => `部门${i}`);
    const expected = shape(benign.target);
    benign.done();
    document.body.innerHTML = '';
    const { target, done } = await render((i) => corpus[i] ?? '');
    expect(dangers(target)).toEqual([]);
    expect(shape(target)).toEqual(expected);
    const depts = [...target.querySelectorAll('.tree-row .dept-name')].map((e) => e.textContent);
    for (const p of corpus) expect(depts).toContain(p);
    const rows = [...target.querySelectorAll('[data-testid^=person-p]')];
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      const i = Number(row.getAttribute('data-testid')!.slice('person-p'.length));
      expect(row.textContent).toContain(corpus[i]);
    }
    done();
    expect(pwned).not.toHaveBeenCalled();
    // Two full renders of 300+ departments: more than the default 5 s on a
    // loaded 2-core machine; this checks safety, not speed.
  }, 30_000);
});

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import Directory from './Directory.svelte';
import Dialogs from './Dialogs.svelte';
import { setLang } from './lib/locale.svelte';
import { click, fakeServer, json, submit, type } from './lib/testing';
import type { Department, Person } from './lib/api';

const dept = (id: number, parent_id: number | null, name: string, sort_order: number, member_count = 0): Department => ({
  id,
  parent_id,
  name,
  sort_order,
  hidden: false,
  member_count,
});
const person = (id: number, account: string, display_name: string, primary: number): Person => ({
  id,
  account,
  display_name,
  employee_no: '',
  title: '工程师',
  phone: '',
  email: '',
  avatar: '',
  primary_department_id: primary,
  department_ids: [],
  manager_id: null,
  status: 'active',
  roles: ['staff'],
  online: false,
});

let departments: Department[] = [];
beforeEach(() => {
  setLang('zh');
  departments = [dept(3, 1, '产品部', 20), dept(1, null, '胡同科技', 10, 1), dept(2, 1, '研发中心', 10, 1), dept(4, 2, '前端组', 10)];
});
afterEach(() => {
  vi.restoreAllMocks();
  document.body.innerHTML = '';
});

function render() {
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(Directory, { target });
  const dialogs = mount(Dialogs, { target: document.body.appendChild(document.createElement('div')) });
  return {
    target,
    done: () => {
      unmount(app);
      unmount(dialogs);
    },
  };
}

const rowNames = (target: HTMLElement) => [...target.querySelectorAll('.tree-row .dept-name')].map((e) => e.textContent);

describe('Directory', () => {
  it('shows the tree in sibling order, expands on demand and lists the selected department’s people', async () => {
    const calls = fakeServer({
      'GET /departments': () => json(200, { departments }),
      'GET /people': (call) =>
        json(200, call.path.includes('department_id=2') ? { people: [person(5, 'wangfang', '王芳', 2)], total: 1 } : { people: [], total: 0 }),
    });
    const { target, done } = render();
    // Top level expanded at first; 前端组 is inside the collapsed 研发中心.
    await vi.waitFor(() => expect(rowNames(target)).toEqual(['胡同科技', '研发中心', '产品部']));
    click(target.querySelector('[data-testid="dept-研发中心"] .twisty'));
    flushSync();
    expect(rowNames(target)).toEqual(['胡同科技', '研发中心', '前端组', '产品部']);

    click(target.querySelector('[data-testid="dept-研发中心"]'));
    await vi.waitFor(() => expect(target.querySelector('[data-testid=person-wangfang]')?.textContent).toContain('王芳'));
    expect(target.querySelector('[data-testid=current-department]')?.textContent).toBe('研发中心');
    expect(calls.some((c) => c.path.startsWith('/people?department_id=2&'))).toBe(true);
    done();
  });

  it('offers delete only for an empty department and asks before deleting', async () => {
    const calls = fakeServer({
      'GET /departments': () => json(200, { departments }),
      'GET /people': () => json(200, { people: [], total: 0 }),
      'DELETE /departments/4': () => {
        departments = departments.filter((d) => d.id !== 4);
        return new Response(null, { status: 204 });
      },
    });
    const { target, done } = render();
    await vi.waitFor(() => expect(rowNames(target)).toContain('研发中心'));
    click(target.querySelector('[data-testid="dept-研发中心"]'));
    flushSync();
    expect((target.querySelector('[data-testid=delete-department]') as HTMLButtonElement).disabled).toBe(true);

    click(target.querySelector('[data-testid="dept-研发中心"] .twisty'));
    flushSync();
    click(target.querySelector('[data-testid="dept-前端组"]'));
    flushSync();
    const del = target.querySelector('[data-testid=delete-department]') as HTMLButtonElement;
    expect(del.disabled).toBe(false);
    click(del);
    flushSync();
    expect(document.querySelector('[data-testid=dialog]')?.textContent).toContain('确定删除部门“\u2068前端组\u2069”？');
    // Cancelling sends nothing.
    click([...document.querySelectorAll('[data-testid=dialog] button')].find((b) => b.textContent === '取消') ?? null);
    flushSync();
    expect(calls.some((c) => c.method === 'DELETE')).toBe(false);

    click(del);
    flushSync();
    click(document.querySelector('[data-testid=dialog-ok]'));
    await vi.waitFor(() => expect(rowNames(target)).not.toContain('前端组'));
    expect(calls.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual(['/departments/4']);
    done();
  });

  it('creates a sub-department under the selected one', async () => {
    const calls = fakeServer({
      'GET /departments': () => json(200, { departments }),
      'GET /people': () => json(200, { people: [], total: 0 }),
      'POST /departments': (call) => {
        const body = call.body as { name: string; parent_id: number | null };
        const created = dept(9, body.parent_id, body.name, 30);
        departments = [...departments, created];
        return json(201, created);
      },
    });
    const { target, done } = render();
    await vi.waitFor(() => expect(rowNames(target)).toContain('产品部'));
    click(target.querySelector('[data-testid="dept-产品部"]'));
    flushSync();
    click(target.querySelector('[data-testid=new-child-department]'));
    flushSync();
    type(document.querySelector('input[name=dialog-value]'), '  设计组 ');
    submit(document.querySelector('[data-testid=dialog] form'));
    await vi.waitFor(() => expect(target.querySelector('[data-testid=current-department]')?.textContent).toBe('设计组'));
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ name: '设计组', parent_id: 3 });
    expect(rowNames(target)).toEqual(['胡同科技', '研发中心', '产品部', '设计组']);
    done();
  });

  it('shows "your role cannot do this" when the server answers 403', async () => {
    const calls = fakeServer({ 'GET /departments': () => json(403, { code: 'FORBIDDEN', message: 'needs the admin role' }) });
    const { target, done } = render();
    await vi.waitFor(() => expect(target.querySelector('[data-testid=forbidden]')?.textContent).toContain('您的角色无权执行此操作'));
    expect(target.querySelector('table')).toBeNull();
    expect(calls.map((c) => c.path)).toEqual(['/departments']);
    done();
  });

  it('shows the generated one-time password once after creating a person without one', async () => {
    fakeServer({
      'GET /departments': () => json(200, { departments }),
      'GET /people': () => json(200, { people: [], total: 0 }),
      'POST /people': (call) => {
        const body = call.body as { account: string; display_name: string };
        return json(201, { person: person(11, body.account, body.display_name, 1), initial_password: 'Xy7-kq2-Mn4' });
      },
    });
    const { target, done } = render();
    await vi.waitFor(() => expect(rowNames(target)).toContain('产品部'));
    click(target.querySelector('[data-testid=add-person]'));
    flushSync();
    type(document.querySelector('[data-testid=person-form] input[name=account]'), 'zhaoliu');
    type(document.querySelector('[data-testid=person-form] input[name=display_name]'), '赵六');
    submit(document.querySelector('[data-testid=person-form] form'));
    await vi.waitFor(() => expect((document.querySelector('[data-testid=one-time-password-value]') as HTMLInputElement | null)?.value).toBe('Xy7-kq2-Mn4'));
    expect(document.querySelector('[data-testid=person-form]')).toBeNull();
    click([...document.querySelectorAll('[data-testid=one-time-password] button')].find((b) => b.textContent?.includes('我已记下')) ?? null);
    flushSync();
    expect(document.querySelector('[data-testid=one-time-password]')).toBeNull();
    done();
  });
});

import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, tick, unmount } from 'svelte';
import PersonForm from './PersonForm.svelte';
import { setLang } from './lib/locale.svelte';
import { click, submit, type } from './lib/testing';
import type { Department, Person } from './lib/api';

afterEach(() => {
  document.body.innerHTML = '';
});

const dept = (id: number, parent_id: number | null, name: string): Department => ({ id, parent_id, name, sort_order: id, hidden: false, member_count: 0 });
const departments = [dept(1, null, '总部'), dept(2, 1, '研发中心'), dept(3, 1, '产品部')];

function render(person: Person | null, managerAccount = '') {
  const onSave = vi.fn();
  const onCancel = vi.fn();
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(PersonForm, { target, props: { person, managerAccount, departments, defaultDepartment: 2, error: '', onSave, onCancel } });
  const field = (name: string) => target.querySelector(`[name="${name}"]`);
  return { target, app, onSave, onCancel, field };
}

describe('PersonForm', () => {
  it('shows every field error next to its field and does not save', () => {
    setLang('zh');
    const { target, app, onSave, field } = render(null);
    type(field('account'), '张三');
    type(field('password'), 'short');
    type(field('email'), 'not-an-email');
    submit(target.querySelector('form'));
    flushSync();
    expect(target.querySelector('[data-testid=error-account]')?.textContent).toBe('账号为 1 到 64 位字母、数字、点、下划线或连字符');
    expect(target.querySelector('[data-testid=error-display_name]')?.textContent).toBe('请填写姓名');
    expect(target.querySelector('[data-testid=error-password]')?.textContent).toBe('密码至少 8 位');
    expect(target.querySelector('[data-testid=error-email]')?.textContent).toBe('邮箱格式不正确');
    expect(onSave).not.toHaveBeenCalled();

    // Fixing the fields clears the errors and saves.
    type(field('account'), 'zhangsan');
    type(field('display_name'), '张三');
    type(field('password'), 'long-enough-1');
    type(field('email'), 'zhangsan@example.com');
    submit(target.querySelector('form'));
    flushSync();
    expect(target.querySelectorAll('.field-error')).toHaveLength(0);
    expect(onSave).toHaveBeenCalledTimes(1);
    unmount(app);
  });

  it('sends a new person with the selected department, roles and manager', async () => {
    setLang('en');
    const { target, app, onSave, field } = render(null);
    await tick();
    expect((field('primary') as HTMLSelectElement).selectedOptions[0]?.textContent).toBe('总部 / 研发中心');
    type(field('account'), ' wangfang ');
    type(field('display_name'), ' 王芳 ');
    type(field('title'), '测试工程师');
    type(field('manager'), 'lisi');
    click(field('role-auditor'));
    // A further department; the primary one is not offered there.
    const further = target.querySelector('[data-testid=further-departments]');
    expect(further?.textContent).not.toContain('总部 / 研发中心');
    const productBox = [...(further?.querySelectorAll('label') ?? [])].find((l) => l.textContent === '总部 / 产品部')?.querySelector('input');
    click(productBox ?? null);
    submit(target.querySelector('form'));
    expect(onSave).toHaveBeenCalledWith(
      {
        account: 'wangfang',
        display_name: '王芳',
        employee_no: '',
        title: '测试工程师',
        phone: '',
        email: '',
        primary_department_id: 2,
        department_ids: [3],
        roles: ['auditor'],
      },
      'lisi',
    );
    unmount(app);
  });

  it('edits a person: no account or password change, current values kept', () => {
    setLang('en');
    const person: Person = {
      id: 7,
      account: 'lisi',
      display_name: '李四',
      employee_no: 'E7',
      title: '经理',
      phone: '13800000000',
      email: 'lisi@example.com',
      avatar: '',
      primary_department_id: 3,
      department_ids: [2],
      manager_id: 9,
      status: 'active',
      roles: ['admin', 'staff'],
      online: false,
    };
    const { target, app, onSave, field } = render(person, 'boss');
    expect((field('account') as HTMLInputElement).disabled).toBe(true);
    expect(field('password')).toBeNull();
    expect((field('manager') as HTMLInputElement).value).toBe('boss');
    type(field('title'), '总监');
    submit(target.querySelector('form'));
    expect(onSave).toHaveBeenCalledWith(
      expect.objectContaining({ display_name: '李四', title: '总监', primary_department_id: 3, department_ids: [2], roles: ['admin'] }),
      'boss',
    );
    expect(onSave.mock.calls[0]?.[0]).not.toHaveProperty('account');
    unmount(app);
  });

  it('shows the server’s refusal and cancels', () => {
    setLang('en');
    const onCancel = vi.fn();
    const target = document.body.appendChild(document.createElement('div'));
    const app = mount(PersonForm, {
      target,
      props: { person: null, departments, defaultDepartment: null, error: 'Conflict: the account "wangfang" exists', onSave: vi.fn(), onCancel },
    });
    expect(target.querySelector('[role=alert]')?.textContent).toBe('Conflict: the account "wangfang" exists');
    click([...target.querySelectorAll('button')].find((b) => b.textContent === 'Cancel') ?? null);
    expect(onCancel).toHaveBeenCalled();
    unmount(app);
  });
});

import { describe, expect, it } from 'vitest';
import { defaultLang, errorText, translate } from './i18n';
import { validatePerson } from './validate';

describe('i18n', () => {
  it('translates with parameters in both languages', () => {
    expect(translate('zh', 'dir.confirmDelete', { name: '研发部' })).toBe('确定删除部门“研发部”？');
    expect(translate('en', 'dir.confirmDelete', { name: 'R&D' })).toBe('Delete the department “R&D”?');
  });

  it('follows the browser language', () => {
    expect(defaultLang(['zh-CN', 'en'])).toBe('zh');
    expect(defaultLang(['en-US'])).toBe('en');
    expect(defaultLang([])).toBe('zh');
  });

  it('explains error codes, keeping server detail for input errors', () => {
    expect(errorText('zh', 'FORBIDDEN', 'your role does not allow this')).toBe('您的角色无权执行此操作');
    expect(errorText('en', 'BAD_REQUEST', 'name is required')).toBe('Invalid input: name is required');
    expect(errorText('en', 'SOMETHING_NEW', 'as sent')).toBe('as sent');
  });
});

describe('person form checks', () => {
  it('flags what the server would refuse', () => {
    expect(validatePerson({ account: 'bad name', display_name: '', email: 'x', password: 'short' }, true)).toEqual({
      account: 'form.err.account',
      display_name: 'form.err.name',
      password: 'form.err.password',
      email: 'form.err.email',
    });
    expect(validatePerson({ account: 'zhang.san', display_name: '张三', email: 'z@a.cn', password: '' }, true)).toEqual({});
    expect(validatePerson({ display_name: '张三' }, false)).toEqual({});
  });
});

import { describe, expect, it } from 'vitest';
import { defaultLang, errorText, translate } from './i18n';
import { explain, locale, setLang, t } from './locale.svelte';
import { ApiError } from './api';

describe('i18n', () => {
  it('translates with parameters in both languages', () => {
    expect(translate('zh', 'dir.confirmDelete', { name: '研发部' })).toBe('确定删除部门“\u2068研发部\u2069”？此操作不可撤销。');
    expect(translate('en', 'dir.confirmDelete', { name: 'R&D' })).toBe('Delete the department “\u2068R&D\u2069”? This cannot be undone.');
    expect(translate('en', 'people.total', {})).toBe('{n} people');
  });

  it('isolates text parameters, so a right-to-left override in a name stays inside it', () => {
    const name = 'invoice\u202Efdp.exe';
    const sentence = translate('en', 'dir.confirmDelete', { name });
    expect(sentence).toContain(`\u2068${name}\u2069`);
    // The override is closed by the PDI before the rest of the sentence.
    expect(sentence.indexOf('\u2069')).toBeLessThan(sentence.indexOf('This cannot be undone'));
    expect(translate('en', 'people.total', { n: 3 })).toBe('3 people');
  });

  it('follows the browser language', () => {
    expect(defaultLang(['zh-CN', 'en'])).toBe('zh');
    expect(defaultLang(['zh-TW'])).toBe('zh');
    expect(defaultLang(['en-US', 'zh-CN'])).toBe('en');
    expect(defaultLang(['de'])).toBe('en');
    expect(defaultLang([])).toBe('zh');
  });

  it('explains error codes, keeping the server’s detail where it says what to fix', () => {
    expect(errorText('zh', 'FORBIDDEN', 'your role does not allow this')).toBe('您的角色无权执行此操作');
    expect(errorText('en', 'BAD_CREDENTIALS', 'wrong account or password')).toBe('Wrong account or password');
    expect(errorText('en', 'BAD_REQUEST', 'name is required')).toBe('Invalid input: name is required');
    expect(errorText('zh', 'CONFLICT', 'account taken')).toBe('操作冲突：account taken');
    expect(errorText('en', 'UNKNOWN', 'as sent')).toBe('as sent');
  });

  it('switches language for everything that reads it, and remembers the choice', () => {
    setLang('zh');
    expect(t('nav.directory')).toBe('组织架构');
    expect(explain(new ApiError(403, 'FORBIDDEN', 'x'))).toBe('您的角色无权执行此操作');
    expect(document.documentElement.lang).toBe('zh-CN');
    setLang('en');
    expect(locale.lang).toBe('en');
    expect(t('nav.directory')).toBe('Directory');
    expect(explain(new ApiError(403, 'FORBIDDEN', 'x'))).toBe('Your role cannot do this');
    expect(document.documentElement.lang).toBe('en');
    expect(localStorage.getItem('hutong.admin.lang')).toBe('en');
  });
});

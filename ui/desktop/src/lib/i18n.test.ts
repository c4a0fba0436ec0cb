import { describe, expect, it } from 'vitest';
import { errorText, resolveLocale, tables, translate } from './i18n';
import { explain, setLocale, t } from './locale.svelte';

describe('i18n', () => {
  it('has the same keys in both languages and no empty text', () => {
    const zh = Object.keys(tables['zh-CN']).sort();
    const en = Object.keys(tables.en).sort();
    expect(zh).toEqual(en);
    for (const table of Object.values(tables)) for (const [k, v] of Object.entries(table)) expect(v.trim(), k).not.toBe('');
    // Parameters match too.
    for (const k of en) {
      const names = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
      expect(names(tables['zh-CN'][k as keyof typeof tables.en]), k).toEqual(names(tables.en[k as keyof typeof tables.en]));
    }
  });

  it('translates with parameters and follows the system for auto', () => {
    expect(translate('zh-CN', 'banner.reconnecting', { n: 5 })).toBe('正在重新连接，5 秒后重试…');
    expect(translate('en', 'msg.readBy', { n: 3 })).toBe('3 read');
    expect(resolveLocale('auto', 'zh-TW')).toBe('zh-CN');
    expect(resolveLocale('auto', 'en-US')).toBe('en');
    expect(resolveLocale('auto', 'de')).toBe('en');
    expect(resolveLocale('en', 'zh-CN')).toBe('en');
  });

  it('explains error codes, falling back to the shell’s message', () => {
    expect(errorText('zh-CN', 'BAD_CREDENTIALS', 'x')).toBe('账号或密码错误');
    expect(errorText('en', 'WHATEVER', 'as sent')).toBe('as sent');
    setLocale('en');
    expect(explain({ code: 'RATE_LIMITED', message: 'slow' })).toBe('Too many attempts; try again later');
    expect(explain(new Error('boom'))).toBe('boom');
    setLocale('zh-CN');
    expect(t('nav.contacts')).toBe('通讯录');
    expect(document.documentElement.lang).toBe('zh-CN');
  });
});

// The chosen language, shared by every component; remembered in the browser.
import { defaultLang, errorText, translate, type Key, type Lang } from './i18n';
import { ApiError } from './api';

function initial(): Lang {
  const saved = typeof localStorage !== 'undefined' ? localStorage.getItem('hutong.lang') : null;
  if (saved === 'zh' || saved === 'en') return saved;
  return defaultLang(typeof navigator !== 'undefined' ? navigator.languages : ['zh-CN']);
}

export const locale = $state<{ lang: Lang }>({ lang: initial() });

export function setLang(lang: Lang): void {
  locale.lang = lang;
  if (typeof localStorage !== 'undefined') localStorage.setItem('hutong.lang', lang);
  if (typeof document !== 'undefined') document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

export function t(key: Key, params: Record<string, string | number> = {}): string {
  return translate(locale.lang, key, params);
}

export function explain(e: unknown): string {
  if (e instanceof ApiError) return errorText(locale.lang, e.code, e.message);
  return e instanceof Error ? e.message : String(e);
}

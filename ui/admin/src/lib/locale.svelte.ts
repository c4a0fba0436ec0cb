// The chosen language, shared by every component; remembered in the browser.
import { defaultLang, errorText, translate, type Key, type Lang } from './i18n';
import { ApiError } from './api';

const STORAGE_KEY = 'hutong.admin.lang';

function initial(): Lang {
  const saved = typeof localStorage !== 'undefined' ? localStorage.getItem(STORAGE_KEY) : null;
  if (saved === 'zh' || saved === 'en') return saved;
  return defaultLang(typeof navigator !== 'undefined' ? navigator.languages : ['zh-CN']);
}

export const locale = $state<{ lang: Lang }>({ lang: initial() });

function applyToDocument(lang: Lang): void {
  if (typeof document !== 'undefined') document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

applyToDocument(locale.lang);

export function setLang(lang: Lang): void {
  locale.lang = lang;
  if (typeof localStorage !== 'undefined') localStorage.setItem(STORAGE_KEY, lang);
  applyToDocument(lang);
}

export function t(key: Key, params: Record<string, string | number> = {}): string {
  return translate(locale.lang, key, params);
}

/** The sentence to show for a failed call. */
export function explain(e: unknown): string {
  if (e instanceof ApiError) return errorText(locale.lang, e.code, e.message);
  return e instanceof Error ? e.message : String(e);
}

/** A date and time in the chosen language. */
export function formatTime(ms: number): string {
  return new Date(ms).toLocaleString(locale.lang === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false });
}

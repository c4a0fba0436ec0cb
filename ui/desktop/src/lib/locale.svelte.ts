// The language on screen, shared by every component. It follows the settings
// (locale, or the system's for 'auto') and switches without a reload.
import { errorText, resolveLocale, translate, type Key } from './i18n';
import type { Locale, Settings } from './types';

export const ui = $state<{ locale: Locale }>({ locale: 'en' });

export function setLocale(locale: Locale): void {
  ui.locale = locale;
  if (typeof document !== 'undefined') document.documentElement.lang = locale;
}

/** Applies the settings' language choice. */
export function followSettings(choice: Settings['locale'], systemLocale: string): void {
  setLocale(resolveLocale(choice, systemLocale));
}

export function t(key: Key, params: Record<string, string | number> = {}): string {
  return translate(ui.locale, key, params);
}

/** An AppError ({code, message}) as the sentence to show; anything else as its text. */
export function explain(e: unknown): string {
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string') {
    const { code, message, retryAfterMs } = e as { code: string; message?: unknown; retryAfterMs?: unknown };
    return errorText(ui.locale, code, typeof message === 'string' ? message : '', typeof retryAfterMs === 'number' ? retryAfterMs : 0);
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The code of an AppError, or '' for anything else. */
export function errorCode(e: unknown): string {
  return e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string'
    ? (e as { code: string }).code
    : '';
}

// Dates and times as a messenger shows them, in the chosen language (pure,
// tested; local time zone).
import type { Locale } from './types';

const DAY = 86_400_000;

/**
 * One formatter per (language, options): building an Intl.DateTimeFormat
 * loads locale data and costs far more than formatting, and a list or a chat
 * formats hundreds of times.
 */
const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(locale: Locale, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  const key = `${locale} ${JSON.stringify(options)}`;
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(locale, options);
    formatters.set(key, f);
  }
  return f;
}

function startOfDay(ms: number): number {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** Whole calendar days between two instants (0: the same day, 1: yesterday…). */
export function daysBetween(earlier: number, later: number): number {
  return Math.round((startOfDay(later) - startOfDay(earlier)) / DAY);
}

/** HH:mm, 24-hour. */
export function clock(ms: number, locale: Locale): string {
  return formatter(locale, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(ms);
}

function weekday(ms: number, locale: Locale): string {
  return formatter(locale, { weekday: locale === 'zh-CN' ? 'short' : 'long' }).format(ms);
}

function date(ms: number, now: number, locale: Locale): string {
  const sameYear = new Date(ms).getFullYear() === new Date(now).getFullYear();
  return formatter(
    locale,
    sameYear ? { month: 'numeric', day: 'numeric' } : { year: 'numeric', month: 'numeric', day: 'numeric' },
  ).format(ms);
}

/** The time in the conversation list: today HH:mm, yesterday, this week's weekday, else the date. */
export function listTime(ms: number, now: number, locale: Locale): string {
  const days = daysBetween(ms, now);
  if (days <= 0) return clock(ms, locale);
  if (days === 1) return locale === 'zh-CN' ? '昨天' : 'Yesterday';
  if (days < 7) return weekday(ms, locale);
  return date(ms, now, locale);
}

/** The label of a day separator in a chat. */
export function dayLabel(ms: number, now: number, locale: Locale): string {
  const days = daysBetween(ms, now);
  if (days <= 0) return locale === 'zh-CN' ? '今天' : 'Today';
  if (days === 1) return locale === 'zh-CN' ? '昨天' : 'Yesterday';
  const full = formatter(
    locale,
    new Date(ms).getFullYear() === new Date(now).getFullYear()
      ? { month: 'long', day: 'numeric', weekday: 'short' }
      : { year: 'numeric', month: 'long', day: 'numeric', weekday: 'short' },
  );
  return full.format(ms);
}

/** A key naming the local calendar day of an instant (for grouping). */
export function dayKey(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

// Dates and times as a messenger shows them, in the chosen language (pure,
// tested; local time zone).
import type { Locale } from './types';

const DAY = 86_400_000;

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
  return new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(ms);
}

function weekday(ms: number, locale: Locale): string {
  return new Intl.DateTimeFormat(locale, { weekday: locale === 'zh-CN' ? 'short' : 'long' }).format(ms);
}

function date(ms: number, now: number, locale: Locale): string {
  const sameYear = new Date(ms).getFullYear() === new Date(now).getFullYear();
  return new Intl.DateTimeFormat(
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
  const full = new Intl.DateTimeFormat(
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

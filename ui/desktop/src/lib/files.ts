// Files, images and folders in the chat (pure, tested): sizes and durations
// for people, transfer speed over a sliding window and the time left, which
// transfer belongs to a message, and the sentence for a failed transfer.
import { errorText, tables, translate, type Key } from './i18n';
import type { Locale, MessageView, TransferView } from './types';

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'] as const;

const numberFormats = new Map<string, Intl.NumberFormat>();
function number(locale: Locale, digits: number): Intl.NumberFormat {
  const key = `${locale} ${digits}`;
  let f = numberFormats.get(key);
  if (!f) {
    f = new Intl.NumberFormat(locale, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
    numberFormats.set(key, f);
  }
  return f;
}

/** 1,024-based, one decimal below 100: "512 B", "1.5 KB", "23.4 MB", "120 GB". */
export function formatSize(bytes: number, locale: Locale): string {
  if (!Number.isFinite(bytes) || bytes < 0) bytes = 0;
  if (bytes < 1024) return `${number(locale, 0).format(Math.round(bytes))} B`;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  let digits = value < 100 ? 1 : 0;
  // 1023.96 KB would read "1,024 KB": that is the next unit.
  if (Number(value.toFixed(digits)) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
    digits = 1;
  }
  return `${number(locale, digits).format(value)} ${UNITS[unit]}`;
}

/** "1.2 MB/s". */
export function formatSpeed(bytesPerSecond: number, locale: Locale): string {
  return `${formatSize(bytesPerSecond, locale)}/s`;
}

/** Time left as people say it: "45 s", "3 min 5 s", "2 h 10 min" (and 秒/分/小时). */
export function formatDuration(seconds: number, locale: Locale): string {
  const s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  const zh = locale === 'zh-CN';
  const H = zh ? ' 小时' : ' h';
  const M = zh ? ' 分' : ' min';
  const S = zh ? ' 秒' : ' s';
  if (h > 0) return m > 0 ? `${h}${H} ${m}${M}` : `${h}${H}`;
  if (m > 0) return rest > 0 && m < 10 ? `${m}${M} ${rest}${S}` : `${m}${M}`;
  return `${rest}${S}`;
}

/** Whole percent done, 0–100 (an empty transfer is 100 % once done). */
export function percent(t: Pick<TransferView, 'doneBytes' | 'totalBytes' | 'state'>): number {
  if (t.totalBytes <= 0) return t.state === 'done' ? 100 : 0;
  return Math.min(100, Math.max(0, Math.floor((t.doneBytes / t.totalBytes) * 100)));
}

/** Progress seen at one moment. */
export interface Sample {
  ms: number;
  bytes: number;
}

/** Speed is measured over this many milliseconds. */
export const SPEED_WINDOW_MS = 5_000;

/**
 * The samples to keep after adding one: those inside the window (plus the one
 * just before it, so the window is covered). Progress that went backwards
 * (a restarted transfer) starts over.
 */
export function addSample(samples: readonly Sample[], next: Sample, windowMs = SPEED_WINDOW_MS): Sample[] {
  const last = samples[samples.length - 1];
  if (last && (next.bytes < last.bytes || next.ms < last.ms)) return [next];
  const all = last && last.ms === next.ms ? [...samples.slice(0, -1), next] : [...samples, next];
  let from = 0;
  while (from < all.length - 2 && (all[from + 1] as Sample).ms <= next.ms - windowMs) from++;
  return all.slice(from);
}

/**
 * Bytes per second over the sliding window ending `now`, or null before there
 * is enough to say (two samples at least 250 ms apart). A transfer that made
 * no progress for a whole window reads 0.
 */
export function speed(samples: readonly Sample[], now: number, windowMs = SPEED_WINDOW_MS): number | null {
  const last = samples[samples.length - 1];
  if (!last) return null;
  if (now - last.ms >= windowMs) return 0;
  let first = samples[0] as Sample;
  for (const s of samples) {
    if (s.ms >= now - windowMs) break;
    first = s;
  }
  const ms = Math.max(now, last.ms) - first.ms;
  if (samples.length < 2 || last.ms - first.ms < 250 || ms <= 0) return null;
  return ((last.bytes - first.bytes) * 1000) / ms;
}

/** Seconds left at this speed, or null when it cannot be told. */
export function eta(remainingBytes: number, bytesPerSecond: number | null): number | null {
  if (remainingBytes <= 0) return 0;
  if (bytesPerSecond === null || bytesPerSecond <= 0) return null;
  return remainingBytes / bytesPerSecond;
}

/**
 * The transfer a file message shows: its upload while it is mine and not on
 * the server yet (or even after, by its client id), else the newest download
 * of it. `transfers` is newest first.
 */
export function transferFor(m: MessageView, transfers: readonly TransferView[]): TransferView | null {
  if (m.kind !== 'file') return null;
  let upload: TransferView | null = null;
  let download: TransferView | null = null;
  for (const t of transfers) {
    if (t.state === 'cancelled') continue;
    if (t.direction === 'upload' && m.clientMsgId && t.clientMsgId === m.clientMsgId) {
      upload ??= t;
    } else if (t.direction === 'download' && m.seq > 0 && t.conversationId === m.conversationId && t.seq === m.seq) {
      download ??= t;
    }
  }
  // A finished upload leaves the stage to a download of the same message, if any.
  if (download && (!upload || upload.state === 'done')) return download;
  return upload ?? download;
}

export function active(t: TransferView | null): boolean {
  return t !== null && (t.state === 'queued' || t.state === 'running' || t.state === 'paused');
}

/** Why a transfer failed, for people: file-specific sentences first, then the general ones, then its own text. */
export function transferErrorText(locale: Locale, code: string | null, message: string | null): string {
  const key = `file.err.${code ?? ''}`;
  if (code && Object.prototype.hasOwnProperty.call(tables.en, key)) return translate(locale, key as Key);
  return errorText(locale, code ?? '', message ?? '') || translate(locale, 'file.err.unknown');
}

/** The name of a path's last part (either separator). */
export function baseName(path: string): string {
  const parts = path.split(/[\\/]+/).filter(Boolean);
  return parts[parts.length - 1] ?? path;
}

// The notices' pure rules the views share: inbox order, the sender's table
// filters and live progress. Tested in notices.test.ts.
import type { NoticeFilter, NoticeProgressRecipient, NoticeRecipientView, NoticeView } from './types';

/** Awaits my signature: sign-off required, not signed, not withdrawn. */
export function awaitingSignature(n: NoticeView): boolean {
  return n.signRequired && n.signedAtMs === 0 && n.withdrawnAtMs === 0;
}

export function isUnread(n: NoticeView): boolean {
  return n.readAtMs === 0 && n.withdrawnAtMs === 0;
}

/** An urgent notice I have not acknowledged (opened or signed): the banner stays. */
export function wantsAcknowledgement(n: NoticeView): boolean {
  return n.priority === 'urgent' && n.withdrawnAtMs === 0 && n.readAtMs === 0 && n.signedAtMs === 0;
}

/** Inbox order: awaiting my signature first, then unread, then newest. */
export function sortInbox(list: readonly NoticeView[]): NoticeView[] {
  const rank = (n: NoticeView) => (awaitingSignature(n) ? 0 : isUnread(n) ? 1 : 2);
  return [...list].sort((a, b) => rank(a) - rank(b) || b.sentAtMs - a.sentAtMs || b.id - a.id);
}

/** Replaces or adds a notice; the sender's name is kept from the earlier copy. */
export function upsertNotice(list: readonly NoticeView[], n: Omit<NoticeView, 'senderName'> & { senderName?: string }): NoticeView[] {
  const old = list.find((x) => x.id === n.id);
  const merged: NoticeView = { ...n, senderName: n.senderName ?? old?.senderName ?? `#${n.senderId}` };
  return sortInbox([...list.filter((x) => x.id !== n.id), merged]);
}

export function matchesFilter(r: NoticeRecipientView, filter: NoticeFilter): boolean {
  if (filter === 'notRead') return r.readAtMs === 0;
  if (filter === 'notSigned') return r.signedAtMs === 0;
  return true;
}

/**
 * Applies a pushed progress to the rows on screen: a row's state moves
 * forward only; a row that no longer matches the filter leaves the table.
 */
export function applyProgress(
  rows: readonly NoticeRecipientView[],
  p: NoticeProgressRecipient,
  filter: NoticeFilter,
): NoticeRecipientView[] {
  return rows
    .map((r) =>
      r.userId !== p.userId
        ? r
        : {
            ...r,
            deliveredAtMs: r.deliveredAtMs || p.deliveredAtMs,
            readAtMs: r.readAtMs || p.readAtMs,
            signedAtMs: r.signedAtMs || p.signedAtMs,
            signedDevice: r.signedDevice || p.signedDevice,
            chosen: r.chosen || p.chosen,
            comment: r.comment || p.comment,
            remindedAtMs: Math.max(r.remindedAtMs, p.remindedAtMs),
          },
    )
    .filter((r) => matchesFilter(r, filter));
}

/** A notice's date and time, `YYYY-MM-DD HH:MM` in local time. */
export function noticeTime(ms: number): string {
  if (!ms) return '';
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

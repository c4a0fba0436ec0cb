// A conversation's messages as the chat shows them (pure, tested): merging
// pages, events and the outbox without duplicates, the rows with day
// separators and sender grouping, read receipts and the recall window.
import { dayKey } from './time';
import type { MemberRead, MessageView } from './types';

/** Consecutive messages of one sender within this interval share one header. */
export const GROUP_MS = 5 * 60_000;
/** Own messages can be recalled this long after sending. */
export const RECALL_MS = 2 * 60_000;
/** Own text messages can be edited this long after sending (the server's default window). */
export const EDIT_MS = 24 * 60 * 60_000;

/** Stable identity of a message, from the outbox to its acknowledgement. */
export function messageKey(m: Pick<MessageView, 'clientMsgId' | 'seq'>): string {
  return m.clientMsgId ? `c:${m.clientMsgId}` : `s:${m.seq}`;
}

/** The seq a recall entry targets (0: none). */
function recallTarget(m: MessageView): number {
  return m.targetSeq > 0 ? m.targetSeq : 0;
}

/**
 * `existing` with `incoming` merged in: a message already present is replaced
 * (a sent copy is never replaced by its pending one), recall entries naming
 * their target blank it, and the result is ordered by seq with messages still
 * in the outbox (seq 0) last, in their order.
 */
export function mergeMessages(existing: readonly MessageView[], incoming: readonly MessageView[]): MessageView[] {
  const byKey = new Map<string, MessageView>();
  for (const m of existing) byKey.set(messageKey(m), m);
  const recalls: number[] = [];
  // Edit entries, in arrival order: the newest text of their target.
  const edits = new Map<number, string>();
  for (const m of incoming) {
    if (m.kind === 'recall' && recallTarget(m) > 0) {
      recalls.push(recallTarget(m));
      continue;
    }
    if (m.kind === 'edit') {
      if (m.targetSeq > 0) edits.set(m.targetSeq, m.text);
      continue;
    }
    // A reaction arrives with its target's new view (from the shell); the entry itself is not shown.
    if (m.kind === 'reaction') continue;
    const key = messageKey(m);
    const old = byKey.get(key);
    if (old && old.seq > 0 && m.seq === 0) continue;
    byKey.set(key, m);
  }
  let out = [...byKey.values()];
  if (edits.size > 0) {
    out = out.map((m) => {
      const text = m.seq > 0 && !m.recalled ? edits.get(m.seq) : undefined;
      return text === undefined ? m : { ...m, text, edited: true };
    });
  }
  if (recalls.length > 0) {
    const targets = new Set(recalls);
    out = out.map((m) => (m.seq > 0 && targets.has(m.seq) ? { ...m, recalled: true, text: '' } : m));
  }
  // Already in order in the common case (a page prepended, news appended).
  let sorted = true;
  for (let i = 1; i < out.length && sorted; i++) sorted = order(out[i - 1] as MessageView, out[i] as MessageView) <= 0;
  return sorted ? out : out.sort(order);
}

function order(a: MessageView, b: MessageView): number {
  const x = a.seq > 0 ? a.seq : Number.MAX_SAFE_INTEGER;
  const y = b.seq > 0 ? b.seq : Number.MAX_SAFE_INTEGER;
  return x - y;
}

/** The server acknowledged a message from the outbox. */
export function applyAck(list: readonly MessageView[], clientMsgId: string, seq: number): MessageView[] {
  const updated = list.map((m) =>
    m.clientMsgId === clientMsgId && m.seq === 0 ? { ...m, seq, state: 'sent' as const, error: null } : m,
  );
  return mergeMessages([], updated);
}

/** Sending a message failed for good (until retried). */
export function applyFailure(list: readonly MessageView[], clientMsgId: string, error: string): MessageView[] {
  return list.map((m) => (m.clientMsgId === clientMsgId && m.seq === 0 ? { ...m, state: 'failed' as const, error } : m));
}

export function markSending(list: readonly MessageView[], clientMsgId: string): MessageView[] {
  return list.map((m) => (m.clientMsgId === clientMsgId ? { ...m, state: 'sending' as const, error: null } : m));
}

export interface DayRow {
  type: 'day';
  key: string;
  ms: number;
}

export interface MessageRow {
  type: 'message';
  key: string;
  message: MessageView;
  /** Continues the previous message of the same sender (no name, no avatar). */
  grouped: boolean;
}

export type Row = DayRow | MessageRow;

function isChat(m: MessageView): boolean {
  return (m.kind === 'text' || m.kind === 'file') && !m.recalled;
}

/** The chat's rows: a separator before each new day, messages grouped by sender. */
export function buildRows(messages: readonly MessageView[]): Row[] {
  const rows: Row[] = [];
  let prev: MessageView | undefined;
  let prevDay = '';
  for (const m of messages) {
    const day = dayKey(m.sentAtMs);
    if (day !== prevDay) {
      rows.push({ type: 'day', key: `d:${messageKey(m)}`, ms: m.sentAtMs });
      prevDay = day;
      prev = undefined;
    }
    const grouped =
      prev !== undefined &&
      isChat(prev) &&
      isChat(m) &&
      prev.senderId === m.senderId &&
      m.sentAtMs - prev.sentAtMs < GROUP_MS;
    rows.push({ type: 'message', key: messageKey(m), message: m, grouped });
    prev = m;
  }
  return rows;
}

/** How many members other than me have read up to a message. */
export function readCount(m: Pick<MessageView, 'seq'>, reads: readonly MemberRead[], me: number): number {
  if (m.seq <= 0) return 0;
  let n = 0;
  for (const r of reads) if (r.userId !== me && r.readSeq >= m.seq) n++;
  return n;
}

/**
 * How many of a group's current members other than me have not read up to a
 * message: a member with no known cursor has not. Members, not cursors, are
 * the list, so a member whose cursor the cache has not heard of yet counts.
 */
export function unreadCount(
  m: Pick<MessageView, 'seq'>,
  members: readonly number[],
  reads: readonly MemberRead[],
  me: number,
): number {
  if (m.seq <= 0) return 0;
  const readers = new Set<number>();
  for (const r of reads) if (r.readSeq >= m.seq) readers.add(r.userId);
  let n = 0;
  for (const id of members) if (id !== me && !readers.has(id)) n++;
  return n;
}

/** A member's read position moved (a `cursor` event). */
export function applyCursor(reads: readonly MemberRead[], userId: number, readSeq: number): MemberRead[] {
  if (!reads.some((r) => r.userId === userId)) return [...reads, { userId, name: '', readSeq }];
  return reads.map((r) => (r.userId === userId ? { ...r, readSeq: Math.max(r.readSeq, readSeq) } : r));
}

/** Whether `me` may still edit `m` (an own, sent, not recalled text within the window). */
export function canEdit(m: MessageView, me: number, now: number): boolean {
  return m.senderId === me && m.seq > 0 && m.kind === 'text' && !m.recalled && now - m.sentAtMs <= EDIT_MS;
}

/** Whether a message can be pinned (a sent text or file, not recalled). */
export function canPin(m: MessageView): boolean {
  return m.seq > 0 && (m.kind === 'text' || m.kind === 'file') && !m.recalled;
}

/** Reactions offered in the picker. */
export const QUICK_REACTIONS = ['👍', '❤️', '😄', '🎉', '👌', '🙏'] as const;

/** Whether a message can take reactions (a sent text or file, not recalled). */
export function canReact(m: MessageView): boolean {
  return m.seq > 0 && (m.kind === 'text' || m.kind === 'file') && !m.recalled;
}

/** `m`'s reactions after I added (or removed) `emoji`, as the server will have them. */
export function toggledReactions(m: MessageView, emoji: string, remove: boolean, myName: string): MessageView['reactions'] {
  const list = m.reactions.map((r) => ({ ...r, names: [...r.names] }));
  const at = list.findIndex((r) => r.emoji === emoji);
  if (remove) {
    if (at < 0 || !list[at]!.mine) return m.reactions;
    const r = list[at]!;
    r.count -= 1;
    r.mine = false;
    r.names = r.names.filter((n) => n !== myName);
    return r.count > 0 ? list : list.filter((_, i) => i !== at);
  }
  if (at >= 0) {
    const r = list[at]!;
    if (r.mine) return m.reactions;
    r.count += 1;
    r.mine = true;
    r.names.push(myName);
    return list;
  }
  return [...list, { emoji, count: 1, mine: true, names: [myName] }];
}

export function canRecall(m: MessageView, me: number, now: number): boolean {
  return m.senderId === me && m.seq > 0 && m.kind === 'text' && !m.recalled && now - m.sentAtMs <= RECALL_MS;
}

/** The newest seq on the server side of a list (0 for none). */
export function lastSeq(messages: readonly MessageView[]): number {
  let max = 0;
  for (const m of messages) if (m.seq > max) max = m.seq;
  return max;
}

/** The oldest seq loaded (null when none is). */
export function oldestSeq(messages: readonly MessageView[]): number | null {
  for (const m of messages) if (m.seq > 0) return m.seq;
  return null;
}

import { describe, expect, it } from 'vitest';
import { AVATAR_COLORS, avatarColor, initials } from './avatar';
import { badge, preview, sortConversations } from './conversations';
import { clock, dayLabel, listTime } from './time';
import { completeMention, insertAt, keptMentions, keyAction, mentionQuery, EMOJI } from './composer';
import { splitMatches, snippet } from './highlight';
import { fingerprintLines, sameFingerprint } from './fingerprint';
import { conv, msg } from './testing';
import {
  applyAck,
  applyCursor,
  applyFailure,
  buildRows,
  canRecall,
  lastSeq,
  mergeMessages,
  oldestSeq,
  readCount,
  unreadCount,
} from './messages';

describe('avatar', () => {
  it('shows the last two Chinese characters or Latin initials', () => {
    expect(initials('张三丰')).toBe('三丰');
    expect(initials('王五')).toBe('王五');
    expect(initials('欧阳娜娜')).toBe('娜娜');
    expect(initials('Alice Smith')).toBe('AS');
    expect(initials('bob')).toBe('B');
    expect(initials('mary-jane watson')).toBe('MW');
    expect(initials('  ')).toBe('?');
  });

  it('gives each user id one stable colour from the palette, spread over it', () => {
    expect(avatarColor(42)).toBe(avatarColor(42));
    expect(AVATAR_COLORS).toContain(avatarColor(7));
    const used = new Set(Array.from({ length: 50 }, (_, i) => avatarColor(i + 1)));
    expect(used.size).toBeGreaterThanOrEqual(6);
    expect(avatarColor(1)).not.toBe(avatarColor(2));
  });
});

describe('conversation list rules', () => {
  it('puts pinned first, then the newest', () => {
    const list = [
      conv({ id: 1, lastAtMs: 100 }),
      conv({ id: 2, lastAtMs: 300 }),
      conv({ id: 3, lastAtMs: 50, pinned: true }),
      conv({ id: 4, lastAtMs: null }),
      conv({ id: 5, lastAtMs: 200, pinned: true }),
    ];
    expect(sortConversations(list).map((c) => c.id)).toEqual([5, 3, 2, 1, 4]);
  });

  it('caps the badge at 99+ and shows a dot for muted conversations', () => {
    expect(badge({ unread: 0, muted: false })).toBe('');
    expect(badge({ unread: 7, muted: false })).toBe('7');
    expect(badge({ unread: 100, muted: false })).toBe('99+');
    expect(badge({ unread: 5, muted: true })).toBe('dot');
    expect(badge({ unread: 0, muted: true })).toBe('');
  });

  it('prefixes the sender in groups only', () => {
    expect(preview({ kind: 'group', lastText: 'hi\nthere', lastSenderName: 'Ann' })).toBe('Ann: hi there');
    expect(preview({ kind: 'direct', lastText: 'hi', lastSenderName: 'Ann' })).toBe('hi');
    expect(preview({ kind: 'group', lastText: null, lastSenderName: null })).toBe('');
  });
});

describe('time', () => {
  const now = new Date(2024, 4, 17, 15, 30).getTime(); // Friday 17 May 2024
  it('shows HH:mm today, yesterday, a weekday this week, else the date', () => {
    expect(listTime(new Date(2024, 4, 17, 9, 5).getTime(), now, 'en')).toBe('09:05');
    expect(listTime(new Date(2024, 4, 17, 0, 1).getTime(), now, 'zh-CN')).toBe('00:01');
    expect(listTime(new Date(2024, 4, 16, 23, 59).getTime(), now, 'en')).toBe('Yesterday');
    expect(listTime(new Date(2024, 4, 16, 8, 0).getTime(), now, 'zh-CN')).toBe('昨天');
    expect(listTime(new Date(2024, 4, 13, 8, 0).getTime(), now, 'en')).toBe('Monday');
    expect(listTime(new Date(2024, 4, 13, 8, 0).getTime(), now, 'zh-CN')).toBe('周一');
    expect(listTime(new Date(2024, 4, 3, 8, 0).getTime(), now, 'zh-CN')).toBe('5/3');
    expect(listTime(new Date(2024, 4, 3, 8, 0).getTime(), now, 'en')).toBe('5/3');
    expect(listTime(new Date(2023, 11, 25, 8, 0).getTime(), now, 'zh-CN')).toBe('2023/12/25');
    expect(listTime(new Date(2023, 11, 25, 8, 0).getTime(), now, 'en')).toBe('12/25/2023');
  });

  it('labels day separators', () => {
    expect(dayLabel(now - 1000, now, 'en')).toBe('Today');
    expect(dayLabel(now - 86_400_000, now, 'zh-CN')).toBe('昨天');
    expect(dayLabel(new Date(2024, 4, 3).getTime(), now, 'en')).toBe('Fri, May 3');
    expect(clock(new Date(2024, 4, 3, 18, 7).getTime(), 'en')).toBe('18:07');
  });
});

describe('messages', () => {
  it('merges history, outbox and events without duplicates, outbox last', () => {
    const a = msg({ seq: 1, clientMsgId: 'a' });
    const b = msg({ seq: 2, clientMsgId: 'b' });
    const pending = msg({ seq: 0, clientMsgId: 'p', state: 'sending' });
    let list = mergeMessages([a, b], [pending]);
    list = mergeMessages(list, [msg({ seq: 3, clientMsgId: 'c' }), b]);
    expect(list.map((m) => m.clientMsgId)).toEqual(['a', 'b', 'c', 'p']);
    // The server's copy of the pending message replaces it; a later pending copy does not undo that.
    list = mergeMessages(list, [{ ...pending, seq: 4, state: 'sent' }]);
    list = mergeMessages(list, [pending]);
    expect(list.map((m) => [m.clientMsgId, m.seq, m.state])).toEqual([
      ['a', 1, 'sent'],
      ['b', 2, 'sent'],
      ['c', 3, 'sent'],
      ['p', 4, 'sent'],
    ]);
    // Older pages go in front.
    expect(mergeMessages([msg({ seq: 0, clientMsgId: 'z' })], list).map((m) => m.seq)).toEqual([1, 2, 3, 4, 0]);
  });

  it('applies acknowledgements, failures, recalls naming their target', () => {
    const p = msg({ seq: 0, clientMsgId: 'p', state: 'sending' });
    const q = msg({ seq: 0, clientMsgId: 'q', state: 'sending' });
    let list = [msg({ seq: 5, clientMsgId: 'x' }), p, q];
    list = applyAck(list, 'q', 6);
    expect(list.map((m) => [m.clientMsgId, m.seq, m.state])).toEqual([
      ['x', 5, 'sent'],
      ['q', 6, 'sent'],
      ['p', 0, 'sending'],
    ]);
    list = applyFailure(list, 'p', 'too large');
    expect(list[2]).toMatchObject({ state: 'failed', error: 'too large' });
    const recall = { ...msg({ seq: 7, kind: 'recall', clientMsgId: 'recall-10-5' }), targetSeq: 5 };
    list = mergeMessages(list, [recall]);
    expect(list.find((m) => m.seq === 5)).toMatchObject({ recalled: true, text: '' });
    expect(list.some((m) => m.kind === 'recall')).toBe(false);
    expect(lastSeq(list)).toBe(6);
    expect(oldestSeq(list)).toBe(5);
    expect(oldestSeq([])).toBeNull();
  });

  it('adds day separators and groups one sender’s messages within 5 minutes', () => {
    const d1 = new Date(2024, 0, 1, 10, 0).getTime();
    const d2 = new Date(2024, 0, 2, 10, 0).getTime();
    const rows = buildRows([
      msg({ seq: 1, senderId: 2, sentAtMs: d1 }),
      msg({ seq: 2, senderId: 2, sentAtMs: d1 + 60_000 }),
      msg({ seq: 3, senderId: 2, sentAtMs: d1 + 7 * 60_000 }),
      msg({ seq: 4, senderId: 3, sentAtMs: d1 + 8 * 60_000 }),
      msg({ seq: 5, senderId: 3, sentAtMs: d2 }),
    ]);
    expect(rows.map((r) => (r.type === 'day' ? 'day' : `${r.message.seq}${r.grouped ? 'g' : ''}`))).toEqual([
      'day',
      '1',
      '2g',
      '3',
      '4',
      'day',
      '5',
    ]);
  });

  it('counts readers other than me and follows cursors', () => {
    let reads = [
      { userId: 1, name: 'me', readSeq: 10 },
      { userId: 2, name: 'b', readSeq: 5 },
      { userId: 3, name: 'c', readSeq: 3 },
    ];
    expect(readCount({ seq: 4 }, reads, 1)).toBe(1);
    expect(readCount({ seq: 6 }, reads, 1)).toBe(0);
    expect(readCount({ seq: 0 }, reads, 1)).toBe(0);
    reads = applyCursor(reads, 3, 6);
    reads = applyCursor(reads, 2, 2); // never goes back
    expect(readCount({ seq: 5 }, reads, 1)).toBe(2);
    expect(readCount({ seq: 6 }, applyCursor(reads, 4, 9), 1)).toBe(2);
  });

  it("counts a group's members other than me who have not read a message", () => {
    const reads = [
      { userId: 1, name: 'me', readSeq: 10 },
      { userId: 2, name: 'b', readSeq: 5 },
      { userId: 3, name: 'c', readSeq: 3 },
      { userId: 9, name: 'left the group', readSeq: 0 },
    ];
    const members = [1, 2, 3, 4];
    // 4 has no cursor yet: not read; 9 is no member: not counted; I am never counted.
    expect(unreadCount({ seq: 4 }, members, reads, 1)).toBe(2);
    expect(unreadCount({ seq: 3 }, members, reads, 1)).toBe(1);
    expect(unreadCount({ seq: 6 }, members, reads, 1)).toBe(3);
    expect(unreadCount({ seq: 6 }, members, applyCursor(reads, 4, 9), 1)).toBe(2);
    expect(unreadCount({ seq: 0 }, members, reads, 1)).toBe(0);
  });

  it('allows recalling own sent text messages for 2 minutes', () => {
    const now = 1_000_000;
    const mine = msg({ senderId: 1, seq: 3, sentAtMs: now - 60_000 });
    expect(canRecall(mine, 1, now)).toBe(true);
    expect(canRecall({ ...mine, sentAtMs: now - 121_000 }, 1, now)).toBe(false);
    expect(canRecall({ ...mine, senderId: 2 }, 1, now)).toBe(false);
    expect(canRecall({ ...mine, seq: 0 }, 1, now)).toBe(false);
    expect(canRecall({ ...mine, recalled: true }, 1, now)).toBe(false);
  });
});

describe('composer rules', () => {
  const k = (o: Partial<Parameters<typeof keyAction>[0]>) => ({ key: 'Enter', shiftKey: false, ctrlKey: false, metaKey: false, ...o });
  it('sends on Enter or Ctrl/Cmd+Enter by the setting, never while composing', () => {
    expect(keyAction(k({}), true)).toBe('send');
    expect(keyAction(k({ shiftKey: true }), true)).toBe('none');
    expect(keyAction(k({}), false)).toBe('none');
    expect(keyAction(k({ ctrlKey: true }), false)).toBe('send');
    expect(keyAction(k({ metaKey: true }), false)).toBe('send');
    expect(keyAction(k({ isComposing: true }), true)).toBe('none');
    expect(keyAction(k({ keyCode: 229 }), true)).toBe('none');
    expect(keyAction(k({ key: 'a' }), true)).toBe('none');
  });

  it('inserts at the caret and completes mentions', () => {
    expect(insertAt('hello world', 5, 5, '😀')).toEqual({ text: 'hello😀 world', caret: 7 });
    expect(insertAt('abc', 1, 2, 'X')).toEqual({ text: 'aXc', caret: 2 });
    expect(mentionQuery('hi @li', 6)).toEqual({ start: 3, query: 'li' });
    expect(mentionQuery('@', 1)).toEqual({ start: 0, query: '' });
    expect(mentionQuery('mail a@b', 8)).toBeNull();
    expect(mentionQuery('@li si', 6)).toBeNull();
    expect(completeMention('hi @li', 3, 6, '李四')).toEqual({ text: 'hi @李四 ', caret: 7 });
    expect(keptMentions('hi @李四 and', new Map([[2, '李四'], [3, '王五']]))).toEqual([2]);
    expect(EMOJI.length).toBeGreaterThanOrEqual(80);
  });
});

describe('search hits', () => {
  it('marks matches as text parts', () => {
    expect(splitMatches('Hello <b>hello</b>', 'hello')).toEqual([
      { text: 'Hello', match: true },
      { text: ' <b>', match: false },
      { text: 'hello', match: true },
      { text: '</b>', match: false },
    ]);
    expect(splitMatches('abc', '')).toEqual([{ text: 'abc', match: false }]);
    expect(snippet('x'.repeat(100) + 'needle' + 'y'.repeat(100), 'needle', 5)).toBe('…xxxxxneedleyyyyy…');
  });
});

describe('fingerprint', () => {
  it('lays the fingerprint out in lines that join back to it', () => {
    const fp = Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, '0').toUpperCase()).join(':');
    const lines = fingerprintLines(fp);
    expect(lines).toHaveLength(4);
    expect(lines.join('')).toBe(fp);
    expect(lines[0]).toBe('00:01:02:03:04:05:06:07:');
    expect(sameFingerprint('ab:cd', 'AB:CD')).toBe(true);
    expect(sameFingerprint('ab:cd', 'AB:CE')).toBe(false);
  });
});

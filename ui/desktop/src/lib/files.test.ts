import { describe, expect, it } from 'vitest';
import {
  addSample,
  baseName,
  eta,
  formatDuration,
  formatSize,
  formatSpeed,
  percent,
  speed,
  transferErrorText,
  transferFor,
  type Sample,
} from './files';
import { msg, transfer } from './fake-api';
import { errorText } from './i18n';

describe('sizes and durations', () => {
  it('formats sizes 1,024-based with one decimal below 100, in both languages', () => {
    expect(formatSize(0, 'en')).toBe('0 B');
    expect(formatSize(1023, 'en')).toBe('1,023 B');
    expect(formatSize(1024, 'en')).toBe('1 KB');
    expect(formatSize(1536, 'en')).toBe('1.5 KB');
    expect(formatSize(10 * 1024 * 1024 + 400 * 1024, 'en')).toBe('10.4 MB');
    expect(formatSize(123.4 * 1024 ** 3, 'en')).toBe('123 GB');
    expect(formatSize(1024 ** 2 - 1, 'en')).toBe('1 MB');
    expect(formatSize(5 * 1024 ** 4, 'zh-CN')).toBe('5 TB');
    expect(formatSize(2.25 * 1024 ** 2, 'zh-CN')).toBe('2.3 MB');
    expect(formatSize(-5, 'en')).toBe('0 B');
    expect(formatSize(Number.NaN, 'en')).toBe('0 B');
    expect(formatSpeed(3 * 1024 * 1024, 'en')).toBe('3 MB/s');
  });

  it('says how long is left like people do', () => {
    expect(formatDuration(0, 'en')).toBe('0 s');
    expect(formatDuration(44.2, 'en')).toBe('45 s');
    expect(formatDuration(185, 'en')).toBe('3 min 5 s');
    expect(formatDuration(60 * 25 + 7, 'en')).toBe('25 min');
    expect(formatDuration(2 * 3600 + 10 * 60, 'en')).toBe('2 h 10 min');
    expect(formatDuration(3600, 'en')).toBe('1 h');
    expect(formatDuration(185, 'zh-CN')).toBe('3 分 5 秒');
    expect(formatDuration(2 * 3600 + 10 * 60, 'zh-CN')).toBe('2 小时 10 分');
  });

  it('takes the last part of a path', () => {
    expect(baseName('/home/me/报告.pdf')).toBe('报告.pdf');
    expect(baseName('C:\\Users\\me\\照片\\')).toBe('照片');
  });
});

describe('progress maths', () => {
  it('computes whole percent, never beyond 0–100', () => {
    expect(percent({ doneBytes: 0, totalBytes: 1000, state: 'running' })).toBe(0);
    expect(percent({ doneBytes: 999, totalBytes: 1000, state: 'running' })).toBe(99);
    expect(percent({ doneBytes: 1500, totalBytes: 1000, state: 'running' })).toBe(100);
    expect(percent({ doneBytes: 0, totalBytes: 0, state: 'done' })).toBe(100);
    expect(percent({ doneBytes: 0, totalBytes: 0, state: 'queued' })).toBe(0);
  });

  it('measures speed over a sliding window', () => {
    let s: Sample[] = [];
    expect(speed(s, 0)).toBeNull();
    s = addSample(s, { ms: 0, bytes: 0 });
    expect(speed(s, 100)).toBeNull(); // one sample says nothing
    s = addSample(s, { ms: 100, bytes: 100_000 });
    expect(speed(s, 100)).toBeNull(); // too short a span to tell
    // 1 MB/s for 4 s.
    for (let t = 1; t <= 4; t++) s = addSample(s, { ms: t * 1000, bytes: t * 1_000_000 });
    expect(speed(s, 4000)).toBeCloseTo(1_000_000, -3);
    // Then 3 MB/s: after a full window only the new pace counts.
    for (let t = 5; t <= 12; t++) s = addSample(s, { ms: t * 1000, bytes: 4_000_000 + (t - 4) * 3_000_000 });
    expect(speed(s, 12_000)).toBeCloseTo(3_000_000, -3);
    // Samples older than the window are dropped (one before it is kept to cover it).
    expect(s.length).toBeLessThanOrEqual(7);
    expect((s[0] as Sample).ms).toBeGreaterThanOrEqual(6000);
    // Stalled for a whole window: 0.
    expect(speed(s, 12_000 + 5_000)).toBe(0);
    // Progress that goes back (a restart) starts the window again.
    expect(addSample(s, { ms: 13_000, bytes: 10 })).toEqual([{ ms: 13_000, bytes: 10 }]);
    // A second report in the same millisecond replaces the first.
    expect(addSample([{ ms: 1, bytes: 1 }, { ms: 5, bytes: 2 }], { ms: 5, bytes: 9 })).toEqual([
      { ms: 1, bytes: 1 },
      { ms: 5, bytes: 9 },
    ]);
  });

  it('estimates the time left from the speed', () => {
    expect(eta(10_000_000, 2_000_000)).toBe(5);
    expect(eta(0, null)).toBe(0);
    expect(eta(100, null)).toBeNull();
    expect(eta(100, 0)).toBeNull();
  });
});

describe('which transfer a message shows', () => {
  const file = (over = {}) =>
    msg({
      kind: 'file',
      seq: 7,
      clientMsgId: 'c1',
      attachment: { kind: 'file', fileId: 'f', name: 'a.pdf', size: 10, mime: '', fileCount: 0, width: 0, height: 0, thumbnail: null },
      ...over,
    });

  it('picks my upload by message id, else the newest download by seq', () => {
    const up = transfer({ id: 'u', clientMsgId: 'c1', state: 'running' });
    const oldDown = transfer({ id: 'd1', direction: 'download', seq: 7, clientMsgId: '', state: 'done' });
    const newDown = transfer({ id: 'd2', direction: 'download', seq: 7, clientMsgId: '', state: 'running' });
    const other = transfer({ id: 'x', direction: 'download', seq: 8, clientMsgId: '' });
    expect(transferFor(file({ seq: 0 }), [up])?.id).toBe('u');
    expect(transferFor(file({ clientMsgId: 'other' }), [newDown, oldDown, other])?.id).toBe('d2');
    // A finished upload gives way to a download of the same message.
    expect(transferFor(file(), [newDown, { ...up, state: 'done' }])?.id).toBe('d2');
    expect(transferFor(file(), [up, newDown])?.id).toBe('u');
    // Cancelled ones are ignored; other conversations too; text messages have none.
    expect(transferFor(file(), [{ ...newDown, state: 'cancelled' }])).toBeNull();
    expect(transferFor(file(), [{ ...newDown, conversationId: 99 }])).toBeNull();
    expect(transferFor(msg({ seq: 7 }), [newDown])).toBeNull();
  });
});

describe('transfer errors', () => {
  it('translates the file error codes in both languages, then the general ones, then the text', () => {
    expect(transferErrorText('en', 'TOO_LARGE', 'file too large')).toBe('The file is larger than the server allows');
    expect(transferErrorText('zh-CN', 'TOO_LARGE', 'x')).toBe('文件超过服务器允许的大小');
    expect(transferErrorText('zh-CN', 'QUOTA_EXCEEDED', 'x')).toBe('存储空间配额已用完，请联系管理员');
    expect(transferErrorText('en', 'UNSAFE_PATH', 'x')).toMatch(/cannot be written safely/);
    expect(transferErrorText('zh-CN', 'UNSAFE_PATH', 'x')).toMatch(/无法安全写入/);
    expect(transferErrorText('en', 'FORBIDDEN', 'x')).toBe('You are not allowed to access this file');
    expect(transferErrorText('zh-CN', 'NOT_FOUND', 'x')).toBe('文件已不存在');
    expect(transferErrorText('en', 'NETWORK', 'x')).toBe(errorText('en', 'NETWORK', ''));
    expect(transferErrorText('en', 'SOMETHING_NEW', 'disk on fire')).toBe('disk on fire');
    expect(transferErrorText('zh-CN', null, null)).toBe('传输失败');
    // The message-level sentence stays for text.
    expect(errorText('en', 'TOO_LARGE', '')).toBe('The message is too long');
    expect(errorText('zh-CN', 'NO_IMAGE', '')).toBe('剪贴板中没有图片');
  });
});

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import Notices from './Notices.svelte';
import SentNotices from './SentNotices.svelte';
import UrgentBanner from './UrgentBanner.svelte';
import { nav } from './lib/session.svelte';
import { setLocale } from './lib/locale.svelte';
import { renderMarkdown } from './lib/markdown';
import { applyProgress, sortInbox } from './lib/notices';
import { inbox, reloadNotices, storeNotice } from './lib/notices.svelte';
import { noticeOf } from './lib/fake-api';
import { click, emit, fakeApi, resetFake, settle } from './lib/testing';
import type { NoticeRecipientView } from './lib/types';

vi.mock('./lib/api', async () => (await import('./lib/fake-api')).apiModule);

beforeEach(() => {
  resetFake();
  setLocale('en');
  inbox.list = [];
  inbox.openId = null;
});
afterEach(() => {
  document.body.innerHTML = '';
});

function render(component: typeof Notices | typeof SentNotices | typeof UrgentBanner) {
  const target = document.body.appendChild(document.createElement('div'));
  return { target, app: mount(component, { target }) };
}

const row = (userId: number, over: Partial<NoticeRecipientView> = {}): NoticeRecipientView => ({
  userId,
  name: `P${userId}`,
  departmentId: 3,
  departmentName: '财务部',
  deliveredAtMs: 0,
  readAtMs: 0,
  signedAtMs: 0,
  signedDevice: '',
  chosen: '',
  comment: '',
  remindedAtMs: 0,
  ...over,
});

describe('inbox order', () => {
  it('puts notices awaiting my signature first, then unread, then newest', () => {
    const list = [
      noticeOf({ id: 1, sentAtMs: 100, readAtMs: 5 }),
      noticeOf({ id: 2, sentAtMs: 50 }),
      noticeOf({ id: 3, sentAtMs: 10, signRequired: true, readAtMs: 5 }),
      noticeOf({ id: 4, sentAtMs: 300, readAtMs: 5 }),
      noticeOf({ id: 5, sentAtMs: 20, signRequired: true, signedAtMs: 9, readAtMs: 9 }),
      noticeOf({ id: 6, sentAtMs: 400, signRequired: true, withdrawnAtMs: 401 }),
    ];
    expect(sortInbox(list).map((n) => n.id)).toEqual([3, 2, 6, 4, 1, 5]);
  });
});

describe('Markdown safety', () => {
  it('renders the subset and never raw HTML, script or javascript: links', () => {
    const html = renderMarkdown(
      '# 标题\n\n- **一** *二*\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<img src=x onerror="window.hacked=1"><script>window.hacked=2</script>\n\n[点我](javascript:alert(1)) [OA](https://oa.example.com/x)',
    );
    const box = document.body.appendChild(document.createElement('div'));
    box.innerHTML = html;
    expect(box.querySelector('h1')?.textContent).toBe('标题');
    expect(box.querySelector('li strong')?.textContent).toBe('一');
    expect(box.querySelector('li em')?.textContent).toBe('二');
    expect(box.querySelectorAll('table td')).toHaveLength(2);
    expect(box.querySelector('img')).toBeNull();
    expect(box.querySelector('script')).toBeNull();
    expect(box.querySelector('[onerror]')).toBeNull();
    expect(box.textContent).toContain('<img src=x onerror="window.hacked=1">');
    expect(box.textContent).toContain('<script>');
    const links = [...box.querySelectorAll('a')];
    expect(links.map((a) => a.getAttribute('href'))).toEqual(['https://oa.example.com/x']);
    expect(box.textContent).toContain('OA (https://oa.example.com/x)');
    expect(box.textContent).toContain('[点我](javascript:alert(1))');
    expect((window as unknown as { hacked?: number }).hacked).toBeUndefined();
  });
});

describe('Notices view', () => {
  it('opens a notice (marks it read), signs it and shows when and where', async () => {
    fakeApi.notices.mockResolvedValue([noticeOf({ id: 7, title: '安全培训', signRequired: true, body: '<b>x</b>' })]);
    fakeApi.signNotice.mockImplementation(async (id: number) =>
      noticeOf({ id, title: '安全培训', signRequired: true, readAtMs: 1, signedAtMs: Date.UTC(2026, 0, 2, 3, 4), signedDevice: 'desktop' }),
    );
    await reloadNotices();
    const { target, app } = render(Notices);
    await settle();
    click(target.querySelector('.notice-item[data-id="7"]'));
    await settle();
    expect(fakeApi.readNotices).toHaveBeenCalledWith([7]);
    expect(target.querySelector('#notice-body')?.textContent).toContain('<b>x</b>');
    expect(target.querySelector('#notice-body b')).toBeNull();
    click(target.querySelector('#notice-sign'));
    await settle();
    expect(fakeApi.signNotice).toHaveBeenCalledWith(7);
    expect(target.querySelector('#notice-signed')?.textContent).toMatch(/^Signed at 2026-01-0\d \d\d:04 on desktop$/);
    expect(target.querySelector('#notice-sign')).toBeNull();
    unmount(app);
  });

  it('shows a withdrawn notice by its title only', async () => {
    fakeApi.notices.mockResolvedValue([noticeOf({ id: 8, title: '旧通知', body: '', withdrawnAtMs: 5 })]);
    await reloadNotices();
    inbox.openId = 8;
    const { target, app } = render(Notices);
    await settle();
    expect(target.querySelector('.notice-item.withdrawn')).not.toBeNull();
    expect(target.querySelector('#notice-body')).toBeNull();
    expect(target.querySelector('#notice-sign')).toBeNull();
    expect(target.textContent).toContain('withdrew');
    unmount(app);
  });
});

describe('urgent banner', () => {
  it('stays until the urgent notice is opened, then goes', async () => {
    fakeApi.notices.mockResolvedValue([noticeOf({ id: 3, priority: 'urgent', title: '紧急：停电' }), noticeOf({ id: 4 })]);
    await reloadNotices();
    const { target, app } = render(UrgentBanner);
    await settle();
    expect(target.querySelector('#urgent-banner')?.textContent).toContain('Urgent notice (1)');
    click(target.querySelector('#urgent-open'));
    expect(nav.tab).toBe('notices');
    expect(inbox.openId).toBe(3);
    // Still there until it is read.
    await settle();
    expect(target.querySelector('#urgent-banner')).not.toBeNull();
    // The reader marked it read (Notices.test above covers the call).
    storeNotice(noticeOf({ id: 3, priority: 'urgent', title: '紧急：停电', readAtMs: 5 }));
    await settle();
    expect(target.querySelector('#urgent-banner')).toBeNull();
    unmount(app);
  });
});

describe('sender table', () => {
  it('filters rows and applies live progress, dropping rows that stop matching', () => {
    const rows = [row(1), row(2, { readAtMs: 5 }), row(3, { readAtMs: 5, signedAtMs: 6 })];
    const signed = applyProgress(rows, { ...row(2, { readAtMs: 5, signedAtMs: 9, signedDevice: 'laptop' }) }, 'notSigned');
    expect(signed.map((r) => r.userId)).toEqual([1]);
    const all = applyProgress(rows, row(1, { deliveredAtMs: 4 }), 'all');
    expect(all.find((r) => r.userId === 1)?.deliveredAtMs).toBe(4);
    expect(all).toHaveLength(3);
    // State never moves back.
    expect(applyProgress(rows, row(3), 'all').find((r) => r.userId === 3)?.signedAtMs).toBe(6);
  });

  it('asks the server for the filter chosen and follows noticeProgress', async () => {
    fakeApi.sentNotices.mockResolvedValue([
      { notice: { id: 9, title: '周报', body: '', priority: 'normal', signRequired: true, deadlineMs: 0, sentAtMs: 1, withdrawnAtMs: 0, buttons: [] }, counts: { recipients: 2, delivered: 2, read: 1, signed: 0 } },
    ]);
    fakeApi.noticeStatus.mockImplementation(async (_id, filter) => ({
      notice: null,
      counts: { recipients: 2, delivered: 2, read: 1, signed: 0 },
      recipients: filter === 'notRead' ? [row(1, { deliveredAtMs: 1 })] : [row(1, { deliveredAtMs: 1 }), row(2, { deliveredAtMs: 1, readAtMs: 2 })],
      nextAfterUserId: 0,
    }));
    const { target, app } = render(SentNotices);
    await settle();
    click(target.querySelector('.sent-item[data-id="9"]'));
    await settle();
    expect(target.querySelectorAll('tr.recipient')).toHaveLength(2);
    click(target.querySelector('[data-filter="notRead"]'));
    await settle();
    expect(fakeApi.noticeStatus).toHaveBeenLastCalledWith(9, 'notRead', 0, 200);
    expect(target.querySelectorAll('tr.recipient')).toHaveLength(1);
    await emit({ event: 'noticeProgress', noticeId: 9, recipient: { ...row(1, { deliveredAtMs: 1, readAtMs: 3, signedAtMs: 3, signedDevice: 'phone' }) } });
    await settle();
    expect(target.querySelectorAll('tr.recipient')).toHaveLength(0);
    expect(target.querySelector('#notice-counts')?.textContent).toContain('read 2 · signed 1 of 2');
    unmount(app);
  });
});

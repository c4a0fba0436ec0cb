// My notices, shared by the rail's badge, the urgent banner and the Notices
// view: loaded once, then kept current by `notice` events.
import { api } from './api';
import { onAppEvent } from './events';
import { isUnread, sortInbox, upsertNotice, wantsAcknowledgement } from './notices';
import type { NoticeView } from './types';

export const inbox = $state<{ list: NoticeView[]; openId: number | null }>({ list: [], openId: null });

export function unreadCount(): number {
  return inbox.list.filter(isUnread).length;
}

export function urgentPending(): NoticeView[] {
  return inbox.list.filter(wantsAcknowledgement);
}

export async function reloadNotices(): Promise<void> {
  try {
    inbox.list = sortInbox(await api.notices());
  } catch (e) {
    console.error('notices failed', e);
  }
}

export function storeNotice(n: NoticeView | (Omit<NoticeView, 'senderName'> & { senderName?: string })): void {
  inbox.list = upsertNotice(inbox.list, n);
}

/** Follows `notice` events; returns the function that stops (and forgets the notices: signed out). */
export function followNotices(): () => void {
  void reloadNotices();
  const off = onAppEvent((e) => {
    if (e.event === 'notice') {
      if (!inbox.list.some((n) => n.id === e.notice.id)) {
        // A new notice: its sender's name comes with the full list.
        storeNotice(e.notice);
        void reloadNotices();
      } else storeNotice(e.notice);
    } else if (e.event === 'synced') void reloadNotices();
  });
  return () => {
    off();
    inbox.list = [];
    inbox.openId = null;
  };
}

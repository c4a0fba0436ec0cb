// The conversation list's rules (pure, tested): order, badge and preview.
import type { ConversationView } from './types';

/** Pinned first, then the most recent activity first; ties by id for a stable order. */
export function sortConversations(list: readonly ConversationView[]): ConversationView[] {
  return [...list].sort((a, b) => {
    if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
    const d = (b.lastAtMs ?? 0) - (a.lastAtMs ?? 0);
    return d !== 0 ? d : a.id - b.id;
  });
}

/** The unread badge: '' for none, 'dot' for a muted conversation, else the count capped at 99+. */
export function badge(c: Pick<ConversationView, 'unread' | 'muted'>): '' | 'dot' | string {
  if (c.unread <= 0) return '';
  if (c.muted) return 'dot';
  return c.unread > 99 ? '99+' : String(c.unread);
}

/** The last message under the name: "Sender: text" in groups. */
export function preview(c: Pick<ConversationView, 'kind' | 'lastText' | 'lastSenderName'>): string {
  const text = (c.lastText ?? '').replace(/\s+/g, ' ').trim();
  if (c.kind === 'group' && c.lastSenderName && text) return `${c.lastSenderName}: ${text}`;
  return text;
}

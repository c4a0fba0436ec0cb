// A group's event (created, people added or removed, left, renamed, a role
// given) as a sentence in the reader's language with people's names, from
// the event's data: never the server's English sentence with user ids.
import { t } from './locale.svelte';
import type { EventView, MessageView, PersonRef } from './types';

/** At most this many names are spelled out; the rest are counted. */
const MAX_NAMES = 10;

/** A name, bidi-isolated so a right-to-left override in it stays inside it. */
const isolate = (name: string) => `\u2068${name}\u2069`;

function person(p: PersonRef, me: number, subject: boolean): string {
  if (p.id === me) return t(subject ? 'sys.you' : 'sys.youObject');
  return isolate(p.name);
}

function people(list: PersonRef[], me: number, subject: boolean): string {
  const shown = list.slice(0, MAX_NAMES).map((p) => person(p, me, subject));
  const joined = shown.join(t('sys.listSep'));
  return list.length > MAX_NAMES ? t('sys.more', { list: joined, n: list.length - MAX_NAMES }) : joined;
}

/** The sentence for `e`, as `me` (the reader's user id) reads it. */
export function describeEvent(e: EventView, me: number): string {
  const actor = person(e.actor, me, true);
  const name = isolate(e.name);
  switch (e.kind) {
    case 'group_created':
      return e.users.length === 0
        ? t('sys.createdAlone', { actor, name })
        : t('sys.created', { actor, name, users: people(e.users, me, false) });
    case 'members_added':
      return t('sys.added', { actor, users: people(e.users, me, false) });
    case 'member_removed':
      return t('sys.removed', { actor, users: people(e.users, me, false) });
    case 'member_left':
      return t('sys.left', { users: people(e.users, me, true) });
    case 'renamed':
      return t('sys.renamed', { actor, name });
    case 'role_changed':
      return t('sys.role', { actor, users: people(e.users, me, false), role: t(`sys.role.${e.role}`) });
    default:
      return t('sys.unknown');
  }
}

/** The line for a pin entry (kind 'pin'): who pinned or unpinned a message. */
export function describePin(m: Pick<MessageView, 'senderId' | 'senderName' | 'unpinned'>, me: number): string {
  const actor = person({ id: m.senderId, name: m.senderName }, me, true);
  return t(m.unpinned ? 'sys.unpinned' : 'sys.pinned', { actor });
}

// The conversation list, shared by the list, the chat pane and the dialogs
// that open conversations. Reloaded when the shell says it changed: one read
// at a time, and however many changes arrive during a read, one more after it
// (a burst of a thousand messages costs a few reads, not one per event).
import { api } from './api';
import { coalesce } from './events';
import type { ConversationView } from './types';

class Conversations {
  /** Replaced whole on each read, never changed in place: not deeply reactive. */
  list = $state.raw<ConversationView[]>([]);
  loaded = $state(false);
  error = $state('');
}

export const convos = new Conversations();

let running: Promise<void> | null = null;
let queued: Promise<void> | null = null;

async function read(): Promise<void> {
  try {
    convos.list = await api.conversations();
    convos.loaded = true;
    convos.error = '';
  } catch (e) {
    convos.error = String((e as { message?: unknown })?.message ?? e);
  }
}

/**
 * Reads the list; if a read is under way, one more read follows it (shared by
 * every call made meanwhile). Resolves once the list reflects the call.
 */
export function reloadConversations(): Promise<void> {
  if (running === null) {
    running = read().finally(() => {
      running = null;
    });
    return running;
  }
  queued ??= running.then(() => {
    queued = null;
    return reloadConversations();
  });
  return queued;
}

/** Reloads once for any number of calls within one task. */
export const refreshConversations = coalesce(() => void reloadConversations());

export function conversationById(id: number | null): ConversationView | undefined {
  return id === null ? undefined : convos.list.find((c) => c.id === id);
}

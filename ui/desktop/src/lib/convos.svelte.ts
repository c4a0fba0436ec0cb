// The conversation list, shared by the list, the chat pane and the dialogs
// that open conversations. Reloaded (coalesced) when the shell says it changed.
import { api } from './api';
import { coalesce } from './events';
import type { ConversationView } from './types';

export const convos = $state<{ list: ConversationView[]; loaded: boolean; error: string }>({
  list: [],
  loaded: false,
  error: '',
});

let generation = 0;

/** Reloads now; answers that arrive out of order are dropped. */
export async function reloadConversations(): Promise<void> {
  const mine = ++generation;
  try {
    const list = await api.conversations();
    if (mine !== generation) return;
    convos.list = list;
    convos.loaded = true;
    convos.error = '';
  } catch (e) {
    if (mine === generation) convos.error = String((e as { message?: unknown })?.message ?? e);
  }
}

/** Reloads once for any number of calls within one task. */
export const refreshConversations = coalesce(() => void reloadConversations());

export function conversationById(id: number | null): ConversationView | undefined {
  return id === null ? undefined : convos.list.find((c) => c.id === id);
}

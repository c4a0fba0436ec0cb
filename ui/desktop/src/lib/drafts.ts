// Unsent text per conversation, kept in memory and in localStorage so nothing
// typed is lost when switching conversations or restarting.
const memory = new Map<number, string>();
const PREFIX = 'hutong.draft.';

export function getDraft(conversationId: number): string {
  const held = memory.get(conversationId);
  if (held !== undefined) return held;
  try {
    return localStorage.getItem(PREFIX + conversationId) ?? '';
  } catch {
    return '';
  }
}

export function setDraft(conversationId: number, text: string): void {
  memory.set(conversationId, text);
  try {
    if (text) localStorage.setItem(PREFIX + conversationId, text);
    else localStorage.removeItem(PREFIX + conversationId);
  } catch {
    // Storage full or unavailable: the in-memory copy still holds it.
  }
}

/** Forgets every draft (sign-out, tests). */
export function clearDrafts(): void {
  memory.clear();
  try {
    for (const key of Object.keys(localStorage)) if (key.startsWith(PREFIX)) localStorage.removeItem(key);
  } catch {
    // ignore
  }
}

// The composer's keyboard and text rules (pure, tested).

export interface KeyInfo {
  key: string;
  shiftKey: boolean;
  ctrlKey: boolean;
  metaKey: boolean;
  altKey?: boolean;
  isComposing?: boolean;
  keyCode?: number;
}

/**
 * What a key press in the composer does: 'send', or 'none' (the textarea
 * handles it, e.g. a line break). An IME composition never sends.
 */
export function keyAction(e: KeyInfo, enterSends: boolean): 'send' | 'none' {
  if (e.key !== 'Enter') return 'none';
  if (e.isComposing || e.keyCode === 229) return 'none';
  if (enterSends) return e.shiftKey || e.ctrlKey || e.metaKey || e.altKey ? 'none' : 'send';
  return e.ctrlKey || e.metaKey ? 'send' : 'none';
}

/** Text with `insert` replacing the selection, and where the caret goes. */
export function insertAt(text: string, start: number, end: number, insert: string): { text: string; caret: number } {
  const s = Math.max(0, Math.min(start, text.length));
  const e = Math.max(s, Math.min(end, text.length));
  return { text: text.slice(0, s) + insert + text.slice(e), caret: s + insert.length };
}

/** The @mention being typed before the caret: where its '@' is and what follows it. */
export function mentionQuery(text: string, caret: number): { start: number; query: string } | null {
  const before = text.slice(0, caret);
  const at = before.lastIndexOf('@');
  if (at < 0) return null;
  if (at > 0 && !/\s/.test(before[at - 1] ?? '')) return null;
  const query = before.slice(at + 1);
  if (/\s/.test(query) || query.length > 32) return null;
  return { start: at, query };
}

/** Replaces the typed "@query" with "@Name ". */
export function completeMention(text: string, start: number, caret: number, name: string): { text: string; caret: number } {
  return insertAt(text, start, caret, `@${name} `);
}

/** Keeps only the mentions whose "@Name" is still in the text. */
export function keptMentions(text: string, chosen: ReadonlyMap<number, string>): number[] {
  return [...chosen].filter(([, name]) => text.includes(`@${name}`)).map(([id]) => id);
}

export const EMOJI = [
  '😀', '😃', '😄', '😁', '😆', '😅', '😂', '🤣', '😊', '😇', '🙂', '🙃', '😉', '😌', '😍', '🥰',
  '😘', '😋', '😛', '😜', '🤪', '😎', '🤩', '🥳', '😏', '😒', '😞', '😔', '😟', '😕', '🙁', '😣',
  '😖', '😫', '😩', '🥺', '😢', '😭', '😤', '😠', '😡', '🤯', '😳', '😱', '😨', '😰', '😥', '🤔',
  '🤗', '🤭', '🤫', '😶', '😐', '😑', '😬', '🙄', '😯', '😴', '🤤', '😪', '😷', '🤒', '👍', '👎',
  '👌', '✌️', '🤝', '👏', '🙏', '💪', '👀', '🎉', '🔥', '💯', '❤️', '💔', '⭐', '☕', '🌹', '✅',
] as const;

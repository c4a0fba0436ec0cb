// Merged forwards (合并转发) as the app words them: the record's title in the
// reader's language from its data, and one line per item (text, never HTML).
import { t } from './locale.svelte';
import type { ForwardItemView, ForwardView } from './types';

/** A name, bidi-isolated so a right-to-left override in it stays inside it. */
const isolate = (name: string) => `\u2068${name}\u2069`;

/** "张伟 and 李娜's chat history", or a group's. */
export function forwardTitle(f: ForwardView): string {
  const [a, b] = f.titleNames;
  if (f.fromGroup) return t('fwd.titleGroup', { name: isolate(a ?? '') });
  if (b !== undefined) return t('fwd.titleTwo', { a: isolate(a ?? ''), b: isolate(b) });
  return t('fwd.titleOne', { a: isolate(a ?? '') });
}

/** One item's body as a line of text. */
export function forwardItemText(i: ForwardItemView): string {
  return i.kind === 'file' ? t('fwd.file', { name: i.attachment?.name ?? i.text }) : i.text;
}

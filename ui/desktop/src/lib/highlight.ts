// Search hits shown with the match emphasised — as text parts, never markup (pure, tested).

export interface Part {
  text: string;
  match: boolean;
}

/** `text` cut into parts, the case-insensitive occurrences of `query` marked. */
export function splitMatches(text: string, query: string): Part[] {
  const q = query.trim().toLowerCase();
  if (!q) return text ? [{ text, match: false }] : [];
  const lower = text.toLowerCase();
  const parts: Part[] = [];
  let from = 0;
  for (;;) {
    const at = lower.indexOf(q, from);
    if (at < 0 || lower.length !== text.length) break;
    if (at > from) parts.push({ text: text.slice(from, at), match: false });
    parts.push({ text: text.slice(at, at + q.length), match: true });
    from = at + q.length;
  }
  if (from < text.length) parts.push({ text: text.slice(from), match: false });
  return parts;
}

/** A window of `text` around the first match, with ellipses where cut. */
export function snippet(text: string, query: string, radius = 30): string {
  const flat = text.replace(/\s+/g, ' ');
  const at = query.trim() ? flat.toLowerCase().indexOf(query.trim().toLowerCase()) : -1;
  if (at < 0 || flat.length <= radius * 2 + query.length) return flat.length > radius * 3 ? `${flat.slice(0, radius * 3)}…` : flat;
  const start = Math.max(0, at - radius);
  const end = Math.min(flat.length, at + query.trim().length + radius);
  return `${start > 0 ? '…' : ''}${flat.slice(start, end)}${end < flat.length ? '…' : ''}`;
}

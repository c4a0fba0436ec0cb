// Avatars: the initials of a name on a colour derived from the user id, so a
// person keeps the same colour everywhere (pure, tested).

export const AVATAR_COLORS = [
  '#2f6fed',
  '#11a683',
  '#f08c1a',
  '#8b5cf6',
  '#e5484d',
  '#0ea5e9',
  '#d9468f',
  '#5b8c00',
  '#c2410c',
  '#4f46e5',
] as const;

/** The avatar colour of a user id; spreads neighbouring ids over the palette. */
export function avatarColor(userId: number): string {
  // The finaliser of MurmurHash3: every input bit affects the result.
  let h = Math.trunc(userId) | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h = (h ^ (h >>> 16)) >>> 0;
  return AVATAR_COLORS[h % AVATAR_COLORS.length] ?? AVATAR_COLORS[0];
}

const HAN = /\p{Script=Han}/u;

/**
 * What an avatar shows: the last two Chinese characters of a Chinese name
 * (张三丰 → 三丰), else the first letters of the first and last words
 * (Alice Smith → AS, bob → B); '?' for an empty name.
 */
export function initials(name: string): string {
  const trimmed = name.trim();
  if (!trimmed) return '?';
  const chars = [...trimmed];
  const han = chars.filter((c) => HAN.test(c));
  if (han.length > 0) return han.slice(-2).join('');
  const words = trimmed.split(/[\s._-]+/).filter(Boolean);
  const first = [...(words[0] ?? trimmed)][0] ?? '?';
  const last = words.length > 1 ? ([...(words[words.length - 1] ?? '')][0] ?? '') : '';
  return (first + last).toUpperCase();
}

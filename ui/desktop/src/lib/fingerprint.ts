// A certificate fingerprint (SHA-256, "AB:CD:…") laid out for comparing by eye (pure, tested).

/**
 * The fingerprint cut into lines of `perLine` bytes, each line but the last
 * keeping its trailing ':' so the lines joined give back the original text.
 */
export function fingerprintLines(fp: string, perLine = 8): string[] {
  const bytes = fp.trim().split(':');
  if (bytes.length < 2) return fp.trim().match(new RegExp(`.{1,${perLine * 2}}`, 'g')) ?? [];
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += perLine) {
    const last = i + perLine >= bytes.length;
    lines.push(bytes.slice(i, i + perLine).join(':') + (last ? '' : ':'));
  }
  return lines;
}

/** Whether two fingerprints are the same (case and separators ignored). */
export function sameFingerprint(a: string, b: string): boolean {
  const norm = (s: string) => s.replace(/[^0-9a-z]/gi, '').toLowerCase();
  return norm(a) === norm(b);
}

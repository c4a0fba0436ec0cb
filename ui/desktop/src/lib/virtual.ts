// The arithmetic of a virtualized list with variable row heights (pure,
// tested): offsets from sizes, the rows a viewport shows, and the scroll
// adjustment that keeps the view still when rows are added above.

/** offsets[i] is the top of row i; offsets[n] the total height. */
export function prefixOffsets(sizes: readonly number[]): Float64Array {
  const out = new Float64Array(sizes.length + 1);
  for (let i = 0; i < sizes.length; i++) out[i + 1] = (out[i] ?? 0) + (sizes[i] ?? 0);
  return out;
}

/** The row containing vertical position y (clamped to 0..n-1; -1 for no rows). */
export function indexAt(offsets: Float64Array, y: number): number {
  const n = offsets.length - 1;
  if (n <= 0) return -1;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((offsets[mid] ?? 0) <= y) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export interface Range {
  /** First row rendered. */
  start: number;
  /** One past the last row rendered. */
  end: number;
}

/** The rows to render for a viewport, with `overscan` extra rows on each side. */
export function visibleRange(offsets: Float64Array, scrollTop: number, viewport: number, overscan: number): Range {
  const n = offsets.length - 1;
  if (n <= 0) return { start: 0, end: 0 };
  const first = indexAt(offsets, Math.max(0, scrollTop));
  const last = indexAt(offsets, Math.max(0, scrollTop + Math.max(viewport, 1) - 1));
  return { start: Math.max(0, first - overscan), end: Math.min(n, last + 1 + overscan) };
}

/**
 * When rows were inserted before the first old row, the number of new rows
 * above it (so the scroll position can grow by their height); 0 when the old
 * first row is gone or nothing was inserted above.
 */
export function insertedAbove(oldFirstKey: string | undefined, newKeys: readonly string[]): number {
  if (oldFirstKey === undefined) return 0;
  const at = newKeys.indexOf(oldFirstKey);
  return at > 0 ? at : 0;
}

/** Whether a scroll position counts as "at the bottom" (within `slack` pixels). */
export function isAtBottom(scrollTop: number, viewport: number, total: number, slack = 24): boolean {
  return total - (scrollTop + viewport) <= slack;
}

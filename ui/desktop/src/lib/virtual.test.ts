import { describe, expect, it } from 'vitest';
import { indexAt, insertedAbove, isAtBottom, prefixOffsets, visibleRange } from './virtual';

describe('virtual list math', () => {
  const offsets = prefixOffsets([10, 20, 30, 40]);
  it('computes offsets and finds rows by position', () => {
    expect([...offsets]).toEqual([0, 10, 30, 60, 100]);
    expect(indexAt(offsets, 0)).toBe(0);
    expect(indexAt(offsets, 9.9)).toBe(0);
    expect(indexAt(offsets, 10)).toBe(1);
    expect(indexAt(offsets, 59)).toBe(2);
    expect(indexAt(offsets, 1000)).toBe(3);
    expect(indexAt(prefixOffsets([]), 5)).toBe(-1);
  });

  it('renders the rows in view plus overscan', () => {
    expect(visibleRange(offsets, 15, 20, 0)).toEqual({ start: 1, end: 3 });
    expect(visibleRange(offsets, 15, 20, 1)).toEqual({ start: 0, end: 4 });
    expect(visibleRange(prefixOffsets([]), 0, 100, 3)).toEqual({ start: 0, end: 0 });
    const big = prefixOffsets(new Array<number>(10_000).fill(50));
    expect(visibleRange(big, 250_000, 600, 5)).toEqual({ start: 4995, end: 5017 });
    expect(visibleRange(big, 499_400, 600, 5)).toEqual({ start: 9983, end: 10_000 });
  });

  it('knows how many rows were added above and when the view is at the bottom', () => {
    expect(insertedAbove('c', ['a', 'b', 'c', 'd'])).toBe(2);
    expect(insertedAbove('c', ['c', 'd'])).toBe(0);
    expect(insertedAbove('x', ['a'])).toBe(0);
    expect(insertedAbove(undefined, ['a'])).toBe(0);
    expect(isAtBottom(400, 600, 1000)).toBe(true);
    expect(isAtBottom(300, 600, 1000)).toBe(false);
  });
});

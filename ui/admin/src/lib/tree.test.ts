import { describe, expect, it } from 'vitest';
import { buildTree, canMoveUnder, orderBefore, pathOf } from './tree';
import type { Department } from './api';

const d = (id: number, parent_id: number | null, name: string, sort_order = 0): Department => ({
  id,
  parent_id,
  name,
  sort_order,
  hidden: false,
  member_count: 0,
});

const list = [d(3, 1, '产品部', 20), d(1, null, '总部'), d(2, 1, '研发部', 10), d(4, 2, '前端组'), d(5, 99, '孤儿')];

describe('buildTree', () => {
  it('nests departments and orders siblings by sort_order', () => {
    const tree = buildTree(list);
    expect(tree.map((n) => n.department.name)).toEqual(['总部', '孤儿']);
    expect(tree[0]?.children.map((n) => n.department.name)).toEqual(['研发部', '产品部']);
    expect(tree[0]?.children[0]?.children[0]?.department.name).toBe('前端组');
    expect(tree[0]?.children[0]?.children[0]?.depth).toBe(2);
  });

  it('never loops on a cycle', () => {
    const cyclic = [d(1, 2, 'a'), d(2, 1, 'b')];
    expect(buildTree(cyclic)).toEqual([]);
  });
});

describe('moving', () => {
  it('refuses to move a department under itself or its descendants', () => {
    expect(canMoveUnder(list, 2, 4)).toBe(false);
    expect(canMoveUnder(list, 2, 2)).toBe(false);
    expect(canMoveUnder(list, 4, 3)).toBe(true);
    expect(canMoveUnder(list, 4, null)).toBe(true);
  });

  it('computes an order that lands before a sibling', () => {
    const siblings = [d(2, 1, 'a', 10), d(3, 1, 'b', 20), d(6, 1, 'c', 30)];
    expect(orderBefore(siblings, d(3, 1, 'b', 20))).toBe(15);
    expect(orderBefore(siblings, d(2, 1, 'a', 10))).toBe(0);
  });

  it('names a path', () => {
    expect(pathOf(list, 4)).toBe('总部 / 研发部 / 前端组');
    expect(pathOf(list, null)).toBe('');
  });
});

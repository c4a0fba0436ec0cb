import { describe, expect, it } from 'vitest';
import { ancestorsOf, buildTree, canMoveUnder, dropChanges, isEmptyDepartment, pathOf, placeAt, shift, type Placement } from './tree';
import type { Department } from './api';

const d = (id: number, parent_id: number | null, name: string, sort_order = 0, member_count = 0): Department => ({
  id,
  parent_id,
  name,
  sort_order,
  hidden: false,
  member_count,
});

// Listed out of order on purpose: the API's order must not matter.
const list = [d(3, 1, '产品部', 20), d(1, null, '总部', 10), d(2, 1, '研发部', 10, 2), d(4, 2, '前端组'), d(5, 99, '孤儿', 5), d(6, 1, '市场部', 30)];

/** Applies placements to a copy of the list, as the server would. */
function applied(departments: Department[], changes: Placement[]): Department[] {
  return departments.map((x) => {
    const c = changes.find((p) => p.id === x.id);
    return c ? { ...x, parent_id: c.parent_id, sort_order: c.sort_order } : x;
  });
}
const childrenNames = (departments: Department[], parent: number | null) =>
  (parent === null ? buildTree(departments) : (find(buildTree(departments), parent)?.children ?? [])).map((n) => n.department.name);
function find(nodes: ReturnType<typeof buildTree>, id: number): ReturnType<typeof buildTree>[number] | undefined {
  for (const n of nodes) {
    if (n.department.id === id) return n;
    const inner = find(n.children, id);
    if (inner) return inner;
  }
  return undefined;
}

describe('buildTree', () => {
  it('nests departments and orders siblings by sort_order, then id', () => {
    const tree = buildTree(list);
    expect(tree.map((n) => n.department.name)).toEqual(['孤儿', '总部']);
    expect(tree[1]?.children.map((n) => n.department.name)).toEqual(['研发部', '产品部', '市场部']);
    expect(tree[1]?.children[0]?.children[0]?.department.name).toBe('前端组');
    expect(tree[1]?.children[0]?.children[0]?.depth).toBe(2);
    expect(buildTree([d(8, null, 'b', 1), d(7, null, 'a', 1)]).map((n) => n.department.name)).toEqual(['a', 'b']);
  });

  it('never loops on a cycle', () => {
    expect(buildTree([d(1, 2, 'a'), d(2, 1, 'b')])).toEqual([]);
  });
});

describe('moving and reordering', () => {
  it('refuses to move a department under itself or its descendants', () => {
    expect(canMoveUnder(list, 2, 4)).toBe(false);
    expect(canMoveUnder(list, 2, 2)).toBe(false);
    expect(canMoveUnder(list, 4, 3)).toBe(true);
    expect(canMoveUnder(list, 4, null)).toBe(true);
    expect(dropChanges(list, 2, 4, 'inside')).toBeNull();
    expect(dropChanges(list, 1, 4, 'before')).toBeNull();
  });

  it('moves up and down among siblings with one change when there is room', () => {
    const up = shift(list, 6, -1);
    expect(up).toEqual([{ id: 6, parent_id: 1, sort_order: 15 }]);
    expect(childrenNames(applied(list, up), 1)).toEqual(['研发部', '市场部', '产品部']);
    const down = shift(list, 2, 1);
    expect(childrenNames(applied(list, down), 1)).toEqual(['产品部', '研发部', '市场部']);
    expect(shift(list, 2, -1)).toEqual([]);
    expect(shift(list, 6, 1)).toEqual([]);
  });

  it('renumbers the siblings when two orders leave no room', () => {
    const tight = [d(1, null, 'a', 10), d(2, null, 'b', 11), d(3, null, 'c', 11)];
    const changes = shift(tight, 3, -1);
    expect(childrenNames(applied(tight, changes), null)).toEqual(['a', 'c', 'b']);
    // Only the departments whose number changes are sent.
    expect(changes.map((c) => c.id).sort()).toEqual([2, 3]);
  });

  it('drops before, after and inside another department', () => {
    const before = dropChanges(list, 4, 3, 'before');
    expect(before).not.toBeNull();
    const moved = applied(list, before ?? []);
    expect(childrenNames(moved, 1)).toEqual(['研发部', '前端组', '产品部', '市场部']);
    const after = applied(list, dropChanges(list, 2, 6, 'after') ?? []);
    expect(childrenNames(after, 1)).toEqual(['产品部', '市场部', '研发部']);
    const inside = dropChanges(list, 6, 3, 'inside');
    expect(inside).toEqual([{ id: 6, parent_id: 3, sort_order: 10 }]);
    // Dropping where it already is changes nothing.
    expect(dropChanges(list, 2, 3, 'before')).toEqual([]);
  });

  it('moves to the top level after the last top-level department', () => {
    const changes = placeAt(list, 4, null, Number.MAX_SAFE_INTEGER);
    expect(changes).toEqual([{ id: 4, parent_id: null, sort_order: 20 }]);
    expect(childrenNames(applied(list, changes), null)).toEqual(['孤儿', '总部', '前端组']);
  });
});

describe('paths and emptiness', () => {
  it('names a path and lists ancestors', () => {
    expect(pathOf(list, 4)).toBe('总部 / 研发部 / 前端组');
    expect(pathOf(list, null)).toBe('');
    expect(ancestorsOf(list, 4)).toEqual([2, 1]);
  });

  it('knows which departments may be deleted', () => {
    expect(isEmptyDepartment(list, 4)).toBe(true);
    expect(isEmptyDepartment(list, 2)).toBe(false); // members and a child
    expect(isEmptyDepartment(list, 1)).toBe(false); // children
    expect(isEmptyDepartment([d(9, null, 'x', 0, 3)], 9)).toBe(false); // members
  });
});

// The flat department list from the API as a tree, siblings in display order.
import type { Department } from './api';

export interface TreeNode {
  department: Department;
  children: TreeNode[];
  depth: number;
}

export function buildTree(departments: Department[]): TreeNode[] {
  const byParent = new Map<number | null, Department[]>();
  const ids = new Set(departments.map((d) => d.id));
  for (const d of departments) {
    // An orphan (its parent was not listed) is shown at the top level rather than lost.
    const parent = d.parent_id !== null && ids.has(d.parent_id) ? d.parent_id : null;
    const list = byParent.get(parent) ?? [];
    list.push(d);
    byParent.set(parent, list);
  }
  const seen = new Set<number>();
  const build = (parent: number | null, depth: number): TreeNode[] =>
    (byParent.get(parent) ?? [])
      .slice()
      .sort((a, b) => a.sort_order - b.sort_order || a.id - b.id)
      .filter((d) => !seen.has(d.id) && seen.add(d.id) !== undefined)
      .map((d) => ({ department: d, depth, children: build(d.id, depth + 1) }));
  return build(null, 0);
}

/** Ids of a department and everything below it. */
export function subtreeIds(departments: Department[], root: number): Set<number> {
  const out = new Set<number>([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const d of departments) {
      if (d.parent_id !== null && out.has(d.parent_id) && !out.has(d.id)) {
        out.add(d.id);
        grew = true;
      }
    }
  }
  return out;
}

/** A department may be dropped onto any department outside its own subtree. */
export function canMoveUnder(departments: Department[], moving: number, target: number | null): boolean {
  if (target === null) return true;
  return !subtreeIds(departments, moving).has(target);
}

/** The sort_order that places `moving` just before `before` among its siblings. */
export function orderBefore(siblings: Department[], before: Department): number {
  const sorted = siblings.slice().sort((a, b) => a.sort_order - b.sort_order || a.id - b.id);
  const i = sorted.findIndex((d) => d.id === before.id);
  const prev = i > 0 ? sorted[i - 1] : undefined;
  return prev ? Math.floor((prev.sort_order + before.sort_order) / 2) : before.sort_order - 10;
}

/** "总部 / 研发部 / 前端组" for a department id. */
export function pathOf(departments: Department[], id: number | null): string {
  const byId = new Map(departments.map((d) => [d.id, d]));
  const parts: string[] = [];
  let cur = id === null ? undefined : byId.get(id);
  while (cur && parts.length < 64) {
    parts.unshift(cur.name);
    cur = cur.parent_id === null ? undefined : byId.get(cur.parent_id);
  }
  return parts.join(' / ');
}

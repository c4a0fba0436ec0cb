// The flat department list from the API as a tree, siblings in display order,
// and the sort_order changes that drag-and-drop and "move up/down" need.
import type { Department } from './api';

export interface TreeNode {
  department: Department;
  children: TreeNode[];
  depth: number;
}

const bySortOrder = (a: Department, b: Department): number => a.sort_order - b.sort_order || a.id - b.id;

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
      .sort(bySortOrder)
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

/** A department may go under any department outside its own subtree (null: the top level). */
export function canMoveUnder(departments: Department[], moving: number, target: number | null): boolean {
  if (target === null) return true;
  return !subtreeIds(departments, moving).has(target);
}

export function siblingsOf(departments: Department[], parent: number | null): Department[] {
  return departments.filter((d) => d.parent_id === parent).sort(bySortOrder);
}

export interface Placement {
  id: number;
  parent_id: number | null;
  sort_order: number;
}

/**
 * The changes that put `moving` under `parent` at `index` among that parent's
 * other children. One change when a free sort_order fits between the new
 * neighbours; otherwise the siblings are renumbered 10, 20, 30… and only those
 * whose number changes are listed. Empty when nothing moves.
 */
export function placeAt(departments: Department[], moving: number, parent: number | null, index: number): Placement[] {
  const self = departments.find((d) => d.id === moving);
  if (!self) return [];
  const others = siblingsOf(departments, parent).filter((d) => d.id !== moving);
  const at = Math.max(0, Math.min(index, others.length));
  const prev = others[at - 1];
  const next = others[at];
  const sameParent = self.parent_id === parent;
  if (sameParent) {
    const current = siblingsOf(departments, parent).findIndex((d) => d.id === moving);
    if (current === at) return [];
  }
  let free: number | null = null;
  if (!prev && !next) free = sameParent ? self.sort_order : 10;
  else if (!prev && next) free = next.sort_order - 10;
  else if (prev && !next) free = prev.sort_order + 10;
  else if (prev && next && next.sort_order - prev.sort_order >= 2) free = Math.floor((prev.sort_order + next.sort_order) / 2);
  if (free !== null) return [{ id: moving, parent_id: parent, sort_order: free }];
  const ordered = [...others.slice(0, at), self, ...others.slice(at)];
  return ordered
    .map((d, i) => ({ d, sort_order: (i + 1) * 10 }))
    .filter(({ d, sort_order }) => d.id === moving || d.sort_order !== sort_order)
    .map(({ d, sort_order }) => ({ id: d.id, parent_id: parent, sort_order }));
}

export type DropZone = 'before' | 'inside' | 'after';

/** What dropping `moving` on `target` (in the given zone) changes; null when not allowed. */
export function dropChanges(departments: Department[], moving: number, target: number, zone: DropZone): Placement[] | null {
  const t = departments.find((d) => d.id === target);
  if (!t || moving === target) return null;
  if (zone === 'inside') {
    if (!canMoveUnder(departments, moving, target)) return null;
    return placeAt(departments, moving, target, Number.MAX_SAFE_INTEGER);
  }
  if (!canMoveUnder(departments, moving, t.parent_id)) return null;
  const others = siblingsOf(departments, t.parent_id).filter((d) => d.id !== moving);
  const i = others.findIndex((d) => d.id === target);
  return placeAt(departments, moving, t.parent_id, zone === 'before' ? i : i + 1);
}

/** The changes that move a department one place up (-1) or down (+1) among its siblings. */
export function shift(departments: Department[], id: number, delta: -1 | 1): Placement[] {
  const self = departments.find((d) => d.id === id);
  if (!self) return [];
  const siblings = siblingsOf(departments, self.parent_id);
  const i = siblings.findIndex((d) => d.id === id);
  const to = i + delta;
  if (to < 0 || to >= siblings.length) return [];
  return placeAt(departments, id, self.parent_id, to);
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

/** Ids of the departments above `id`, nearest first (to expand the path to a selection). */
export function ancestorsOf(departments: Department[], id: number): number[] {
  const byId = new Map(departments.map((d) => [d.id, d]));
  const out: number[] = [];
  let cur = byId.get(id);
  while (cur && cur.parent_id !== null && out.length < 64 && !out.includes(cur.parent_id)) {
    out.push(cur.parent_id);
    cur = byId.get(cur.parent_id);
  }
  return out;
}

/** A department can be deleted only when it has no sub-departments and no members (the server checks too). */
export function isEmptyDepartment(departments: Department[], id: number): boolean {
  const d = departments.find((x) => x.id === id);
  return !!d && d.member_count === 0 && !departments.some((x) => x.parent_id === id);
}

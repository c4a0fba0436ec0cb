// Uploads and downloads as every component sees them: the list (newest
// first) from api.transfers() and `transfers` events, and progress samples
// per transfer for the speed shown while bytes move.
import { api } from './api';
import { onAppEvent } from './events';
import { addSample, speed, type Sample } from './files';
import type { TransferView } from './types';

class Transfers {
  /** Newest first; replaced (never mutated) on every change. */
  list = $state.raw<TransferView[]>([]);
}
export const transfers = new Transfers();

const samples = new Map<string, Sample[]>();

/** Merges changed transfers in (a transfer not known yet goes first: it is the newest). */
export function applyTransfers(updates: readonly TransferView[], now = Date.now()): void {
  if (updates.length === 0) return;
  const byId = new Map(updates.map((t) => [t.id, t]));
  const list = transfers.list.map((t) => byId.get(t.id) ?? t);
  const known = new Set(transfers.list.map((t) => t.id));
  const fresh = updates.filter((t) => !known.has(t.id));
  for (const t of updates) {
    if (t.state === 'running') samples.set(t.id, addSample(samples.get(t.id) ?? [], { ms: now, bytes: t.doneBytes }));
    else samples.delete(t.id);
  }
  transfers.list = [...fresh.reverse(), ...list];
}

/** Bytes per second of a running transfer over the last few seconds, or null. */
export function speedOf(id: string, now = Date.now()): number | null {
  return speed(samples.get(id) ?? [], now);
}

/** Loads the list and follows `transfers` events; returns the function that stops following. */
export function followTransfers(): () => void {
  const off = onAppEvent((e) => {
    if (e.event === 'transfers') applyTransfers(e.transfers);
  });
  api
    .transfers()
    .then((list) => {
      // Events that arrived meanwhile are newer than the answer.
      const seen = new Map(transfers.list.map((t) => [t.id, t]));
      transfers.list = [...transfers.list.filter((t) => !list.some((x) => x.id === t.id)), ...list.map((t) => seen.get(t.id) ?? t)];
    })
    .catch((e: unknown) => console.error('transfers failed', e));
  return off;
}

export function resetTransfers(): void {
  transfers.list = [];
  samples.clear();
}

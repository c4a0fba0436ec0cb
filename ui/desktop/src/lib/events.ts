// The shell's events, fanned out to components. App subscribes to the shell
// once (api.onEvent) and forwards here; components listen while mounted.
import type { AppEvent } from './types';

type Handler = (e: AppEvent) => void;
const handlers = new Set<Handler>();

/** Listens to every event; returns the function that stops listening. */
export function onAppEvent(handler: Handler): () => void {
  handlers.add(handler);
  return () => handlers.delete(handler);
}

export function dispatch(e: AppEvent): void {
  for (const h of [...handlers]) {
    try {
      h(e);
    } catch (err) {
      console.error('event handler failed', err);
    }
  }
}

/**
 * Wraps `fn` so that many calls within one task run it once, on a microtask
 * (e.g. one conversation reload for a burst of events).
 */
export function coalesce(fn: () => void): () => void {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      fn();
    });
  };
}

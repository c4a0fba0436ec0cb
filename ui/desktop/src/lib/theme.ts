// The colour theme: `data-theme` on <html>; 'system' follows prefers-color-scheme live.
import type { Settings } from './types';

let stopFollowing: (() => void) | null = null;

function set(dark: boolean): void {
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
}

export function applyTheme(theme: Settings['theme']): void {
  stopFollowing?.();
  stopFollowing = null;
  if (theme !== 'system') {
    set(theme === 'dark');
    return;
  }
  const query = typeof window.matchMedia === 'function' ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  set(query?.matches ?? false);
  if (query) {
    const listener = (e: MediaQueryListEvent) => set(e.matches);
    query.addEventListener('change', listener);
    stopFollowing = () => query.removeEventListener('change', listener);
  }
}

// Helpers for the component tests: a fake server behind `fetch` and form input.
import { vi } from 'vitest';

export interface Call {
  method: string;
  path: string;
  body: unknown;
  headers: Record<string, string>;
}

type Handler = (call: Call) => Response | Promise<Response>;

export function json(status: number, body: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

/**
 * Replaces `fetch` with a router over "METHOD /path" (the path after
 * /api/admin/v1, query string included; a route without "?" also matches
 * with any query). Unrouted calls answer 404 so a test notices them.
 */
export function fakeServer(routes: Record<string, Handler>): Call[] {
  const calls: Call[] = [];
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const path = url.replace(/^.*\/api\/admin\/v1/, '');
    const method = init?.method ?? 'GET';
    let body: unknown = undefined;
    if (typeof init?.body === 'string') body = JSON.parse(init.body) as unknown;
    else if (init?.body !== undefined && init.body !== null) body = init.body;
    const call: Call = { method, path, body, headers: (init?.headers ?? {}) as Record<string, string> };
    calls.push(call);
    const handler = routes[`${method} ${path}`] ?? routes[`${method} ${path.split('?')[0]}`];
    return handler ? handler(call) : json(404, { code: 'NOT_FOUND', message: `no route ${method} ${path}` });
  });
  return calls;
}

/** Types into an input or select the way a person would (value, then the input and change events). */
export function type(el: Element | null, value: string): void {
  if (!(el instanceof HTMLInputElement || el instanceof HTMLSelectElement || el instanceof HTMLTextAreaElement)) {
    throw new Error(`not a form field: ${String(el)}`);
  }
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  el.dispatchEvent(new Event('change', { bubbles: true }));
}

export function click(el: Element | null): void {
  if (!(el instanceof HTMLElement)) throw new Error(`not clickable: ${String(el)}`);
  el.click();
}

export function submit(form: Element | null): void {
  if (!(form instanceof HTMLFormElement)) throw new Error(`not a form: ${String(form)}`);
  form.dispatchEvent(new Event('submit', { bubbles: true, cancelable: true }));
}

/** The button whose text is exactly `text`. */
export function button(root: ParentNode, text: string): HTMLButtonElement {
  const found = [...root.querySelectorAll('button')].find((b) => b.textContent?.trim() === text);
  if (!found) throw new Error(`no button "${text}"; have: ${[...root.querySelectorAll('button')].map((b) => b.textContent?.trim()).join(' | ')}`);
  return found;
}

/** Script-injection payloads; payload n calls `__pwned(n)` if any of it runs. */
export function payloads(): string[];
/** Every element's tag and attribute names under `root`, in document order. */
export function shape(root: Element): string[];
/** Event handlers, and javascript: URLs, under `root`. */
export function dangers(root: Element): string[];

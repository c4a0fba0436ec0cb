/** Script-injection payloads; payload n calls `__pwned(n)` if any of it runs. */
export function payloads(): string[];

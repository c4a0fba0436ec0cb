// The error codes of the administration API ({code, message} bodies), mirrored
// from the Error schema of crates/server/src/admin/openapi.json (a test keeps
// the two equal), plus the two the client makes itself. Each code's sentence
// is `err.<CODE>` in i18n.ts, in both languages.
import type { Key } from './i18n';

export const SERVER_CODES = [
  'BAD_REQUEST',
  'UNAUTHENTICATED',
  'BAD_CREDENTIALS',
  'ACCOUNT_DISABLED',
  'PASSWORD_CHANGE_REQUIRED',
  'FORBIDDEN',
  'NOT_FOUND',
  'CONFLICT',
  'IMPORT_INVALID',
  'RATE_LIMITED',
  'TOO_LARGE',
  'INTERNAL',
  'SESSION_EXPIRED',
  'SECOND_FACTOR_REQUIRED',
  'BAD_CODE',
] as const;

/** NETWORK: the server was not reached. UNKNOWN: a code this console does not know yet. */
export const CLIENT_CODES = ['NETWORK', 'UNKNOWN'] as const;

export type ErrorCode = (typeof SERVER_CODES)[number] | (typeof CLIENT_CODES)[number];

const all = new Set<string>([...SERVER_CODES, ...CLIENT_CODES]);

export function isErrorCode(code: string): code is ErrorCode {
  return all.has(code);
}

export function errorKey(code: ErrorCode): Key {
  return `err.${code}`;
}

/**
 * Codes whose server sentence says what to fix (which field, which conflict),
 * so it is shown after ours; the others are fully explained by our sentence.
 */
export const DETAILED: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['BAD_REQUEST', 'CONFLICT', 'UNKNOWN']);

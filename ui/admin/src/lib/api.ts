// The administration API client: one place that knows the URL layout, the
// bearer token and how errors come back ({code, message, errors?}). The types
// mirror crates/server/src/admin/openapi.json.
import { isErrorCode, type ErrorCode } from './errors';

export type Role = 'admin' | 'auditor' | 'agent' | 'publisher' | 'staff';

export interface Me {
  id: number;
  account: string;
  display_name: string;
  roles: Role[];
  must_change_password: boolean;
  /** What must happen before anything else: a TOTP code, an enrolment, or nothing. */
  second_factor: 'done' | 'code' | 'enrol';
  totp_enrolled: boolean;
}

export interface PendingChange {
  id: number;
  kind: 'person.roles' | 'retention.set';
  target: string;
  detail: Record<string, unknown>;
  requested_by: number;
  requested_at_ms: number;
  state: 'pending' | 'confirmed' | 'rejected';
  decided_by: number | null;
}

export interface Department {
  id: number;
  parent_id: number | null;
  name: string;
  sort_order: number;
  hidden: boolean;
  member_count: number;
}

export interface Person {
  id: number;
  account: string;
  display_name: string;
  employee_no: string;
  title: string;
  phone: string;
  email: string;
  avatar: string;
  primary_department_id: number | null;
  department_ids: number[];
  manager_id: number | null;
  status: 'active' | 'disabled' | 'deleted';
  roles: Role[];
  online: boolean;
}

export interface PersonInput {
  account?: string;
  display_name?: string;
  password?: string;
  employee_no?: string;
  title?: string;
  phone?: string;
  email?: string;
  primary_department_id?: number | null;
  department_ids?: number[];
  manager_id?: number | null;
  roles?: Role[];
  disabled?: boolean;
}

export interface Session {
  id: number;
  user_id: number;
  account: string;
  display_name: string;
  device: string;
  created_at_ms: number;
  last_seen_at_ms: number;
  online: boolean;
}

/** An integration application, as the administration API lists it (never its secrets). */
export interface App {
  id: number;
  name: string;
  avatar_url: string;
  scopes: string[];
  allowed_cidrs: string[];
  callback_url: string;
  client_id: string;
  bot_user_id: number;
  disabled: boolean;
  created_at: number;
  updated_at: number;
}

/** The answer to creating an application or rotating its secret: shown once. */
export interface AppSecrets {
  app: App;
  client_id: string;
  client_secret: string;
  signing_secret: string;
}

/** One event of an application and how its delivery goes. */
export interface AppEvent {
  id: number;
  app_id: number;
  kind: string;
  created_at: number;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  next_attempt_at: number;
  last_error: string;
  delivered_at: number | null;
}

export interface ArchivedMessage {
  conversation_id: number;
  conversation_kind: 'direct' | 'group';
  conversation_name: string;
  seq: number;
  sender_id: number;
  sender_account: string;
  sender_name: string;
  sent_at_ms: number;
  kind: 'text' | 'system' | 'recall' | 'file';
  text: string;
  recalled: boolean;
  /** For a file, image or folder message: what it holds. */
  file?: ArchivedFile;
}

export interface ArchivedFile {
  kind: 'file' | 'image' | 'folder';
  /** 64 hex digits; the bytes are at /audit/messages/files/{file_id}. */
  file_id: string;
  size: number;
  file_count: number;
}

export interface AuditEntry {
  id: number;
  at_ms: number;
  actor_id: number | null;
  actor_account: string;
  action: string;
  target: string;
  detail: unknown;
}

export interface Retention {
  direct_days: number;
  group_days: number;
}

export interface RowError {
  row: number;
  column: string;
  reason: string;
}

export interface ImportSummary {
  created: number;
  updated: number;
  departments_created: number;
}

/** A failed call: the HTTP status (0 when the server was not reached), the server's code and sentence. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly rows: RowError[];

  constructor(status: number, code: ErrorCode, message: string, rows: RowError[] = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.rows = rows;
  }
}

interface ErrorBody {
  code: string;
  message: string;
  errors?: RowError[];
}

function isErrorBody(v: unknown): v is ErrorBody {
  if (typeof v !== 'object' || v === null) return false;
  const body = v as { code?: unknown; message?: unknown };
  return typeof body.code === 'string' && typeof body.message === 'string';
}

function isRowError(v: unknown): v is RowError {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as { row?: unknown; column?: unknown; reason?: unknown };
  return typeof r.row === 'number' && typeof r.column === 'string' && typeof r.reason === 'string';
}

const BY_STATUS: Partial<Record<number, ErrorCode>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  413: 'TOO_LARGE',
  422: 'IMPORT_INVALID',
  429: 'RATE_LIMITED',
};

/** The ApiError for a failed response's status and (possibly missing or malformed) body. */
export function errorFrom(status: number, body: unknown): ApiError {
  if (!isErrorBody(body)) {
    // A plain-text refusal (the server's framework rejecting a malformed query
    // or path) or a proxy's page: the status still says what kind of failure it is.
    return new ApiError(status, BY_STATUS[status] ?? 'INTERNAL', '');
  }
  const rows = Array.isArray(body.errors) ? body.errors.filter(isRowError) : [];
  // A code newer than this console is shown with the server's sentence.
  return new ApiError(status, isErrorCode(body.code) ? body.code : 'UNKNOWN', body.message, rows);
}

/** The file name of a Content-Disposition header (`filename="x.csv"`), if any. */
export function filenameOf(disposition: string | null): string | null {
  const m = disposition ? /filename="?([^";]+)"?/i.exec(disposition) : null;
  return m?.[1] ?? null;
}

export type Query = Record<string, string | number | undefined>;

export function queryString(q: Query): string {
  const parts = Object.entries(q)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

export class Api {
  token: string | null = null;
  /** Called when a request that carried a token is answered 401: the session ended. */
  onUnauthenticated: ((code: ErrorCode) => void) | null = null;
  private readonly base: string;
  private readonly fetcher: typeof fetch;

  constructor(base = '/api/admin/v1', fetcher: typeof fetch = (...args) => fetch(...args)) {
    this.base = base;
    this.fetcher = fetcher;
  }

  /** Sends a request; resolves with the parsed JSON, or rejects with an ApiError. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.send(method, path, body === undefined ? undefined : JSON.stringify(body), 'application/json');
    if (response.status === 204) {
      return undefined as T;
    }
    return (await response.json()) as T;
  }

  /** Downloads a file (export) with the bearer token, which a plain link could not send. */
  async download(path: string): Promise<{ blob: Blob; filename: string | null }> {
    const response = await this.send('GET', path);
    return { blob: await response.blob(), filename: filenameOf(response.headers.get('Content-Disposition')) };
  }

  /** Sends a file (a Blob is streamed by the browser, never read into a string here). */
  async upload<T>(path: string, body: Blob, contentType: string): Promise<T> {
    return (await (await this.send('POST', path, body, contentType)).json()) as T;
  }

  private async send(method: string, path: string, body?: BodyInit, contentType?: string): Promise<Response> {
    const headers: Record<string, string> = {};
    const token = this.token;
    if (token) headers['Authorization'] = `Bearer ${token}`;
    if (body !== undefined && contentType) headers['Content-Type'] = contentType;
    let response: Response;
    try {
      response = await this.fetcher(`${this.base}${path}`, { method, headers, body });
    } catch (e) {
      throw new ApiError(0, 'NETWORK', e instanceof Error ? e.message : String(e));
    }
    if (!response.ok) {
      let parsed: unknown = null;
      try {
        parsed = await response.json();
      } catch {
        parsed = null;
      }
      const error = errorFrom(response.status, parsed);
      // The session ended: only UNAUTHENTICATED says so (a wrong current password
      // when changing it is a 401 BAD_CREDENTIALS), and only for the current token
      // (a late answer to a request made with an old one does not count).
      if ((error.code === 'UNAUTHENTICATED' || error.code === 'SESSION_EXPIRED') && token && token === this.token) {
        this.onUnauthenticated?.(error.code);
      }
      throw error;
    }
    return response;
  }

  login(account: string, password: string): Promise<{ token: string; me: Me }> {
    return this.request('POST', '/login', { account, password });
  }
}

export const api = new Api();

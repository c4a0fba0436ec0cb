// The administration API client: one place that knows the URL layout, the
// bearer token and how errors come back ({code, message, errors?}).

export type Role = 'admin' | 'auditor' | 'agent' | 'staff';

export interface Me {
  id: number;
  account: string;
  display_name: string;
  roles: Role[];
  must_change_password: boolean;
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

export interface ArchivedMessage {
  conversation_id: number;
  conversation_kind: 'direct' | 'group';
  conversation_name: string;
  seq: number;
  sender_account: string;
  sender_name: string;
  sent_at_ms: number;
  kind: 'text' | 'system' | 'recall';
  text: string;
  recalled: boolean;
}

export interface AuditEntry {
  id: number;
  at_ms: number;
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

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly rows: RowError[];

  constructor(status: number, code: string, message: string, rows: RowError[] = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.rows = rows;
  }
}

function isErrorBody(v: unknown): v is { code: string; message: string; errors?: RowError[] } {
  return typeof v === 'object' && v !== null && typeof (v as { code?: unknown }).code === 'string';
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

  /** Downloads a file (export) as a Blob with the bearer token. */
  async download(path: string): Promise<Blob> {
    return (await this.send('GET', path)).blob();
  }

  async upload<T>(path: string, body: Blob | ArrayBuffer, contentType: string): Promise<T> {
    return (await (await this.send('POST', path, body, contentType)).json()) as T;
  }

  private async send(method: string, path: string, body?: BodyInit, contentType?: string): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.token) headers['Authorization'] = `Bearer ${this.token}`;
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
      if (isErrorBody(parsed)) {
        throw new ApiError(response.status, parsed.code, parsed.message, parsed.errors ?? []);
      }
      throw new ApiError(response.status, 'INTERNAL', `HTTP ${response.status}`);
    }
    return response;
  }

  login(account: string, password: string): Promise<{ token: string; me: Me }> {
    return this.request('POST', '/login', { account, password });
  }
}

export const api = new Api();

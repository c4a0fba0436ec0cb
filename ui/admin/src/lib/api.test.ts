import { describe, expect, it } from 'vitest';
import { Api, ApiError, queryString } from './api';

function fake(status: number, body: unknown): typeof fetch {
  return async (_url, init) => {
    fake.last = init;
    return new Response(body === undefined ? null : JSON.stringify(body), { status });
  };
}
fake.last = undefined as RequestInit | undefined;

describe('Api', () => {
  it('sends the bearer token and JSON', async () => {
    const api = new Api('/x', fake(200, { ok: 1 }));
    api.token = 'tok';
    expect(await api.request('POST', '/y', { a: 1 })).toEqual({ ok: 1 });
    const headers = fake.last?.headers as Record<string, string>;
    expect(headers['Authorization']).toBe('Bearer tok');
    expect(fake.last?.body).toBe('{"a":1}');
  });

  it('turns {code, message, errors} into an ApiError', async () => {
    const api = new Api('/x', fake(422, { code: 'IMPORT_INVALID', message: '2 problems', errors: [{ row: 3, column: 'email', reason: 'bad' }] }));
    const err = await api.request('POST', '/import').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('IMPORT_INVALID');
    expect((err as ApiError).status).toBe(422);
    expect((err as ApiError).rows[0]?.row).toBe(3);
  });

  it('maps bodies without a code and network failures', async () => {
    const plain = await new Api('/x', async () => new Response('oops', { status: 502 })).request('GET', '/').catch((e: unknown) => e);
    expect((plain as ApiError).code).toBe('INTERNAL');
    const down = await new Api('/x', async () => {
      throw new TypeError('Failed to fetch');
    })
      .request('GET', '/')
      .catch((e: unknown) => e);
    expect((down as ApiError).code).toBe('NETWORK');
  });

  it('handles 204', async () => {
    expect(await new Api('/x', fake(204, undefined)).request('POST', '/logout')).toBeUndefined();
  });

  it('builds query strings, dropping empty values', () => {
    expect(queryString({ q: '张 三', limit: 5, x: undefined, y: '' })).toBe('?q=%E5%BC%A0%20%E4%B8%89&limit=5');
    expect(queryString({})).toBe('');
  });
});

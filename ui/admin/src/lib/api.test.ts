import { describe, expect, it, vi } from 'vitest';
import { Api, ApiError, errorFrom, filenameOf, queryString } from './api';

function recorder(status: number, body: unknown, headers: Record<string, string> = {}) {
  const seen: RequestInit[] = [];
  const fetcher: typeof fetch = async (_url, init) => {
    if (init) seen.push(init);
    return new Response(body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body), { status, headers });
  };
  return { seen, fetcher };
}

describe('Api', () => {
  it('sends the bearer token and JSON', async () => {
    const { seen, fetcher } = recorder(200, { ok: 1 });
    const api = new Api('/x', fetcher);
    api.token = 'tok';
    expect(await api.request('POST', '/y', { a: 1 })).toEqual({ ok: 1 });
    const headers = seen[0]?.headers as Record<string, string>;
    expect(headers['Authorization']).toBe('Bearer tok');
    expect(headers['Content-Type']).toBe('application/json');
    expect(seen[0]?.body).toBe('{"a":1}');
  });

  it('sends no Authorization header before login', async () => {
    const { seen, fetcher } = recorder(200, {});
    await new Api('/x', fetcher).request('GET', '/');
    expect((seen[0]?.headers as Record<string, string>)['Authorization']).toBeUndefined();
  });

  it('turns {code, message, errors} into an ApiError with the row errors', async () => {
    const { fetcher } = recorder(422, {
      code: 'IMPORT_INVALID',
      message: '2 problems',
      errors: [
        { row: 3, column: 'email', reason: 'bad' },
        { row: 'x', column: 1 },
      ],
    });
    const err = await new Api('/x', fetcher).request('POST', '/import').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 422, code: 'IMPORT_INVALID', message: '2 problems' });
    // A malformed entry is dropped rather than rendered as garbage.
    expect((err as ApiError).rows).toEqual([{ row: 3, column: 'email', reason: 'bad' }]);
  });

  it('maps bodies without a code by status, unknown codes, and network failures', async () => {
    const plain = await new Api('/x', recorder(502, '<html>bad gateway</html>').fetcher).request('GET', '/').catch((e: unknown) => e);
    expect(plain).toMatchObject({ status: 502, code: 'INTERNAL' });
    expect(errorFrom(403, null)).toMatchObject({ code: 'FORBIDDEN' });
    // The framework's plain-text refusal of a malformed query string.
    expect(errorFrom(400, null)).toMatchObject({ status: 400, code: 'BAD_REQUEST', message: '' });
    expect(errorFrom(401, 'nope')).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(errorFrom(409, { code: 'BRAND_NEW', message: 'as sent' })).toMatchObject({ code: 'UNKNOWN', message: 'as sent' });
    const down = await new Api('/x', async () => {
      throw new TypeError('Failed to fetch');
    })
      .request('GET', '/')
      .catch((e: unknown) => e);
    expect(down).toMatchObject({ status: 0, code: 'NETWORK' });
  });

  it('reports a 401 on a request that carried the token, and only then', async () => {
    const onUnauthenticated = vi.fn();
    const unauthorized = recorder(401, { code: 'UNAUTHENTICATED', message: 'session ended' });
    const api = new Api('/x', unauthorized.fetcher);
    api.onUnauthenticated = onUnauthenticated;
    // A failed login (no token) is not a lost session.
    await api.request('POST', '/login', {}).catch(() => undefined);
    expect(onUnauthenticated).not.toHaveBeenCalled();
    api.token = 'tok';
    await expect(api.request('GET', '/me')).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(onUnauthenticated).toHaveBeenCalledTimes(1);
    // A wrong current password while changing it is a 401 too, but the session lives on.
    const wrongOld = new Api('/x', recorder(401, { code: 'BAD_CREDENTIALS', message: 'wrong account or password' }).fetcher);
    wrongOld.token = 'tok';
    wrongOld.onUnauthenticated = onUnauthenticated;
    await expect(wrongOld.request('POST', '/me/password', {})).rejects.toMatchObject({ code: 'BAD_CREDENTIALS' });
    expect(onUnauthenticated).toHaveBeenCalledTimes(1);
  });

  it('handles 204', async () => {
    expect(await new Api('/x', recorder(204, undefined).fetcher).request('POST', '/logout')).toBeUndefined();
  });

  it('downloads with the token and the server’s file name', async () => {
    const { seen, fetcher } = recorder(200, 'a,b\n', { 'Content-Disposition': 'attachment; filename="hutong-people.csv"' });
    const api = new Api('/x', fetcher);
    api.token = 'tok';
    const { blob, filename } = await api.download('/export');
    expect(await blob.text()).toBe('a,b\n');
    expect(filename).toBe('hutong-people.csv');
    expect((seen[0]?.headers as Record<string, string>)['Authorization']).toBe('Bearer tok');
    expect(filenameOf(null)).toBeNull();
  });

  it('builds query strings, dropping empty values', () => {
    expect(queryString({ q: '张 三', limit: 5, x: undefined, y: '' })).toBe('?q=%E5%BC%A0%20%E4%B8%89&limit=5');
    expect(queryString({})).toBe('');
  });
});

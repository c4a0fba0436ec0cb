// Every error code the server can send is shown to the person in both
// languages, never as a raw code or "cannot reach the server": the codes
// are read from the protocol itself, so a new one fails here until it has
// a sentence.
import { describe, expect, it } from 'vitest';
import proto from '../../../../protocol/proto/hutong.proto?raw';
import { errorText, tables, waitText } from './i18n';

function errorCodes(): string[] {
  const body = /enum ErrorCode \{([^}]*)\}/.exec(proto)?.[1] ?? '';
  return [...body.matchAll(/^\s*([A-Z_]+)\s*=\s*\d+;/gm)].map((m) => m[1]!).filter((c) => c !== 'ERROR_CODE_UNSPECIFIED');
}

describe('server error codes', () => {
  it('every code has a sentence in Chinese and English', () => {
    const codes = errorCodes();
    expect(codes).toContain('SESSION_EXPIRED');
    expect(codes).toContain('TOO_MANY_CONNECTIONS');
    for (const locale of ['en', 'zh-CN'] as const) {
      for (const code of codes) {
        expect(Object.prototype.hasOwnProperty.call(tables[locale], `err.${code}`), `${locale} err.${code}`).toBe(true);
        const text = errorText(locale, code, '', 60_000);
        expect(text).not.toBe(code);
        expect(text).not.toBe(tables[locale]['err.NETWORK']);
      }
    }
  });

  it('a lockout and a connection cap say the time left', () => {
    expect(errorText('en', 'RATE_LIMITED', 'x', 299_001)).toBe('Signing in is locked after too many failed attempts; try again in 5 min');
    expect(errorText('zh-CN', 'RATE_LIMITED', 'x', 299_001)).toBe('登录失败次数过多，已被锁定，请在 5 分 后重试');
    expect(errorText('en', 'TOO_MANY_CONNECTIONS', 'x', 12_000)).toContain('try again in 12 s');
    expect(waitText('zh-CN', 61_000)).toBe('1 分 1 秒');
    expect(waitText('en', 3_900_000)).toBe('1 h 5 min');
  });
});

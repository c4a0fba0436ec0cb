import { describe, expect, it } from 'vitest';
import openapi from '../../../../crates/server/src/admin/openapi.json';
import { CLIENT_CODES, SERVER_CODES, errorKey } from './errors';
import { translate } from './i18n';

// openapi.json is the contract the server publishes; the console mirrors its error codes.
describe('error codes', () => {
  it('mirror the Error schema of openapi.json exactly', () => {
    expect([...SERVER_CODES].sort()).toEqual([...openapi.components.schemas.Error.properties.code.enum].sort());
  });

  it('each have a sentence in both languages, different from the code', () => {
    for (const code of [...SERVER_CODES, ...CLIENT_CODES]) {
      for (const lang of ['zh', 'en'] as const) {
        const text = translate(lang, errorKey(code));
        expect(text, `${lang} ${code}`).not.toBe('');
        expect(text).not.toContain(code);
      }
    }
  });
});

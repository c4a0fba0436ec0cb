import { describe, expect, it } from 'vitest';
import { validatePerson } from './validate';

describe('person form checks', () => {
  it('flags what the server would refuse', () => {
    expect(validatePerson({ account: 'bad name', display_name: ' ', email: 'x', password: 'short' }, true)).toEqual({
      account: 'form.err.account',
      display_name: 'form.err.name',
      password: 'form.err.password',
      email: 'form.err.email',
    });
    expect(validatePerson({ account: 'a'.repeat(65), display_name: '张三' }, true)).toEqual({ account: 'form.err.account' });
    expect(validatePerson({ account: 'x', display_name: '张三', title: '长'.repeat(201) }, true)).toEqual({ title: 'form.err.tooLong' });
  });

  it('accepts a good person, an empty password (generated) and edits without account', () => {
    expect(validatePerson({ account: 'zhang.san_1-a', display_name: '张三', email: 'z@a.cn', password: '' }, true)).toEqual({});
    // Eight characters counted as characters, not bytes.
    expect(validatePerson({ account: 'z', display_name: '张三', password: '密码密码密码密码' }, true)).toEqual({});
    expect(validatePerson({ display_name: '张三' }, false)).toEqual({});
  });
});

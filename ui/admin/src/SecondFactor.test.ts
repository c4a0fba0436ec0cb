import { afterEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import SecondFactor from './SecondFactor.svelte';
import type { Me } from './lib/api';
import { setLang } from './lib/locale.svelte';
import { button, click, fakeServer, json, submit, type } from './lib/testing';

afterEach(() => {
  vi.restoreAllMocks();
  document.body.innerHTML = '';
});

const base: Me = {
  id: 1,
  account: 'admin',
  display_name: 'Administrator',
  roles: ['admin'],
  must_change_password: false,
  second_factor: 'code',
  totp_enrolled: true,
};

function render(me: Me) {
  const target = document.body.appendChild(document.createElement('div'));
  const onDone = vi.fn();
  const app = mount(SecondFactor, { target, props: { me, onDone, onCancel: vi.fn() } });
  return { target, app, onDone };
}

describe('SecondFactor', () => {
  it('enrols: shows the otpauth link and key as text, confirms a code, shows the recovery codes once', async () => {
    setLang('en');
    const uri = 'otpauth://totp/Hutong:admin?secret=JBSWY3DPEHPK3PXP&issuer=Hutong';
    const calls = fakeServer({
      'POST /me/totp': () => json(200, { secret: 'JBSWY3DPEHPK3PXP', otpauth_uri: uri }),
      'POST /me/totp/confirm': () => json(200, { recovery_codes: ['aaaaa-bbbbb', 'ccccc-ddddd'] }),
    });
    const { target, app, onDone } = render({ ...base, second_factor: 'enrol', totp_enrolled: false });
    await vi.waitFor(() => expect(target.querySelector('[data-testid=totp-secret]')?.textContent).toBe('JBSWY3DPEHPK3PXP'));
    expect(target.querySelector('[data-testid=otpauth-uri]')?.textContent).toBe(uri);
    type(target.querySelector('input[name=code]'), ' 123456 ');
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(target.querySelector('[data-testid=recovery-codes]')).not.toBeNull());
    expect(calls.find((c) => c.path === '/me/totp/confirm')?.body).toEqual({ code: '123456' });
    expect(target.textContent).toContain('aaaaa-bbbbb');
    expect(onDone).not.toHaveBeenCalled();
    click(button(target, 'I saved them; continue'));
    expect(onDone).toHaveBeenCalledWith(expect.objectContaining({ second_factor: 'done', totp_enrolled: true }));
    unmount(app);
  });

  it('asks for the code, explains a wrong one in Chinese, and accepts a recovery code', async () => {
    setLang('zh');
    let first = true;
    const calls = fakeServer({
      'POST /login/second-factor': () => {
        if (first) {
          first = false;
          return json(401, { code: 'BAD_CODE', message: 'the code is wrong or was used already' });
        }
        return json(200, { ...base, second_factor: 'done' });
      },
    });
    const { target, app, onDone } = render(base);
    type(target.querySelector('input[name=code]'), '000000');
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(target.querySelector('[role=alert]')?.textContent).toBe('验证码错误或已使用过'));
    click(button(target, '改用恢复码'));
    type(target.querySelector('input[name=code]'), 'aaaaa-bbbbb');
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(onDone).toHaveBeenCalledWith(expect.objectContaining({ second_factor: 'done' })));
    expect(calls.map((c) => c.body)).toEqual([{ code: '000000' }, { recovery_code: 'aaaaa-bbbbb' }]);
    unmount(app);
  });
});

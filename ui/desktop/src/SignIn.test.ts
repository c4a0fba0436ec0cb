import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import SignIn from './SignIn.svelte';
import { setLocale } from './lib/locale.svelte';
import { click, fakeApi, resetFake, sessionState, settle, submit, type } from './lib/testing';

vi.mock('./lib/api', async () => (await import('./lib/fake-api')).apiModule);

const FP = 'AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99';

beforeEach(() => {
  resetFake();
  setLocale('en');
});
afterEach(() => {
  document.body.innerHTML = '';
});

function render() {
  const target = document.body.appendChild(document.createElement('div'));
  const onSignedIn = vi.fn();
  const app = mount(SignIn, { target, props: { onSignedIn } });
  return { target, app, onSignedIn };
}

function fill(target: HTMLElement, server = 'chat.example.com:7300', account = ' alice ', password = 'old-password') {
  type(target.querySelector('#server'), server);
  type(target.querySelector('#account'), account);
  type(target.querySelector('#password'), password);
  submit(target.querySelector('form'));
}

describe('SignIn', () => {
  it('asks to confirm the fingerprint on first contact, then signs in with it', async () => {
    fakeApi.probeServer.mockResolvedValue({ server: 'tls://chat.example.com:7300', fingerprint: FP, known: null });
    const { target, app, onSignedIn } = render();
    expect((target.querySelector('#server') as HTMLInputElement).placeholder).toBe('tls://chat.example.com:7300');
    fill(target);
    await settle();
    expect(fakeApi.probeServer).toHaveBeenCalledWith('chat.example.com:7300');
    const dialog = document.querySelector('[role=dialog]');
    expect(dialog?.textContent).toContain('This is the first connection to this server. Check with your administrator that the fingerprint matches.');
    expect(document.querySelector('#fingerprint')?.textContent).toBe(FP);
    expect(fakeApi.signIn).not.toHaveBeenCalled();
    click(document.querySelector('#confirm-fingerprint'));
    await settle();
    expect(fakeApi.signIn).toHaveBeenCalledWith('tls://chat.example.com:7300', 'alice', 'old-password', FP, false);
    expect(onSignedIn).toHaveBeenCalledWith(sessionState());
    unmount(app);
  });

  it('cancelling the fingerprint dialog does not sign in', async () => {
    fakeApi.probeServer.mockResolvedValue({ server: 'tls://h:1', fingerprint: FP, known: null });
    const { target, app } = render();
    fill(target);
    await settle();
    const cancel = [...document.querySelectorAll('[role=dialog] button')].find((b) => b.textContent === 'Cancel');
    click(cancel ?? null);
    await settle();
    expect(document.querySelector('[role=dialog]')).toBeNull();
    expect(fakeApi.signIn).not.toHaveBeenCalled();
    unmount(app);
  });

  it('refuses a changed certificate without signing in', async () => {
    setLocale('zh-CN');
    fakeApi.probeServer.mockResolvedValue({ server: 'tls://h:1', fingerprint: FP, known: FP.replace('AA', '00') });
    const { target, app } = render();
    fill(target);
    await settle();
    const alert = target.querySelector('#fingerprint-changed');
    expect(alert?.textContent).toContain('服务器证书已变更');
    expect(alert?.textContent).toContain('联系管理员');
    expect(fakeApi.signIn).not.toHaveBeenCalled();
    expect(document.querySelector('#confirm-fingerprint')).toBeNull();
    unmount(app);
  });

  it('signs in directly with the known fingerprint when it matches (any case)', async () => {
    fakeApi.probeServer.mockResolvedValueOnce({ server: 'tls://h:1', fingerprint: FP, known: FP.toLowerCase() });
    const { target, app, onSignedIn } = render();
    fill(target);
    await settle();
    expect(fakeApi.signIn).toHaveBeenCalledWith('tls://h:1', 'alice', 'old-password', FP.toLowerCase(), false);
    expect(onSignedIn).toHaveBeenCalledTimes(1);
    // No insecure choice is offered for an encrypted address.
    expect(target.querySelector('#insecure-plaintext')).toBeNull();
    unmount(app);
  });

  it('signs in to a plain tcp:// or ws:// address only with the insecure choice made explicitly', async () => {
    const { target, app, onSignedIn } = render();
    fill(target, 'tcp://h:1');
    await settle();
    // Offered only now that a plain address is typed; without it nothing is sent.
    expect(target.querySelector('#insecure-plaintext')).not.toBeNull();
    expect(target.querySelector('[role=alert]')?.textContent).toContain('not encrypted');
    expect(fakeApi.probeServer).not.toHaveBeenCalled();
    expect(fakeApi.signIn).not.toHaveBeenCalled();

    fakeApi.probeServer.mockResolvedValueOnce({ server: 'tcp://h:1', fingerprint: null, known: null });
    click(target.querySelector('#insecure-plaintext'));
    submit(target.querySelector('form'));
    await settle();
    expect(fakeApi.signIn).toHaveBeenLastCalledWith('tcp://h:1', 'alice', 'old-password', null, true);
    expect(onSignedIn).toHaveBeenCalledTimes(1);

    type(target.querySelector('#server'), 'wss://h:2/ws');
    await settle();
    expect(target.querySelector('#insecure-plaintext')).toBeNull();
    unmount(app);
  });

  it('shows a sentence per error code and the message for unknown codes', async () => {
    const { target, app, onSignedIn } = render();
    const cases: Array<[string, string]> = [
      ['BAD_CREDENTIALS', 'Wrong account or password'],
      ['ACCOUNT_DISABLED', 'This account is disabled; contact your administrator'],
      ['NETWORK', 'Cannot reach the server; check the address and the network'],
      ['INVALID_ADDRESS', 'Invalid server address; use tls://host:port'],
      ['RATE_LIMITED', 'Too many attempts; try again later'],
      ['SOMETHING_NEW', '<b>as the shell said</b>'],
    ];
    fill(target);
    await settle();
    for (const [code, sentence] of cases) {
      fakeApi.signIn.mockRejectedValueOnce({ code, message: '<b>as the shell said</b>' });
      submit(target.querySelector('form'));
      await settle();
      expect(target.querySelector('[role=alert]')?.textContent).toBe(sentence);
    }
    expect(target.querySelector('b')).toBeNull();
    expect(onSignedIn).toHaveBeenCalledTimes(1);
    unmount(app);
  });

  it('shows the busy state while signing in', async () => {
    let release: (v: ReturnType<typeof sessionState>) => void = () => {};
    fakeApi.signIn.mockImplementation(() => new Promise((r) => (release = r)));
    const { target, app } = render();
    fill(target);
    await settle();
    const button = target.querySelector<HTMLButtonElement>('#sign-in');
    expect(button?.disabled).toBe(true);
    expect(button?.textContent).toBe('Signing in…');
    release(sessionState());
    await settle();
    expect(button?.disabled).toBe(false);
    unmount(app);
  });

  it('changes a required password, then signs in with the new one', async () => {
    fakeApi.probeServer.mockResolvedValue({ server: 'tls://h:1', fingerprint: FP, known: FP });
    fakeApi.signIn.mockRejectedValueOnce({ code: 'PASSWORD_CHANGE_REQUIRED', message: 'change it' });
    const { target, app, onSignedIn } = render();
    fill(target);
    await settle();
    expect(target.querySelector('#new-password')).not.toBeNull();
    const alert = () => target.querySelector('[role=alert]')?.textContent;

    type(target.querySelector('#new-password'), 'short');
    type(target.querySelector('#repeat-password'), 'short');
    submit(target.querySelector('form'));
    await settle();
    expect(alert()).toBe('The new password needs at least 8 characters');

    type(target.querySelector('#new-password'), 'new-password-1');
    type(target.querySelector('#repeat-password'), 'new-password-2');
    submit(target.querySelector('form'));
    await settle();
    expect(alert()).toBe('The two new passwords differ');

    type(target.querySelector('#new-password'), 'old-password');
    type(target.querySelector('#repeat-password'), 'old-password');
    submit(target.querySelector('form'));
    await settle();
    expect(alert()).toBe('The new password must differ from the current one');
    expect(fakeApi.changePassword).not.toHaveBeenCalled();

    type(target.querySelector('#new-password'), 'new-password-1');
    type(target.querySelector('#repeat-password'), 'new-password-1');
    click(target.querySelector('#change-password'));
    await settle();
    expect(fakeApi.changePassword).toHaveBeenCalledWith('tls://h:1', 'alice', 'old-password', 'new-password-1', FP, false);
    expect(fakeApi.signIn).toHaveBeenLastCalledWith('tls://h:1', 'alice', 'new-password-1', FP, false);
    expect(onSignedIn).toHaveBeenCalledTimes(1);
    unmount(app);
  });
});

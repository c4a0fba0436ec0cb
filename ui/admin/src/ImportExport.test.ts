import { afterEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import ImportExport from './ImportExport.svelte';
import { setLang } from './lib/locale.svelte';
import { button, click, fakeServer, json, submit } from './lib/testing';

afterEach(() => {
  vi.restoreAllMocks();
  document.body.innerHTML = '';
});

function choose(target: HTMLElement, name: string, text: string) {
  const input = target.querySelector('[data-testid=import-file]') as HTMLInputElement;
  const file = new File([text], name, { type: 'text/csv' });
  Object.defineProperty(input, 'files', { value: [file], configurable: true });
  input.dispatchEvent(new Event('change', { bubbles: true }));
}

describe('ImportExport', () => {
  it('shows every row error of a refused import as a table, as text', async () => {
    setLang('zh');
    const calls = fakeServer({
      'POST /import': () =>
        json(422, {
          code: 'IMPORT_INVALID',
          message: '2 rows have problems',
          errors: [
            { row: 3, column: 'account', reason: 'the account "a b" has a space' },
            { row: 5, column: 'email', reason: '<b>bold</b> is not an email address' },
          ],
        }),
    });
    const target = document.body.appendChild(document.createElement('div'));
    const app = mount(ImportExport, { target });
    choose(target, 'people.csv', 'account,display_name\na b,x\n');
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(target.querySelector('[data-testid=import-errors]')).not.toBeNull());
    const cells = [...target.querySelectorAll('[data-testid=import-errors] tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent));
    expect(cells).toEqual([
      ['3', 'account', 'the account "a b" has a space'],
      ['5', 'email', '<b>bold</b> is not an email address'],
    ]);
    expect(target.querySelector('[data-testid=import-errors] b')).toBeNull();
    expect(target.querySelector('[role=alert]')?.textContent).toContain('2 处问题');
    expect(calls[0]?.headers['Content-Type']).toBe('text/csv');
    expect(calls[0]?.path).toBe('/import');
    unmount(app);
  });

  it('reports a successful import, passing the first password along', async () => {
    setLang('en');
    const calls = fakeServer({ 'POST /import': () => json(200, { created: 12, updated: 3, departments_created: 2 }) });
    const target = document.body.appendChild(document.createElement('div'));
    const app = mount(ImportExport, { target });
    choose(target, 'people.csv', 'account,display_name\nzs,张三\n');
    const initial = target.querySelector('input[type=password]') as HTMLInputElement;
    initial.value = 'first-pass-1';
    initial.dispatchEvent(new Event('input', { bubbles: true }));
    submit(target.querySelector('form'));
    await vi.waitFor(() =>
      expect(target.querySelector('[data-testid=import-done]')?.textContent?.trim()).toBe('Imported: 12 new, 3 updated, 2 departments created.'),
    );
    expect(calls[0]?.path).toBe('/import?initial_password=first-pass-1');
    unmount(app);
  });

  it('shows a 403 as "your role cannot do this" when exporting', async () => {
    setLang('en');
    fakeServer({ 'GET /export': () => json(403, { code: 'FORBIDDEN', message: 'needs the admin role' }) });
    const target = document.body.appendChild(document.createElement('div'));
    const app = mount(ImportExport, { target });
    click(button(target, 'Export CSV'));
    await vi.waitFor(() => expect(target.querySelector('[data-testid=forbidden]')?.textContent).toContain('Your role cannot do this'));
    unmount(app);
  });
});

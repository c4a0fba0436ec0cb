import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import Contacts from './Contacts.svelte';
import NewGroup from './NewGroup.svelte';
import MassSend from './MassSend.svelte';
import { setLocale } from './lib/locale.svelte';
import { nav } from './lib/session.svelte';
import { click, fakeApi, person, resetFake, settle, submit, type } from './lib/testing';

vi.mock('./lib/api', async () => (await import('./lib/fake-api')).apiModule);

const dept = (id: number, name: string, memberCount: number, parentId = 0) => ({ id, parentId, name, memberCount });

beforeEach(() => {
  resetFake();
  setLocale('en');
  fakeApi.directoryChildren.mockImplementation(async (parentId: number) => {
    if (parentId === 0) return { departments: [dept(1, 'Company', 3)], people: [] };
    if (parentId === 1) return { departments: [dept(2, 'R&D', 2, 1)], people: [person({ userId: 5, displayName: 'CEO Chen' })] };
    if (parentId === 2)
      return { departments: [], people: [person({ userId: 2, displayName: '李四' }), person({ userId: 3, displayName: '王五' })] };
    return { departments: [], people: [] };
  });
});
afterEach(() => {
  document.body.innerHTML = '';
});

function render<P extends Record<string, unknown>>(component: typeof Contacts | typeof NewGroup | typeof MassSend, props: P) {
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(component as typeof Contacts, { target, props: props as never });
  return { target, app };
}

describe('Contacts', () => {
  it('expands the org tree lazily and opens a direct chat from the person card', async () => {
    fakeApi.person.mockImplementation(async (userId: number) => person({ userId, displayName: '李四', phone: '138', email: 'li@x' }));
    fakeApi.openDirect.mockResolvedValue(42);
    const { target, app } = render(Contacts, {});
    await settle();
    // The company, the only top department, opens by itself; R&D waits for a click.
    expect(fakeApi.directoryChildren).toHaveBeenCalledTimes(2);
    expect(fakeApi.directoryChildren).toHaveBeenNthCalledWith(1, 0);
    expect(fakeApi.directoryChildren).toHaveBeenLastCalledWith(1);
    const company = target.querySelector('.department[data-id="1"]') as HTMLElement;
    expect(company.querySelector('.count')?.textContent).toBe('3');
    expect(target.querySelector('.department[data-id="2"]')).not.toBeNull();
    expect(target.querySelector('.person[data-id="2"]')).toBeNull();
    click(target.querySelector('.department[data-id="2"] button'));
    await settle();
    expect(fakeApi.directoryChildren).toHaveBeenCalledTimes(3);
    // Collapsing and expanding again does not ask again.
    click(company.querySelector('button'));
    await settle();
    expect(target.querySelector('.person[data-id="2"]')).toBeNull();
    click(company.querySelector('button'));
    await settle();
    expect(fakeApi.directoryChildren).toHaveBeenCalledTimes(3);
    click(target.querySelector('.department[data-id="2"] button'));
    await settle();

    click(target.querySelector('.person[data-id="2"]'));
    await settle();
    const card = target.querySelector('#person-card') as HTMLElement;
    expect(card.querySelector('.name')?.textContent).toBe('李四');
    expect(card.querySelector('.phone')?.textContent).toBe('138');
    expect(card.querySelector('.email')?.textContent).toBe('li@x');
    expect(card.textContent).toContain('Engineer');
    expect(card.textContent).toContain('R&D');
    nav.tab = 'contacts';
    click(card.querySelector('#send-message'));
    await settle();
    expect(fakeApi.openDirect).toHaveBeenCalledWith(2);
    expect(nav.tab).toBe('chats');
    expect(nav.conversationId).toBe(42);
    unmount(app);
  });

  it('searches people', async () => {
    fakeApi.search.mockResolvedValue({ people: [person({ userId: 7, displayName: '张三' })], conversations: [], messages: [] });
    const { target, app } = render(Contacts, {});
    await settle();
    type(target.querySelector('#contact-search'), 'zs');
    (target.querySelector('#contact-search') as HTMLElement).dispatchEvent(
      new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }),
    );
    await settle();
    expect(fakeApi.search).toHaveBeenCalledWith('zs');
    expect([...target.querySelectorAll('.results .person')].map((p) => p.getAttribute('data-id'))).toEqual(['7']);
    unmount(app);
  });
});

describe('NewGroup', () => {
  it('creates a group with the chosen people and opens it', async () => {
    fakeApi.createGroup.mockResolvedValue(77);
    const onClose = vi.fn();
    const { app } = render(NewGroup, { onClose });
    await settle();
    click(document.querySelector('.department[data-id="2"] button'));
    await settle();
    click(document.querySelector('.person[data-id="2"] input'));
    click(document.querySelector('.person[data-id="3"] input'));
    await settle();
    expect([...document.querySelectorAll('.chip')].map((c) => c.getAttribute('data-id'))).toEqual(['2', '3']);
    click(document.querySelector('.chip[data-id="3"] button'));
    await settle();
    submit(document.querySelector('#new-group-dialog form'));
    await settle();
    expect(document.querySelector('#new-group-dialog [role=alert]')?.textContent).toBe('Give the group a name');
    type(document.querySelector('#group-name'), ' Launch ');
    submit(document.querySelector('#new-group-dialog form'));
    await settle();
    expect(fakeApi.createGroup).toHaveBeenCalledWith('Launch', [2]);
    expect(nav.conversationId).toBe(77);
    expect(onClose).toHaveBeenCalled();
    unmount(app);
  });
});

describe('MassSend', () => {
  it('sends one text to the chosen people and shows who has it, names as text', async () => {
    const evil = '<img src=x onerror=alert(1)>';
    fakeApi.massSend.mockResolvedValue({
      id: 'mass-9',
      recipients: [
        { userId: 2, name: '李四', conversationId: 20, delivered: true, read: false },
        { userId: 3, name: evil, conversationId: 21, delivered: false, read: false },
      ],
    });
    fakeApi.massSendStatus.mockResolvedValue({
      id: 'mass-9',
      recipients: [
        { userId: 2, name: '李四', conversationId: 20, delivered: true, read: true },
        { userId: 3, name: evil, conversationId: 21, delivered: true, read: false },
      ],
    });
    const { app } = render(MassSend, { onClose: vi.fn() });
    await settle();
    submit(document.querySelector('#mass-send-dialog form'));
    await settle();
    expect(document.querySelector('#mass-send-dialog [role=alert]')?.textContent).toBe('Write the message.');
    type(document.querySelector('#mass-text'), '{name}, the report is due');
    click(document.querySelector('.department[data-id="2"] button'));
    await settle();
    click(document.querySelector('.person[data-id="2"] input'));
    click(document.querySelector('.person[data-id="3"] input'));
    await settle();
    submit(document.querySelector('#mass-send-dialog form'));
    await settle();
    expect(fakeApi.massSend).toHaveBeenCalledWith('{name}, the report is due', [2, 3], []);
    const rows = () => [...document.querySelectorAll('#mass-send-dialog .recipient')].map((r) => [r.querySelector('.name')?.textContent, r.querySelector('.state')?.textContent]);
    expect(rows()).toEqual([
      ['李四', 'Delivered'],
      [evil, 'Not yet delivered'],
    ]);
    expect(document.querySelector('#mass-send-dialog img')).toBeNull();
    click(document.querySelector('#mass-send-dialog .refresh'));
    await settle();
    expect(fakeApi.massSendStatus).toHaveBeenCalledWith('mass-9');
    expect(rows()).toEqual([
      ['李四', 'Read'],
      [evil, 'Delivered'],
    ]);
    unmount(app);
  });
});

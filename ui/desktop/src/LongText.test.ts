// Very long unbroken names and texts (a 200-character name without spaces, a
// 2,000-character URL) must not widen the layout or push the time away: a
// one-line place ends in an ellipsis and shows the whole text on hover
// (`title`); a message wraps anywhere. The component styles are applied in
// these tests (vite.desktop.config.ts processes CSS), so the computed style is
// what the app's rules say.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import Chat from './Chat.svelte';
import Contacts from './Contacts.svelte';
import ConversationList from './ConversationList.svelte';
import { setLocale } from './lib/locale.svelte';
import { convos } from './lib/convos.svelte';
import { conv, fakeApi, ME, msg, person, resetFake, settle } from './lib/testing';

vi.mock('./lib/api', async () => (await import('./lib/fake-api')).apiModule);

const NAME = '超长名字'.repeat(10) + 'x'.repeat(160);
const URL = 'https://files.example.com/' + 'a1b2c3d4'.repeat(247);

beforeEach(() => {
  resetFake();
  setLocale('en');
});
afterEach(() => {
  document.body.innerHTML = '';
});

function mountIn<T>(component: T, props: Record<string, unknown> = {}) {
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(component as typeof Chat, { target, props: props as never });
  return { target, app };
}

/** One line that ends in an ellipsis and may shrink below its text's width, with the whole text on hover. */
function expectEllipsis(el: Element | null, full: string) {
  expect(el, `an element for ${full.slice(0, 20)}…`).toBeInstanceOf(HTMLElement);
  const style = getComputedStyle(el!);
  expect(style.textOverflow).toBe('ellipsis');
  expect(style.whiteSpace).toBe('nowrap');
  expect(style.overflow).toBe('hidden');
  expect(style.minWidth).toMatch(/^0(px)?$/);
  expect((el as HTMLElement).title).toBe(full);
  expect(el!.textContent).toBe(full);
}

describe('long names and texts', () => {
  it('end in an ellipsis in the conversation list, keeping the time and badge', async () => {
    convos.list = [conv({ id: 10, kind: 'group', name: NAME, lastText: URL, unread: 3 })];
    const { target, app } = mountIn(ConversationList);
    await settle();
    const row = target.querySelector('.conversation[data-id="10"]')!;
    expectEllipsis(row.querySelector('.name'), NAME);
    expect((row.querySelector('.preview') as HTMLElement).title).toContain(URL);
    expect(getComputedStyle(row.querySelector('.preview')!).minWidth).toMatch(/^0(px)?$/);
    expect(getComputedStyle(row.querySelector('.time')!).flexShrink).toBe('0');
    unmount(app);
  });

  it('end in an ellipsis in the chat header and the sender line; message text wraps anywhere', async () => {
    convos.list = [conv({ id: 10, kind: 'group', name: NAME, members: [ME, 2] })];
    fakeApi.history.mockResolvedValue([
      msg({ seq: 1, senderId: 2, senderName: NAME, text: URL }),
      msg({ seq: 2, senderId: ME, text: URL }),
    ]);
    const { target, app } = mountIn(Chat, { conversationId: 10 });
    await settle();
    const header = target.querySelector('.chat-name')!;
    expect(getComputedStyle(header).textOverflow).toBe('ellipsis');
    expect(getComputedStyle(header).whiteSpace).toBe('nowrap');
    expect((header as HTMLElement).title).toBe(NAME);
    expect(getComputedStyle(header.parentElement!).minWidth).toMatch(/^0(px)?$/);
    expect(getComputedStyle(target.querySelector('.member-count')!).flexShrink).toBe('0');
    // The sender's name gives way; the time does not.
    const theirs = target.querySelector('.message[data-seq="1"]')!;
    expectEllipsis(theirs.querySelector('.sender'), NAME);
    expect(getComputedStyle(theirs.querySelector('.time')!).flexShrink).toBe('0');
    for (const seq of [1, 2]) {
      const bubble = target.querySelector(`.message[data-seq="${seq}"] .bubble`)!;
      expect(bubble.querySelector('.text')?.textContent).toBe(URL);
      expect(getComputedStyle(bubble).overflowWrap).toBe('anywhere');
      expect(getComputedStyle(bubble).minWidth).toMatch(/^0(px)?$/);
      // The column holding it may shrink, so the bubble cannot widen the row.
      expect(getComputedStyle(bubble.closest('.column')!).minWidth).toMatch(/^0(px)?$/);
    }
    unmount(app);
  });

  it('end in an ellipsis on a file card', async () => {
    const fileName = NAME + '.pdf';
    convos.list = [conv({ id: 10, name: '李四' })];
    fakeApi.history.mockResolvedValue([
      msg({
        seq: 3,
        kind: 'file',
        text: fileName,
        attachment: { kind: 'file', fileId: 'f', name: fileName, size: 10, mime: 'application/pdf', fileCount: 0, width: 0, height: 0, thumbnail: null },
      }),
    ]);
    const { target, app } = mountIn(Chat, { conversationId: 10 });
    await settle();
    const name = target.querySelector('.message[data-seq="3"] .file-name')!;
    expect(getComputedStyle(name).textOverflow).toBe('ellipsis');
    expect(getComputedStyle(name).whiteSpace).toBe('nowrap');
    expect((name as HTMLElement).title).toBe(fileName);
    expect(getComputedStyle(name.parentElement!).minWidth).toMatch(/^0(px)?$/);
    unmount(app);
  });

  it('end in an ellipsis in the contacts tree and list', async () => {
    fakeApi.directoryChildren.mockImplementation(async (parentId: number) => {
      if (parentId === 0)
        return {
          departments: [{ id: 1, parentId: 0, name: NAME, memberCount: 1 }],
          people: [person({ userId: 7, displayName: NAME, departmentName: URL })],
        };
      return { departments: [], people: [person({ userId: 8, displayName: NAME, title: URL })] };
    });
    const { target, app } = mountIn(Contacts);
    await settle();
    expectEllipsis(target.querySelector('.department[data-id="1"] .dept-name'), NAME);
    expect(getComputedStyle(target.querySelector('.department[data-id="1"] .count')!).flexShrink).toBe('0');
    const inTree = target.querySelector('.department .person[data-id="8"]')!;
    expectEllipsis(inTree.querySelector('.person-name'), NAME);
    expectEllipsis(inTree.querySelector('.sub'), URL);
    const atTop = target.querySelector('.person[data-id="7"]')!;
    expectEllipsis(atTop.querySelector('.person-name'), NAME);
    expectEllipsis(atTop.querySelector('.sub'), URL);
    expect(getComputedStyle(atTop.querySelector('.who')!).minWidth).toMatch(/^0(px)?$/);
    unmount(app);
  });
});

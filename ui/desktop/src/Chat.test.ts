import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import Chat from './Chat.svelte';
import { setLocale } from './lib/locale.svelte';
import { convos } from './lib/convos.svelte';
import { session } from './lib/session.svelte';
import { click, conv, emit, fakeApi, key, ME, msg, resetFake, settle, type } from './lib/testing';
import type { MessageView } from './lib/types';

vi.mock('./lib/api', async () => (await import('./lib/fake-api')).apiModule);

beforeEach(() => {
  resetFake();
  setLocale('en');
});
afterEach(() => {
  document.body.innerHTML = '';
});

async function render(history: MessageView[], opts: { kind?: 'direct' | 'group'; outbox?: MessageView[]; reads?: Array<[number, number]> } = {}) {
  const kind = opts.kind ?? 'direct';
  convos.list = [conv({ id: 10, kind, name: kind === 'group' ? 'Team' : '李四', members: [ME, 2, 3, 4] })];
  fakeApi.history.mockResolvedValue(history);
  fakeApi.outbox.mockResolvedValue(opts.outbox ?? []);
  fakeApi.readState.mockResolvedValue(
    (opts.reads ?? []).map(([userId, readSeq]) => ({ userId, name: `user${userId}`, readSeq })),
  );
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(Chat, { target, props: { conversationId: 10 } });
  await settle();
  return { target, app };
}

const texts = (t: HTMLElement) => [...t.querySelectorAll('.message .text')].map((e) => e.textContent);

describe('Chat', () => {
  it('loads history and the outbox, focuses the conversation, shows days and text literally', async () => {
    const day1 = new Date(2024, 0, 1, 9, 0).getTime();
    const day2 = new Date(2024, 0, 2, 9, 0).getTime();
    const { target, app } = await render(
      [
        msg({ seq: 1, sentAtMs: day1, text: '<script>alert(1)</script>' }),
        msg({ seq: 2, sentAtMs: day1 + 1000, text: '<b>bold</b>' }),
        msg({ seq: 3, sentAtMs: day2, senderId: ME, senderName: 'me', text: 'mine' }),
      ],
      { outbox: [msg({ seq: 0, clientMsgId: 'p', senderId: ME, state: 'sending', text: 'pending', sentAtMs: day2 + 1000 })] },
    );
    expect(fakeApi.history).toHaveBeenCalledWith(10, null, 50);
    expect(fakeApi.outbox).toHaveBeenCalledWith(10);
    expect(fakeApi.setFocus).toHaveBeenCalledWith(10);
    expect(texts(target)).toEqual(['<script>alert(1)</script>', '<b>bold</b>', 'mine', 'pending']);
    expect(target.querySelector('#messages script, #messages b')).toBeNull();
    expect(target.querySelectorAll('.day-separator')).toHaveLength(2);
    expect(target.querySelector('.message[data-seq="3"]')?.classList.contains('mine')).toBe(true);
    expect(target.querySelector('.message[data-seq="1"]')?.classList.contains('mine')).toBe(false);
    expect(target.querySelector('.message[data-client-id="p"] .spinner')).not.toBeNull();
    // The second message of the same sender within 5 minutes is grouped (no name).
    expect(target.querySelector('.message[data-seq="2"]')?.classList.contains('grouped')).toBe(true);
    unmount(app);
  });

  it('shows Read/Unread in direct chats and follows cursor events', async () => {
    setLocale('zh-CN');
    const { target, app } = await render(
      [msg({ seq: 5, senderId: ME }), msg({ seq: 6, senderId: ME })],
      { reads: [[ME, 6], [2, 5]] },
    );
    const state = (seq: number) => target.querySelector(`.message[data-seq="${seq}"] .read-state`)?.textContent?.trim();
    expect(state(5)).toBe('已读');
    expect(state(6)).toBe('未读');
    await emit({ event: 'cursor', conversationId: 10, userId: 2, readSeq: 6 });
    expect(state(6)).toBe('已读');
    await emit({ event: 'cursor', conversationId: 99, userId: 2, readSeq: 60 });
    unmount(app);
  });

  it('counts who has not read in groups, excluding me, and follows cursor events', async () => {
    const { target, app } = await render([msg({ seq: 5, senderId: ME }), msg({ seq: 7, senderId: ME })], {
      kind: 'group',
      reads: [[ME, 7], [2, 7], [3, 5], [4, 1]],
    });
    const state = (seq: number) => target.querySelector(`.message[data-seq="${seq}"] .read-state`)?.textContent?.trim();
    expect(state(5)).toBe('1 unread');
    expect(state(7)).toBe('2 unread');
    expect(target.querySelector('.member-count')?.textContent).toBe('4 members');
    await emit({ event: 'cursor', conversationId: 10, userId: 4, readSeq: 9 });
    expect(state(5)).toBe('All read');
    expect(state(7)).toBe('1 unread');
    setLocale('zh-CN');
    await settle();
    expect(state(5)).toBe('全部已读');
    expect(state(7)).toBe('1 人未读');
    // Nothing was asked of the server for the counts: the list waits for a click.
    expect(fakeApi.readList).not.toHaveBeenCalled();
    unmount(app);
  });

  it('opens who has read a group message on click, with names as text, in English and Chinese', async () => {
    const evil = '<img src=x onerror=alert(1)>\u202Egpj.exe';
    fakeApi.readList.mockResolvedValue({
      conversationId: 10,
      seq: 7,
      read: [{ userId: 2, name: '王芳' }],
      unread: [
        { userId: 3, name: evil },
        { userId: 4, name: 'Zhao Lei' },
      ],
    });
    const { target, app } = await render([msg({ seq: 7, senderId: ME })], {
      kind: 'group',
      reads: [[ME, 7], [2, 7], [3, 5], [4, 1]],
    });
    expect(document.querySelector('#read-list')).toBeNull();
    click(target.querySelector('.message[data-seq="7"] .read-state'));
    await settle();
    expect(fakeApi.readList).toHaveBeenCalledTimes(1);
    expect(fakeApi.readList).toHaveBeenCalledWith(10, 7);
    const panel = document.querySelector<HTMLElement>('#read-list')!;
    const heads = () => [...panel.querySelectorAll('h3')].map((h) => h.textContent?.trim());
    const names = (part: string) => [...panel.querySelectorAll(`.${part} .reader`)].map((e) => e.textContent);
    expect(heads()).toEqual(['Unread (2)', 'Read (1)']);
    expect(names('read')).toEqual(['王芳']);
    expect(names('unread')).toEqual([evil, 'Zhao Lei']);
    // Untrusted names are text in an isolating <bdi>, with the whole name on hover.
    expect(panel.querySelector('img')).toBeNull();
    const hostile = panel.querySelector<HTMLElement>('.reader[data-user-id="3"]')!;
    expect(hostile.title).toBe(evil);
    expect(hostile.firstElementChild?.tagName).toBe('BDI');
    // Someone reads it while the list is open: they move across.
    await emit({ event: 'cursor', conversationId: 10, userId: 4, readSeq: 7 });
    expect(names('read')).toEqual(['王芳', 'Zhao Lei']);
    expect(heads()).toEqual(['Unread (1)', 'Read (2)']);
    setLocale('zh-CN');
    await settle();
    expect(heads()).toEqual(['未读 (1)', '已读 (2)']);
    expect(panel.getAttribute('aria-label')).toBe('已读情况');
    key(document.body, { key: 'Escape' });
    await settle();
    expect(document.querySelector('#read-list')).toBeNull();
    unmount(app);
  });

  it('says why when the read list cannot be had, and shows none for direct chats', async () => {
    fakeApi.readList.mockRejectedValue({ code: 'FORBIDDEN', message: 'not a member' });
    const { target, app } = await render([msg({ seq: 7, senderId: ME })], { kind: 'group', reads: [[2, 7]] });
    click(target.querySelector('.message[data-seq="7"] .read-state'));
    await settle();
    expect(document.querySelector('#read-list [role="alert"]')?.textContent).toMatch(/^Could not load who has read this: /);
    unmount(app);
    document.body.innerHTML = '';
    const direct = await render([msg({ seq: 7, senderId: ME })], { reads: [[2, 7]] });
    expect(direct.target.querySelector('.message[data-seq="7"] button.read-state')).toBeNull();
    unmount(direct.app);
  });

  it('shows recalled messages, recalls own recent ones and resends failed ones', async () => {
    const { target, app } = await render(
      [
        msg({ seq: 1, senderName: '王五', recalled: true, text: '' }),
        msg({ seq: 2, senderId: ME, text: 'oops' }),
        msg({ seq: 3, senderId: ME, text: 'old', sentAtMs: Date.now() - 10 * 60_000 }),
      ],
      { outbox: [msg({ seq: 0, senderId: ME, clientMsgId: 'f1', state: 'failed', error: 'too large', text: 'big' })] },
    );
    expect(target.querySelector('.message[data-seq="1"]')?.textContent?.trim()).toBe('王五 recalled a message');
    expect(target.querySelector('.message[data-seq="3"] .recall')).toBeNull();
    click(target.querySelector('.message[data-seq="2"] .recall'));
    await settle();
    expect(fakeApi.recall).toHaveBeenCalledWith(10, 2);
    expect(target.querySelector('.message[data-seq="2"]')?.textContent?.trim()).toBe('You recalled a message');
    click(target.querySelector('.message[data-client-id="f1"] .retry'));
    await settle();
    expect(fakeApi.retry).toHaveBeenCalledWith('f1');
    expect(target.querySelector('.message[data-client-id="f1"]')?.getAttribute('data-state')).toBe('sending');
    // The shell's answers: acknowledged, then another one fails.
    await emit({ event: 'acked', clientMsgId: 'f1', conversationId: 10, seq: 4 });
    expect(target.querySelector('.message[data-client-id="f1"]')?.getAttribute('data-seq')).toBe('4');
    unmount(app);
  });

  it('edits my own text in place (Enter saves, Escape cancels) and shows edits from elsewhere', async () => {
    const { target, app } = await render([
      msg({ seq: 2, senderId: ME, text: '周会周三开' }),
      msg({ seq: 3, senderId: 2, senderName: '王五', text: '收到' }),
      msg({ seq: 4, senderId: ME, text: 'old', sentAtMs: Date.now() - 25 * 60 * 60_000 }),
    ]);
    // Only my own recent texts can be edited.
    expect(target.querySelector('.message[data-seq="3"] .action.edit')).toBeNull();
    expect(target.querySelector('.message[data-seq="4"] .action.edit')).toBeNull();
    click(target.querySelector('.message[data-seq="2"] .action.edit'));
    await settle();
    const box = target.querySelector('.message[data-seq="2"] .edit-box') as HTMLTextAreaElement;
    expect(box.value).toBe('周会周三开');
    // Escape leaves it as it was.
    key(box, { key: 'Escape' });
    await settle();
    expect(target.querySelector('.message[data-seq="2"] .edit-box')).toBeNull();
    expect(fakeApi.editMessage).not.toHaveBeenCalled();
    click(target.querySelector('.message[data-seq="2"] .action.edit'));
    await settle();
    const again = target.querySelector('.message[data-seq="2"] .edit-box') as HTMLTextAreaElement;
    type(again, '周会改到周四');
    key(again, { key: 'Enter' });
    await settle();
    expect(fakeApi.editMessage).toHaveBeenCalledWith(10, 2, '周会改到周四');
    expect(target.querySelector('.message[data-seq="2"] .text')?.textContent).toBe('周会改到周四');
    expect(target.querySelector('.message[data-seq="2"] .edited')?.textContent).toBe('(edited)');
    // Someone else's edit arrives as an entry naming its target: the target shows the new text.
    await emit({
      event: 'messages',
      messages: [{ ...msg({ seq: 5, senderId: 2, kind: 'edit', text: '收到，周四见', clientMsgId: '' }), targetSeq: 3 }],
    });
    expect(target.querySelector('.message[data-seq="3"] .text')?.textContent).toBe('收到，周四见');
    expect(target.querySelector('.message[data-seq="3"] .edited')).not.toBeNull();
    expect(target.querySelector('.message[data-seq="5"]')).toBeNull();
    unmount(app);
    // The edit box took focus; give the document none again, as the next test expects.
    const probe = document.body.appendChild(document.createElement('input'));
    probe.focus();
    probe.blur();
    probe.remove();
  });

  it('shows reactions with who reacted, and adds or takes back mine', async () => {
    session.displayName = '张伟';
    const { target, app } = await render([
      msg({
        seq: 2,
        senderId: 2,
        senderName: '王五',
        text: '周四开会',
        reactions: [
          { emoji: '👍', count: 2, mine: true, names: ['张伟', '李娜'] },
          { emoji: '😄', count: 1, mine: false, names: ['李娜'] },
        ],
      }),
    ]);
    const chips = () =>
      [...target.querySelectorAll('.message[data-seq="2"] .reaction')].map((c) => [c.textContent?.replace(/\s+/g, ' ').trim(), c.getAttribute('aria-pressed')]);
    expect(chips()).toEqual([
      ['👍 2', 'true'],
      ['😄 1', 'false'],
    ]);
    expect((target.querySelector('.message[data-seq="2"] .reaction') as HTMLElement).title).toBe('张伟、李娜 reacted with 👍');
    // Clicking my 👍 takes it back.
    click(target.querySelector('.message[data-seq="2"] .reaction'));
    await settle();
    expect(fakeApi.react).toHaveBeenLastCalledWith(10, 2, '👍', true);
    expect(chips()).toEqual([
      ['👍 1', 'false'],
      ['😄 1', 'false'],
    ]);
    // The picker adds a new one.
    click(target.querySelector('.message[data-seq="2"] .action.react'));
    await settle();
    const party = [...target.querySelectorAll('.message[data-seq="2"] .reaction-picker .pick')].find((b) => b.textContent === '🎉');
    click(party ?? null);
    await settle();
    expect(fakeApi.react).toHaveBeenLastCalledWith(10, 2, '🎉', false);
    expect(chips()).toEqual([
      ['👍 1', 'false'],
      ['😄 1', 'false'],
      ['🎉 1', 'true'],
    ]);
    expect(target.querySelector('.message[data-seq="2"] .reaction-picker')).toBeNull();
    // A reaction entry arriving from the shell is never shown as a message.
    await emit({ event: 'messages', messages: [{ ...msg({ seq: 3, kind: 'reaction', text: '👍', clientMsgId: '' }), targetSeq: 2 }] });
    expect(target.querySelector('.message[data-seq="3"]')).toBeNull();
    unmount(app);
  });

  it('pins a message, shows the pinned bar as text, and the pin entries as lines in the reader\'s language', async () => {
    fakeApi.pins.mockResolvedValue([{ seq: 2, pinnedByName: '李娜', senderName: '王五', kind: 'text', text: '<img src=x onerror=alert(1)>' }]);
    const { target, app } = await render(
      [
        msg({ seq: 1, senderId: 2, senderName: '王五', text: 'first' }),
        msg({ seq: 2, senderId: 2, senderName: '王五', text: '<img src=x onerror=alert(1)>' }),
        { ...msg({ seq: 3, senderId: 3, senderName: '李娜', kind: 'pin', text: '', clientMsgId: 'pin-10-2-9' }), targetSeq: 2 },
      ],
      { kind: 'group' },
    );
    const bar = target.querySelector('#pinned-bar');
    expect(bar?.textContent).toContain('王五: <img src=x onerror=alert(1)>');
    expect(bar?.querySelector('img')).toBeNull();
    expect(target.querySelector('.message[data-seq="3"] .text')?.textContent).toBe('\u2068李娜\u2069 pinned a message');
    // The pinned message's action unpins it; another pins it.
    expect(target.querySelector('.message[data-seq="2"] .action.pin')?.getAttribute('aria-pressed')).toBe('true');
    fakeApi.pins.mockResolvedValue([]);
    click(target.querySelector('.message[data-seq="2"] .action.pin'));
    await settle();
    expect(fakeApi.pinMessage).toHaveBeenLastCalledWith(10, 2, true);
    expect(target.querySelector('#pinned-bar')).toBeNull();
    click(target.querySelector('.message[data-seq="1"] .action.pin'));
    await settle();
    expect(fakeApi.pinMessage).toHaveBeenLastCalledWith(10, 1, false);
    // A pin entry from elsewhere reloads the bar.
    fakeApi.pins.mockResolvedValue([{ seq: 1, pinnedByName: '我', senderName: '王五', kind: 'text', text: 'first' }]);
    await emit({ event: 'messages', messages: [{ ...msg({ seq: 4, senderId: ME, kind: 'pin', clientMsgId: 'pin-10-1-12' }), targetSeq: 1 }] });
    await settle();
    expect(target.querySelector('#pinned-bar .pinned-text')?.textContent).toBe('王五: first');
    expect(target.querySelector('.message[data-seq="4"] .text')?.textContent).toBe('You pinned a message');
    unmount(app);
  });

  it('selects messages and forwards them merged; a merged record is a card whose viewer lists the items as text', async () => {
    setLocale('zh-CN');
    const evil = '<img src=x onerror=alert(1)>';
    const record = {
      fromGroup: false,
      titleNames: ['张伟', evil],
      items: [
        { senderName: '张伟', sentAtMs: Date.now(), kind: 'text' as const, text: evil, attachment: null },
        { senderName: evil, sentAtMs: Date.now(), kind: 'file' as const, text: '纪要.pdf', attachment: null },
      ],
    };
    const { target, app } = await render([
      msg({ seq: 1, senderId: 2, senderName: '王五', text: 'one' }),
      msg({ seq: 2, senderId: 2, senderName: '王五', text: 'two' }),
      msg({ seq: 3, senderId: 2, senderName: '王五', kind: 'forward', text: '', forward: record }),
    ]);
    convos.list = [conv({ id: 10, kind: 'direct', name: '李四', members: [ME, 2] }), conv({ id: 11, kind: 'group', name: '项目组', members: [ME, 2, 3] })];
    // The card: the title worded by the app, the items as text.
    const card = target.querySelector('.message[data-seq="3"] .forward-card');
    expect(card?.querySelector('.forward-title')?.textContent).toBe(`\u2068张伟\u2069和\u2068${evil}\u2069的聊天记录`);
    expect(card?.querySelector('img')).toBeNull();
    click(card);
    await settle();
    const viewer = document.querySelector('#forward-viewer');
    expect([...(viewer?.querySelectorAll('.item .text') ?? [])].map((e) => e.textContent)).toEqual([evil, '[文件] 纪要.pdf']);
    expect(viewer?.querySelector('img')).toBeNull();
    click(viewer?.querySelector('.close') ?? null);
    await settle();
    // Multi-select: the first message starts it, the second joins; merged to the group.
    click(target.querySelector('.message[data-seq="2"] .action.select-start'));
    await settle();
    click(target.querySelector('.message[data-seq="1"] .select-box'));
    await settle();
    expect(target.querySelector('#selection-bar .count')?.textContent).toBe('已选 2 条');
    expect(target.querySelector('.composer')).toBeNull();
    click(target.querySelector('#selection-bar .forward-merged'));
    await settle();
    const picker = document.querySelector('#forward-picker');
    click(picker?.querySelector('.target[data-id="11"] input') ?? null);
    await settle();
    click(picker?.querySelector('.send') ?? null);
    await settle();
    expect(fakeApi.forwardMessages).toHaveBeenLastCalledWith(10, [1, 2], [11], true);
    expect(target.querySelector('#selection-bar')).toBeNull();
    unmount(app);
  });

  it('renders only a window of a 10,000-message conversation', async () => {
    const base = Date.now() - 20_000_000;
    const history = Array.from({ length: 10_000 }, (_, i) =>
      msg({ seq: i + 1, clientMsgId: `h${i + 1}`, sentAtMs: base + i * 1000, senderId: i % 3 === 0 ? ME : 2 }),
    );
    const { target, app } = await render(history);
    const list = target.querySelector('#messages');
    expect(list?.getAttribute('data-count')).toBe(String(10_000 + 1)); // one day separator
    const rendered = target.querySelectorAll('.message').length;
    expect(rendered).toBeGreaterThan(0);
    expect(rendered).toBeLessThan(60);
    // Opened at the bottom: the newest message is in the DOM, the oldest not.
    expect(target.querySelector('.message[data-seq="10000"]')).not.toBeNull();
    expect(target.querySelector('.message[data-seq="1"]')).toBeNull();
    unmount(app);
  });

  it('appends a burst of 1,000 messages from one event and stays at the bottom', async () => {
    const { target, app } = await render([msg({ seq: 1, clientMsgId: 'first' })]);
    const burst = Array.from({ length: 1000 }, (_, i) => msg({ seq: i + 2, clientMsgId: `b${i}`, text: `burst ${i}` }));
    burst.push(msg({ conversationId: 11, seq: 5000, clientMsgId: 'elsewhere' }));
    await emit({ event: 'messages', messages: burst });
    expect(target.querySelector('#messages')?.getAttribute('data-count')).toBe(String(1001 + 1));
    expect(target.querySelectorAll('.message').length).toBeLessThan(60);
    expect(target.querySelector('.message[data-seq="1001"] .text')?.textContent).toBe('burst 999');
    expect(target.querySelector('[data-client-id="elsewhere"]')).toBeNull();
    unmount(app);
  });

  it('marks read when the window is focused and the end is visible', async () => {
    const { target, app } = await render([msg({ seq: 4 }), msg({ seq: 8 })], { reads: [[ME, 4]] });
    expect(fakeApi.markRead).not.toHaveBeenCalled(); // the window has no focus yet
    (target.querySelector('#composer') as HTMLTextAreaElement).focus();
    await settle();
    expect(fakeApi.markRead).toHaveBeenCalledWith(10, 8);
    await emit({ event: 'messages', messages: [msg({ seq: 9 })] });
    expect(fakeApi.markRead).toHaveBeenLastCalledWith(10, 9);
    unmount(app);
  });

  it('shows who is typing', async () => {
    const { target, app } = await render([]);
    await emit({ event: 'typing', conversationId: 10, userId: 2, name: '李四' });
    expect(target.querySelector('.typing-line')?.textContent).toBe('李四 is typing…');
    unmount(app);
  });

  describe('composer', () => {
    it('sends on Enter, breaks the line on Shift+Enter, never during IME composition', async () => {
      const { target, app } = await render([]);
      const box = target.querySelector('#composer') as HTMLTextAreaElement;
      type(box, 'hello');
      expect(key(box, { key: 'Enter', shiftKey: true }).defaultPrevented).toBe(false);
      expect(key(box, { key: 'Enter', isComposing: true }).defaultPrevented).toBe(false);
      expect(key(box, { key: 'Enter', keyCode: 229 }).defaultPrevented).toBe(false);
      await settle();
      expect(fakeApi.sendText).not.toHaveBeenCalled();
      expect(key(box, { key: 'Enter' }).defaultPrevented).toBe(true);
      await settle();
      expect(fakeApi.sendText).toHaveBeenCalledWith(10, 'hello', [], 0);
      expect(box.value).toBe('');
      expect(texts(target)).toContain('hello');
      unmount(app);
    });

    it('with enterSends off, Enter is a new line and Ctrl+Enter sends', async () => {
      session.settings = { ...session.settings, enterSends: false };
      const { target, app } = await render([]);
      const box = target.querySelector('#composer') as HTMLTextAreaElement;
      type(box, 'line');
      expect(key(box, { key: 'Enter' }).defaultPrevented).toBe(false);
      await settle();
      expect(fakeApi.sendText).not.toHaveBeenCalled();
      key(box, { key: 'Enter', ctrlKey: true });
      await settle();
      expect(fakeApi.sendText).toHaveBeenCalledWith(10, 'line', [], 0);
      unmount(app);
    });

    it('keeps the text and explains when sending fails', async () => {
      fakeApi.sendText.mockRejectedValue({ code: 'TOO_LARGE', message: 'too large' });
      const { target, app } = await render([]);
      const box = target.querySelector('#composer') as HTMLTextAreaElement;
      type(box, 'keep me');
      await settle();
      click(target.querySelector('#send'));
      await settle();
      expect(box.value).toBe('keep me');
      expect(target.querySelector('#send-error')?.textContent).toBe('The message is too long');
      unmount(app);
    });

    it('replies with a quote and shows it on the sent message', async () => {
      fakeApi.sendText.mockImplementation(async (conversationId, text, mentions, replyToSeq) =>
        msg({ conversationId, text, mentions, replyToSeq, seq: 0, senderId: ME, state: 'sending', clientMsgId: 'r1' }),
      );
      const { target, app } = await render([msg({ seq: 3, text: 'question?', senderName: '李四' })]);
      click(target.querySelector('.message[data-seq="3"] .reply'));
      await settle();
      expect(target.querySelector('#reply-preview')?.textContent).toContain('question?');
      type(target.querySelector('#composer'), 'answer');
      key(target.querySelector('#composer'), { key: 'Enter' });
      await settle();
      expect(fakeApi.sendText).toHaveBeenCalledWith(10, 'answer', [], 3);
      expect(target.querySelector('.message[data-client-id="r1"] .quote')?.textContent).toContain('question?');
      expect(target.querySelector('#reply-preview')).toBeNull();
      unmount(app);
    });

    it('inserts emoji and @mentions members in groups', async () => {
      const { target, app } = await render([], { kind: 'group', reads: [[ME, 0], [2, 0], [3, 0]] });
      const box = target.querySelector('#composer') as HTMLTextAreaElement;
      type(box, 'hi @user');
      await settle();
      const options = [...target.querySelectorAll('.mention-option')].map((o) => o.getAttribute('data-id'));
      expect(options).toEqual(['2', '3']);
      click(target.querySelector('.mention-option[data-id="3"]'));
      await settle();
      expect(box.value).toBe('hi @user3 ');
      click(target.querySelector('#emoji-button'));
      await settle();
      const emoji = target.querySelectorAll('.emoji');
      expect(emoji.length).toBeGreaterThanOrEqual(80);
      click(emoji[0] ?? null);
      await settle();
      expect(box.value).toBe('hi @user3 😀');
      key(box, { key: 'Enter' });
      await settle();
      expect(fakeApi.sendText).toHaveBeenCalledWith(10, 'hi @user3 😀', [3], 0);
      unmount(app);
    });
  });
});

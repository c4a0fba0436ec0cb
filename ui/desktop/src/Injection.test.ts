// 328 script-injection payloads (tests/corpus/injection.mjs) as people's
// names, message texts, quoted messages, group names and group events,
// rendered by the app's own components: each must arrive as the same text,
// and nothing in the rendered page may carry an event handler, a
// javascript: URL or an element that runs or loads something.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import ConversationList from './ConversationList.svelte';
import MessageItem from './MessageItem.svelte';
import { convos } from './lib/convos.svelte';
import { setLocale } from './lib/locale.svelte';
import { conv, ME, msg, resetFake, settle } from './lib/testing';
import { dangers, payloads, shape } from '../../../tests/corpus/injection.mjs';

vi.mock('./lib/api', async () => (await import('./lib/fake-api')).apiModule);

const corpus = payloads();
const pwned = vi.fn();

beforeEach(() => {
  resetFake();
  setLocale('zh-CN');
  (globalThis as unknown as { __pwned: unknown }).__pwned = pwned;
});
afterEach(() => {
  document.body.innerHTML = '';
});

describe('script-injection payloads render as inert text', () => {
  it('has at least 300 payloads', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(300);
  });

  it('in messages: sender names, texts, quotes and group events', async () => {
    const render = async (p: string) => {
      const quoted = msg({ seq: 1, senderId: 3, senderName: p, text: p });
      const message = msg({ seq: 2, senderId: 3, senderName: p, text: p, replyToSeq: 1 });
      const event = msg({
        seq: 3,
        kind: 'system',
        senderId: 0,
        text: '',
        system: p,
        event: { kind: 'group_created', actor: { id: 3, name: p }, users: [{ id: 4, name: p }], name: p, role: 'member' },
      });
      const target = document.body.appendChild(document.createElement('div'));
      const common = { grouped: false, me: ME, direct: false, reads: [], members: [ME, 3, 4], onReply() {}, onCopy() {}, onRecall() {}, onEdit: async () => true, onReact() {}, onRetry() {}, onReadList() {} };
      const apps = [
        mount(MessageItem, { target, props: { ...common, message, quoted } }),
        mount(MessageItem, { target, props: { ...common, message: event, quoted: null } }),
      ];
      await settle();
      return { target, done: () => (apps.forEach((a) => unmount(a)), target.remove()) };
    };
    const benign = await render('张三');
    const expected = shape(benign.target);
    benign.done();
    for (const [i, p] of corpus.entries()) {
      const { target, done } = await render(p);
      const what = `payload ${i + 1}: ${p}`;
      expect(dangers(target), what).toEqual([]);
      expect(shape(target), what).toEqual(expected);
      const texts = [...target.querySelectorAll('.message[data-seq="2"] .text')].map((e) => e.textContent);
      expect(texts, what).toContain(p);
      expect(target.querySelector('.message[data-seq="2"] .sender')?.textContent, what).toBe(p);
      const sentence = target.querySelector('.message[data-seq="3"] .text')?.textContent ?? '';
      expect(sentence.replace(/[\u2068\u2069]/g, ''), what).toContain(`${p} 创建了群聊“${p}”`);
      done();
    }
    expect(pwned).not.toHaveBeenCalled();
  });

  it('in the conversation list: names and previews', async () => {
    const render = async (name: (i: number) => string) => {
      convos.list = corpus.map((_, i) => conv({ id: 100 + i, kind: 'group', name: name(i), lastText: name(i) }));
      const target = document.body.appendChild(document.createElement('div'));
      const app = mount(ConversationList, { target });
      await settle();
      return { target, app };
    };
    const benign = await render((i) => `群${i}`);
    const expected = shape(benign.target);
    unmount(benign.app);
    benign.target.remove();
    const { target, app } = await render((i) => corpus[i] ?? '');
    expect(dangers(target)).toEqual([]);
    expect(shape(target)).toEqual(expected);
    const rows = [...target.querySelectorAll('.conversation')];
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      const i = Number((row as HTMLElement).dataset.id) - 100;
      expect(row.querySelector('.name')?.textContent).toBe(corpus[i]);
    }
    unmount(app);
    expect(pwned).not.toHaveBeenCalled();
  });
});

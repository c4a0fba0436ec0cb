import { beforeEach, describe, expect, it, vi } from 'vitest';

vi.mock('./api', async () => (await import('./fake-api')).apiModule);

import { conv, fakeApi, resetFake } from './testing';
import { convos, reloadConversations } from './convos.svelte';
import type { ConversationView } from './types';

/** An answer the test hands out when it likes. */
function deferred(): { promise: Promise<ConversationView[]>; resolve: (v: ConversationView[]) => void } {
  let resolve!: (v: ConversationView[]) => void;
  const promise = new Promise<ConversationView[]>((r) => (resolve = r));
  return { promise, resolve };
}

describe('reloading the conversation list', () => {
  beforeEach(() => resetFake());

  it('reads once at a time and once more after a read for every call made during it', async () => {
    const answers = [deferred(), deferred()];
    let n = 0;
    fakeApi.conversations.mockImplementation(() => (answers[n++] as ReturnType<typeof deferred>).promise);

    const first = reloadConversations();
    // A burst of changes while the first read is under way.
    const during = [reloadConversations(), reloadConversations(), reloadConversations()];
    expect(fakeApi.conversations).toHaveBeenCalledTimes(1);
    expect(during[1]).toBe(during[0]);

    answers[0]?.resolve([conv({ id: 1, name: 'old' })]);
    await first;
    expect(convos.list.map((c) => c.name)).toEqual(['old']);
    // The follow-up read started: the changes made during the first are read.
    await vi.waitFor(() => expect(fakeApi.conversations).toHaveBeenCalledTimes(2));
    answers[1]?.resolve([conv({ id: 1, name: 'new' }), conv({ id: 2, name: 'two' })]);
    await Promise.all(during);
    expect(convos.list.map((c) => c.name)).toEqual(['new', 'two']);
    expect(fakeApi.conversations).toHaveBeenCalledTimes(2);

    // Quiet again: the next call reads at once.
    fakeApi.conversations.mockResolvedValue([]);
    await reloadConversations();
    expect(fakeApi.conversations).toHaveBeenCalledTimes(3);
    expect(convos.list).toEqual([]);
  });

  it('keeps the list and shows the error when a read fails, and reads again next time', async () => {
    fakeApi.conversations.mockResolvedValueOnce([conv({ id: 7, name: 'kept' })]);
    await reloadConversations();
    fakeApi.conversations.mockRejectedValueOnce({ code: 'OFFLINE', message: 'cache unavailable' });
    await reloadConversations();
    expect(convos.error).toBe('cache unavailable');
    expect(convos.list.map((c) => c.id)).toEqual([7]);
    fakeApi.conversations.mockResolvedValueOnce([conv({ id: 8 })]);
    await reloadConversations();
    expect(convos.error).toBe('');
    expect(convos.list.map((c) => c.id)).toEqual([8]);
  });
});

// The stand-in for the shell used by the component tests: every command a
// vi.fn with a harmless default answer; events go to whoever subscribed.
// It imports nothing that imports ./api, so `vi.mock('./lib/api', …)` can load it.
import { vi, type Mock } from 'vitest';
import type { Api, DragDrop } from './api';
import type { AppEvent, MessageView, NoticeView, SessionState, Settings, TransferView } from './types';
import { DEFAULT_SETTINGS } from './session.svelte';

export const ME = 1;

export type FakeApi = { [K in keyof Api]: Mock<Api[K]> };

export const bus: { listener: ((e: AppEvent) => void) | null; drop: ((e: DragDrop) => void) | null } = {
  listener: null,
  drop: null,
};


export function sessionState(over: Partial<SessionState> = {}): SessionState {
  return {
    signedIn: true,
    server: 'tls://chat.example.com:7300',
    account: 'me',
    userId: ME,
    displayName: '我自己',
    status: { state: 'online' },
    systemLocale: 'en-US',
    settings: { ...DEFAULT_SETTINGS },
    defaultServer: null,
    defaultDownloadDir: '/home/me/Downloads/Hutong',
    ...over,
  };
}

function defaults(): { [K in keyof Api]: Api[K] } {
  return {
    sessionState: async () => sessionState(),
    probeServer: async (server) => ({ server, fingerprint: null, known: null }),
    signIn: async () => sessionState(),
    changePassword: async () => {},
    signOut: async () => {},
    conversations: async () => [],
    history: async () => [],
    outbox: async () => [],
    readState: async () => [],
    readList: async (conversationId, seq) => ({ conversationId, seq, read: [], unread: [] }),
    sendText: async (conversationId, text, mentions, replyToSeq) =>
      msg({ conversationId, text, mentions, replyToSeq, seq: 0, state: 'sending', senderId: ME, clientMsgId: `c-${text}` }),
    retry: async () => {},
    markRead: async () => {},
    recall: async () => {},
    editMessage: async () => {},
    react: async () => {},
    pinMessage: async () => {},
    pins: async () => [],
    massSend: async () => ({ id: 'mass-1', recipients: [] }),
    massSendStatus: async (id) => ({ id, recipients: [] }),
    forwardMessages: async () => [],
    fetchForwarded: async (conversationId, seq, index) =>
      transfer({ id: `fwd-${seq}-${index}`, direction: 'download', conversationId, seq, clientMsgId: '' }),
    typing: async () => {},
    setPinned: async () => {},
    setMuted: async () => {},
    setFocus: async () => {},
    directoryChildren: async () => ({ departments: [], people: [] }),
    person: async () => null,
    search: async () => ({ people: [], conversations: [], messages: [] }),
    openDirect: async () => 1,
    createGroup: async () => 1,
    renameGroup: async () => {},
    addMembers: async () => {},
    removeMember: async () => {},
    leaveGroup: async () => {},
    settings: async () => ({ ...DEFAULT_SETTINGS }),
    saveSettings: async (s: Settings) => s,
    uiReady: async () => {},
    sendPaths: async (conversationId, paths) =>
      paths.map((p, i) => transfer({ id: `up-${i}`, conversationId, name: p.split('/').pop() ?? p, localPath: p })),
    pasteImage: async (conversationId) => transfer({ id: 'paste', conversationId, kind: 'image', name: 'image.png' }),
    fetchAttachment: async (conversationId, seq) =>
      transfer({ id: `down-${seq}`, direction: 'download', conversationId, seq, clientMsgId: '' }),
    transfers: async () => [],
    pauseTransfer: async () => {},
    resumeTransfer: async () => {},
    cancelTransfer: async () => {},
    openPath: async () => true,
    revealPath: async () => {},
    pickPaths: async () => null,
    pickDownloadDir: async () => null,
    onDragDrop: async (handler) => {
      bus.drop = handler;
      return () => {
        if (bus.drop === handler) bus.drop = null;
      };
    },
    notices: async () => [],
    notice: async () => null,
    unreadNotices: async () => 0,
    readNotices: async () => {},
    signNotice: async (id) => noticeOf({ id, signedAtMs: Date.now(), signedDevice: 'desktop' }),
    chooseNotice: async (id, button) => noticeOf({ id, chosen: button }),
    noticeRights: async () => ({ wide: false }),
    sendNotice: async () => ({ noticeId: 1, recipients: 1 }),
    sentNotices: async () => [],
    noticeStatus: async () => ({ notice: null, counts: { recipients: 0, delivered: 0, read: 0, signed: 0 }, recipients: [], nextAfterUserId: 0 }),
    remindNotice: async () => 0,
    withdrawNotice: async () => {},
    exportNoticeCsv: async () => '/home/me/Downloads/Hutong/notice-1.csv',
    openLink: async () => {},
    onEvent: async (handler) => {
      bus.listener = handler;
      return () => {
        if (bus.listener === handler) bus.listener = null;
      };
    },
  };
}

export const fakeApi = Object.fromEntries(Object.keys(defaults()).map((k) => [k, vi.fn()])) as unknown as FakeApi;

/** Puts every command back to its default answer and forgets the calls. */
export function resetApi(): void {
  const d = defaults();
  for (const key of Object.keys(d) as Array<keyof Api>) {
    const mock = fakeApi[key] as unknown as Mock<(...args: unknown[]) => unknown>;
    mock.mockReset();
    mock.mockImplementation(d[key] as (...args: unknown[]) => unknown);
  }
  bus.listener = null;
  bus.drop = null;
}

/** What `vi.mock('./lib/api', …)` should return. */
export const apiModule = { api: fakeApi };


let nextSeq = 1000;

export function msg(over: Partial<MessageView> = {}): MessageView {
  const seq = over.seq ?? nextSeq++;
  return {
    conversationId: 10,
    seq,
    senderId: 2,
    senderName: '李四',
    clientMsgId: `m-${seq}-${Math.random().toString(36).slice(2)}`,
    sentAtMs: Date.now(),
    kind: 'text',
    text: `message ${seq}`,
    mentions: [],
    replyToSeq: 0,
    recalled: false,
    system: null,
    event: null,
    edited: false,
    reactions: [],
    unpinned: false,
    forward: null,
    targetSeq: 0,
    state: 'sent',
    error: null,
    attachment: null,
    ...over,
  };
}

export function transfer(over: Partial<TransferView> = {}): TransferView {
  return {
    id: 't1',
    direction: 'upload',
    state: 'queued',
    conversationId: 10,
    seq: 0,
    clientMsgId: `c-${over.id ?? 't1'}`,
    kind: 'file',
    name: 'report.pdf',
    localPath: '/home/me/report.pdf',
    totalBytes: 1000,
    doneBytes: 0,
    wireBytes: 0,
    error: null,
    errorCode: null,
    createdAtMs: Date.now(),
    ...over,
  };
}


export function noticeOf(over: Partial<NoticeView> = {}): NoticeView {
  return {
    id: 1,
    senderId: 2,
    senderName: '李四',
    title: '关于年度体检的通知',
    body: '请于**周五**前完成体检。',
    priority: 'normal',
    signRequired: false,
    deadlineMs: 0,
    sentAtMs: 1_700_000_000_000,
    withdrawnAtMs: 0,
    deliveredAtMs: 0,
    readAtMs: 0,
    signedAtMs: 0,
    signedDevice: '',
    remindedAtMs: 0,
    buttons: [],
    chosen: '',
    comment: '',
    summaryOf: 0,
    unsignedUsers: [],
    ...over,
  };
}

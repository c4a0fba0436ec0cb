// Typed wrappers over the shell's commands. Components import from here and
// never call `invoke` directly, so tests can replace this module.
import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import { getCurrentWebview } from '@tauri-apps/api/webview';
import type {
  AppEvent,
  ConversationView,
  Department,
  MemberRead,
  MassSendView,
  MessageView,
  Person,
  PinView,
  ReadList,
  SearchResults,
  ServerProbe,
  SessionState,
  Settings,
  TransferView,
  NoticeDraft,
  NoticeFilter,
  NoticeStatusView,
  NoticeView,
  SentNoticeView,
} from './types';

export const api = {
  sessionState: () => invoke<SessionState>('session_state'),
  probeServer: (server: string) => invoke<ServerProbe>('probe_server', { server }),
  /** `insecurePlaintext`: the person chose an unencrypted tcp:// or ws:// connection explicitly. */
  signIn: (server: string, account: string, password: string, fingerprint: string | null, insecurePlaintext: boolean) =>
    invoke<SessionState>('sign_in', { server, account, password, fingerprint, insecurePlaintext }),
  changePassword: (
    server: string,
    account: string,
    oldPassword: string,
    newPassword: string,
    fingerprint: string | null,
    insecurePlaintext: boolean,
  ) => invoke<void>('change_password', { server, account, oldPassword, newPassword, fingerprint, insecurePlaintext }),
  signOut: () => invoke<void>('sign_out'),
  conversations: () => invoke<ConversationView[]>('conversations'),
  /** Oldest first; `beforeSeq` null means the newest page. Pending and failed outbox entries are not included. */
  history: (conversationId: number, beforeSeq: number | null, limit: number) =>
    invoke<MessageView[]>('history', { conversationId, beforeSeq, limit }),
  /** This conversation's messages still in the outbox (sending or failed), oldest first. */
  outbox: (conversationId: number) => invoke<MessageView[]>('outbox', { conversationId }),
  readState: (conversationId: number) => invoke<MemberRead[]>('read_state', { conversationId }),
  /** Who has read a message and who has not, asked of the server (group members only). */
  readList: (conversationId: number, seq: number) => invoke<ReadList>('read_list', { conversationId, seq }),
  sendText: (conversationId: number, text: string, mentions: number[], replyToSeq: number) =>
    invoke<MessageView>('send_text', { conversationId, text, mentions, replyToSeq }),
  retry: (clientMsgId: string) => invoke<void>('retry', { clientMsgId }),
  markRead: (conversationId: number, seq: number) => invoke<void>('mark_read', { conversationId, seq }),
  recall: (conversationId: number, seq: number) => invoke<void>('recall', { conversationId, seq }),
  editMessage: (conversationId: number, seq: number, text: string) =>
    invoke<void>('edit_message', { conversationId, seq, text }),
  react: (conversationId: number, seq: number, emoji: string, remove: boolean) =>
    invoke<void>('react', { conversationId, seq, emoji, remove }),
  pinMessage: (conversationId: number, seq: number, unpin: boolean) =>
    invoke<void>('pin_message', { conversationId, seq, unpin }),
  massSend: (text: string, userIds: number[], departmentIds: number[]) =>
    invoke<MassSendView>('mass_send', { text, userIds, departmentIds }),
  massSendStatus: (id: string) => invoke<MassSendView>('mass_send_status', { id }),
  pins: (conversationId: number) => invoke<PinView[]>('pins', { conversationId }),
  forwardMessages: (conversationId: number, seqs: number[], targets: number[], merged: boolean) =>
    invoke<MessageView[]>('forward_messages', { conversationId, seqs, targets, merged }),
  fetchForwarded: (conversationId: number, seq: number, index: number) =>
    invoke<TransferView>('fetch_forwarded', { conversationId, seq, index }),
  typing: (conversationId: number) => invoke<void>('typing', { conversationId }),
  setPinned: (conversationId: number, pinned: boolean) =>
    invoke<void>('set_pinned', { conversationId, pinned }),
  setMuted: (conversationId: number, muted: boolean) => invoke<void>('set_muted', { conversationId, muted }),
  /** The conversation on screen (null: none); no notification is shown for it while the window has focus. */
  setFocus: (conversationId: number | null) => invoke<void>('set_focus', { conversationId }),
  directoryChildren: (parentId: number) =>
    invoke<{ departments: Department[]; people: Person[] }>('directory_children', { parentId }),
  person: (userId: number) => invoke<Person | null>('person', { userId }),
  /** People, conversations and message text in the local cache (Chinese and pinyin too). */
  search: (query: string) => invoke<SearchResults>('search', { query }),
  /** Opens (or creates) the direct chat with a person; returns its conversation id. */
  openDirect: (userId: number) => invoke<number>('open_direct', { userId }),
  createGroup: (name: string, memberIds: number[]) => invoke<number>('create_group', { name, memberIds }),
  renameGroup: (conversationId: number, name: string) =>
    invoke<void>('rename_group', { conversationId, name }),
  addMembers: (conversationId: number, userIds: number[]) =>
    invoke<void>('add_members', { conversationId, userIds }),
  removeMember: (conversationId: number, userId: number) =>
    invoke<void>('remove_member', { conversationId, userId }),
  leaveGroup: (conversationId: number) => invoke<void>('leave_group', { conversationId }),
  settings: () => invoke<Settings>('settings'),
  saveSettings: (settings: Settings) => invoke<Settings>('save_settings', { settings }),
  /** Sends each path: a directory as a folder, anything else as a file. */
  sendPaths: (conversationId: number, paths: string[]) =>
    invoke<TransferView[]>('send_paths', { conversationId, paths }),
  /** Sends the clipboard's image as a PNG file; rejects with code NO_IMAGE when there is none. */
  pasteImage: (conversationId: number) => invoke<TransferView>('paste_image', { conversationId }),
  /** Downloads a file or folder message into the download folder. */
  fetchAttachment: (conversationId: number, seq: number) =>
    invoke<TransferView>('fetch_attachment', { conversationId, seq }),
  /** Every transfer, newest first. */
  transfers: () => invoke<TransferView[]>('transfers'),
  pauseTransfer: (id: string) => invoke<void>('pause_transfer', { id }),
  resumeTransfer: (id: string) => invoke<void>('resume_transfer', { id }),
  cancelTransfer: (id: string) => invoke<void>('cancel_transfer', { id }),
  /**
   * Opens a finished transfer's file or folder (the shell refuses any other
   * path). For a program, script or installer the shell itself asks in a
   * native dialog; false when the person declined there.
   */
  openPath: (path: string) => invoke<boolean>('open_path', { path }),
  /** Shows a finished transfer's file or folder in the file manager. */
  revealPath: (path: string) => invoke<void>('reveal_path', { path }),
  /** The native folder picker for the download folder; the new settings, or null when cancelled. */
  pickDownloadDir: () => invoke<Settings | null>('pick_download_dir'),
  /** The native picker; null when cancelled. Only picked or dropped paths may be sent. */
  pickPaths: (folders: boolean, single: boolean) => invoke<string[] | null>('pick_paths', { folders, single }),
  /** Native file drops on the window (Tauri's drag-drop events for this webview). */
  onDragDrop: (handler: (e: DragDrop) => void): Promise<UnlistenFn> =>
    getCurrentWebview().onDragDropEvent((e) => {
      const p = e.payload;
      handler(p.type === 'drop' || p.type === 'enter' ? { type: p.type, paths: p.paths } : { type: p.type });
    }),
  /** My notices: awaiting my signature first, then the rest, newest first. */
  notices: () => invoke<NoticeView[]>('notices'),
  notice: (id: number) => invoke<NoticeView | null>('notice', { id }),
  unreadNotices: () => invoke<number>('unread_notices'),
  readNotices: (ids: number[]) => invoke<void>('read_notices', { ids }),
  signNotice: (id: number) => invoke<NoticeView>('sign_notice', { id }),
  chooseNotice: (id: number, button: string, comment: string) =>
    invoke<NoticeView>('choose_notice', { id, button, comment }),
  /** wide: departments, everyone and urgent may be offered (administrators and publishers). */
  noticeRights: () => invoke<{ wide: boolean }>('notice_rights'),
  sendNotice: (draft: NoticeDraft) => invoke<{ noticeId: number; recipients: number }>('send_notice', { draft }),
  sentNotices: (beforeId: number, limit: number) => invoke<SentNoticeView[]>('sent_notices', { beforeId, limit }),
  noticeStatus: (id: number, filter: NoticeFilter, afterUserId: number, limit: number) =>
    invoke<NoticeStatusView>('notice_status', { id, filter, afterUserId, limit }),
  remindNotice: (id: number) => invoke<number>('remind_notice', { id }),
  withdrawNotice: (id: number) => invoke<void>('withdraw_notice', { id }),
  /** Writes the whole table as CSV (download folder, or a picked folder); its path, null if cancelled. */
  exportNoticeCsv: (id: number, filter: NoticeFilter, choose: boolean, utcOffsetMinutes = -new Date().getTimezoneOffset()) =>
    invoke<string | null>('export_notice_csv', { id, filter, choose, utcOffsetMinutes }),
  /** Opens an http(s) or mailto link in the system browser (the shell refuses others). */
  openLink: (url: string) => invoke<void>('open_link', { url }),
  /** Called once the first screen is drawn (the shell records start-up time). */
  uiReady: () => invoke<void>('ui_ready'),
  onEvent: (handler: (e: AppEvent) => void): Promise<UnlistenFn> =>
    listen<AppEvent>('hutong://event', (e) => handler(e.payload)),
};

export type Api = typeof api;

/** A native drag over the window: files entering, moving, dropped, or leaving. */
export type DragDrop = { type: 'enter' | 'drop'; paths: string[] } | { type: 'over' | 'leave' };

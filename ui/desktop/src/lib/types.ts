// The contract between the desktop UI and its Rust shell (src-tauri/). Every
// command is a thin call into the client core; every name here is camelCase on
// the wire. Errors from any command arrive as `AppError`.

/** What every failed command rejects with. `code` is stable (see ClientError::code). */
export interface AppError {
  code: string;
  message: string;
}

/** The connection as the banner shows it. */
export type Status =
  | { state: 'connecting' }
  | { state: 'online' }
  | { state: 'reconnecting'; inMs: number; reason: string; code?: string }
  | { state: 'offline'; code: string; reason: string };

export type Locale = 'zh-CN' | 'en';

export interface Settings {
  /** 'auto' follows the system locale. */
  locale: 'auto' | Locale;
  theme: 'system' | 'light' | 'dark';
  /** true: Enter sends and Shift+Enter breaks the line; false: Ctrl/Cmd+Enter sends. */
  enterSends: boolean;
  notifications: boolean;
  sound: boolean;
  autostart: boolean;
  startMinimized: boolean;
  /** Where downloads go (an absolute path); '' means SessionState.defaultDownloadDir. */
  downloadDir: string;
}

export interface SessionState {
  signedIn: boolean;
  server: string | null;
  account: string | null;
  userId: number;
  displayName: string | null;
  status: Status;
  /** The system locale as the OS reports it (e.g. "zh-CN", "en-US"). */
  systemLocale: string;
  settings: Settings;
  /** The server address to prefill on the sign-in screen, if any. */
  defaultServer: string | null;
  /** The system's download folder + "Hutong", used while settings.downloadDir is ''. */
  defaultDownloadDir: string;
}

/** Answer of probe_server: what the server presented on first contact. */
export interface ServerProbe {
  /** The address, normalised (tls://host:port). */
  server: string;
  /** SHA-256 fingerprint of the server certificate; null for plain tcp:// or ws://. */
  fingerprint: string | null;
  /** The fingerprint remembered from an earlier sign-in to this server, if any. */
  known: string | null;
}

export interface ConversationView {
  id: number;
  kind: 'direct' | 'group';
  /** Display name: the group's name, or the other person's name in a direct chat. */
  name: string;
  /** For direct chats: the other person's user id (for the avatar and presence). */
  peerId: number | null;
  lastSeq: number;
  unread: number;
  active: boolean;
  members: number[];
  lastText: string | null;
  lastSenderName: string | null;
  lastAtMs: number | null;
  pinned: boolean;
  muted: boolean;
}

export type MessageState = 'sending' | 'sent' | 'failed';

export interface MessageView {
  conversationId: number;
  /** 0 while it is still in the outbox. */
  seq: number;
  senderId: number;
  senderName: string;
  clientMsgId: string;
  sentAtMs: number;
  kind: 'text' | 'file' | 'system' | 'recall' | 'edit' | 'reaction' | 'pin' | 'forward' | 'unknown';
  text: string;
  mentions: number[];
  replyToSeq: number;
  recalled: boolean;
  /** For system entries: the server's English sentence (logs; older shells). */
  system: string | null;
  /** For system entries: the event as data, described in the reader's language. */
  event: EventView | null;
  /** For a recall or edit entry: the seq of the message it recalls or edits. */
  targetSeq: number;
  /** The text was edited: `text` is its newest version. */
  edited: boolean;
  /** Emoji reactions, in the order they were first used. */
  reactions: ReactionView[];
  /** A pin entry (kind 'pin') that unpins `targetSeq` instead. */
  unpinned: boolean;
  /** A merged forward (kind 'forward'): its record. */
  forward: ForwardView | null;
  state: MessageState;
  /** Why it failed (state 'failed'). */
  error: string | null;
  /** For kind 'file': the file, image or folder it carries (`text` is its name). */
  attachment: AttachmentView | null;
}

/** A merged forward's record (合并转发); every string in it is untrusted text. */
export interface ForwardView {
  /** The title is worded from `titleNames`: the group's name when true, else the people who wrote. */
  fromGroup: boolean;
  titleNames: string[];
  items: ForwardItemView[];
}

export interface ForwardItemView {
  senderName: string;
  sentAtMs: number;
  kind: 'text' | 'file' | 'unknown';
  text: string;
  attachment: AttachmentView | null;
}

/** A mass-send (群发) and who has it. */
export interface MassSendView {
  id: string;
  recipients: MassRecipientView[];
}

export interface MassRecipientView {
  userId: number;
  /** Untrusted: text only. */
  name: string;
  conversationId: number;
  delivered: boolean;
  read: boolean;
}

/** A message pinned in a conversation (the pinned bar). */
export interface PinView {
  seq: number;
  pinnedByName: string;
  /** Empty until the pinned message is in the cache. */
  senderName: string;
  kind: 'text' | 'file' | '';
  /** The text, or the file's name. */
  text: string;
}

/** One emoji's reactions to a message. */
export interface ReactionView {
  emoji: string;
  count: number;
  /** I reacted with it. */
  mine: boolean;
  /** Who reacted, by name. */
  names: string[];
}

/** A person a system event names. */
export interface PersonRef {
  id: number;
  name: string;
}

/** A group's event: what happened, who did it, to whom. */
export interface EventView {
  kind: 'group_created' | 'members_added' | 'member_removed' | 'member_left' | 'renamed' | 'role_changed' | 'unknown';
  actor: PersonRef;
  users: PersonRef[];
  /** The group's name (created, renamed). */
  name: string;
  /** The role given (role_changed). */
  role: 'owner' | 'admin' | 'member';
}

export type AttachmentKind = 'file' | 'image' | 'folder';

export interface AttachmentView {
  kind: AttachmentKind;
  /** Empty while the upload is still running. */
  fileId: string;
  /** Untrusted: rendered as text only. */
  name: string;
  /** Bytes (a folder: all its files). */
  size: number;
  mime: string;
  /** Folders: how many files. */
  fileCount: number;
  /** Images: pixels (0 when unknown). */
  width: number;
  height: number;
  /** Images: a small JPEG as a data: URL, or null. */
  thumbnail: string | null;
}

export type TransferDirection = 'upload' | 'download';
export type TransferState = 'queued' | 'running' | 'paused' | 'done' | 'failed' | 'cancelled';

/** One upload or download of the client core's transfer engine. */
export interface TransferView {
  id: string;
  direction: TransferDirection;
  state: TransferState;
  conversationId: number;
  /** The message's seq (a download's; an upload's once its message is on the server, else 0). */
  seq: number;
  /** An upload's message id (its pending message in the chat carries it). */
  clientMsgId: string;
  kind: AttachmentKind;
  name: string;
  /** An upload's source, a download's destination (a folder's top directory). */
  localPath: string;
  totalBytes: number;
  doneBytes: number;
  /** Bytes that went over the network (less than doneBytes when chunks were already there). */
  wireBytes: number;
  error: string | null;
  /** Stable code of the failure (TOO_LARGE, QUOTA_EXCEEDED, UNSAFE_PATH, FORBIDDEN, NOT_FOUND...). */
  errorCode: string | null;
  createdAtMs: number;
}

export interface MemberRead {
  userId: number;
  name: string;
  readSeq: number;
}

/** One person in a message's read list. */
export interface Reader {
  userId: number;
  name: string;
}

/** Who of a group's current members has read one message and who has not (the sender in neither). */
export interface ReadList {
  conversationId: number;
  seq: number;
  read: Reader[];
  unread: Reader[];
}

export interface Department {
  id: number;
  parentId: number;
  name: string;
  /** People in this department and below. */
  memberCount: number;
}

export interface Person {
  userId: number;
  account: string;
  displayName: string;
  title: string;
  departmentId: number;
  departmentName: string;
  phone: string;
  email: string;
  presence: 'online' | 'away' | 'offline' | 'unknown';
}

export interface SearchResults {
  people: Person[];
  conversations: ConversationView[];
  messages: Array<MessageView & { conversationName: string }>;
}

/** Payload of the `hutong://event` event. */
export type AppEvent =
  | { event: 'status'; status: Status }
  | { event: 'messages'; messages: MessageView[] }
  | { event: 'acked'; clientMsgId: string; conversationId: number; seq: number }
  | { event: 'sendFailed'; clientMsgId: string; code: string; message: string }
  | { event: 'cursor'; conversationId: number; userId: number; readSeq: number }
  | { event: 'presence'; userId: number; status: Person['presence'] }
  | { event: 'typing'; conversationId: number; userId: number; name: string }
  | { event: 'conversationsChanged' }
  | { event: 'directoryChanged' }
  | { event: 'synced' }
  /** Transfers whose state or progress changed (the newest state of each). */
  | { event: 'transfers'; transfers: TransferView[] }
  /** A notification was shown and sound is on: play assets/message.wav. */
  | { event: 'sound' }
  /** A notification was clicked, or the tray asked for a conversation. */
  | { event: 'openConversation'; conversationId: number }
  /** A notice addressed to me arrived or changed. */
  | { event: 'notice'; notice: Omit<NoticeView, 'senderName'> }
  /** A recipient of a notice I sent received, read, signed or chose. */
  | { event: 'noticeProgress'; noticeId: number; recipient: NoticeProgressRecipient }
  /** A notice's notification was clicked. */
  | { event: 'openNotice'; noticeId: number };

export type NoticePriority = 'normal' | 'important' | 'urgent';

/** A notice addressed to me (content and my own state) with its sender's name. */
export interface NoticeView {
  id: number;
  senderId: number;
  senderName: string;
  title: string;
  /** Markdown (a safe subset; raw HTML is never rendered). */
  body: string;
  priority: NoticePriority;
  signRequired: boolean;
  deadlineMs: number;
  sentAtMs: number;
  withdrawnAtMs: number;
  deliveredAtMs: number;
  readAtMs: number;
  signedAtMs: number;
  signedDevice: string;
  remindedAtMs: number;
  buttons: string[];
  chosen: string;
  comment: string;
  summaryOf: number;
  unsignedUsers: number[];
}

export interface NoticeCounts {
  recipients: number;
  delivered: number;
  read: number;
  signed: number;
}

/** A notice's content as its sender sees it. */
export interface NoticeContent {
  id: number;
  title: string;
  body: string;
  priority: NoticePriority;
  signRequired: boolean;
  deadlineMs: number;
  sentAtMs: number;
  withdrawnAtMs: number;
  buttons: string[];
}

export interface SentNoticeView {
  notice: NoticeContent;
  counts: NoticeCounts;
}

/** One recipient's row of the sender's table. */
export interface NoticeRecipientView {
  userId: number;
  name: string;
  departmentId: number;
  departmentName: string;
  deliveredAtMs: number;
  readAtMs: number;
  signedAtMs: number;
  signedDevice: string;
  chosen: string;
  comment: string;
  remindedAtMs: number;
}

/** A recipient's state as pushed to the sender (no names). */
export type NoticeProgressRecipient = Omit<NoticeRecipientView, 'name' | 'departmentName'>;

export interface NoticeStatusView {
  notice: NoticeContent | null;
  counts: NoticeCounts;
  recipients: NoticeRecipientView[];
  nextAfterUserId: number;
}

export type NoticeFilter = 'all' | 'notRead' | 'notSigned';

export interface NoticeDraft {
  title: string;
  body: string;
  priority: NoticePriority;
  signRequired: boolean;
  deadlineMs: number;
  userIds: number[];
  departmentIds: number[];
  groupIds: number[];
  everyone: boolean;
  buttons: string[];
}

// Who is signed in, the connection status and the settings — shared state
// every component reads. App fills it from api.sessionState() and events.
import type { SessionState, Settings, Status } from './types';

export const DEFAULT_SETTINGS: Settings = {
  locale: 'auto',
  theme: 'system',
  enterSends: true,
  notifications: true,
  sound: true,
  autostart: false,
  startMinimized: false,
  downloadDir: '',
};

export const session = $state<{
  userId: number;
  displayName: string;
  account: string;
  server: string;
  status: Status;
  /** When the current `reconnecting` status arrived (for the countdown). */
  statusAt: number;
  systemLocale: string;
  settings: Settings;
  /** Where downloads go while settings.downloadDir is ''. */
  defaultDownloadDir: string;
}>({
  userId: 0,
  displayName: '',
  account: '',
  server: '',
  status: { state: 'connecting' },
  statusAt: 0,
  systemLocale: 'en',
  settings: { ...DEFAULT_SETTINGS },
  defaultDownloadDir: '',
});

export function applySession(s: SessionState): void {
  session.userId = s.userId;
  session.displayName = s.displayName ?? s.account ?? '';
  session.account = s.account ?? '';
  // The sign-in screen prefills the last server, else the one the installation suggests.
  session.server = s.server ?? s.defaultServer ?? '';
  session.systemLocale = s.systemLocale || 'en';
  session.settings = { ...DEFAULT_SETTINGS, ...s.settings };
  session.defaultDownloadDir = s.defaultDownloadDir ?? '';
  setStatus(s.status);
}

export function setStatus(status: Status): void {
  session.status = status;
  session.statusAt = Date.now();
}

/** Which main view is on screen and which conversation is open. */
export const nav = $state<{ tab: 'chats' | 'contacts' | 'notices' | 'settings'; conversationId: number | null }>({
  tab: 'chats',
  conversationId: null,
});

export function openConversation(id: number): void {
  nav.tab = 'chats';
  nav.conversationId = id;
}

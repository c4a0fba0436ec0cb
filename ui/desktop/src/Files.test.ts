import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import Chat from './Chat.svelte';
import Settings from './Settings.svelte';
import TransfersPanel from './TransfersPanel.svelte';
import ConversationList from './ConversationList.svelte';
import { setLocale } from './lib/locale.svelte';
import { convos } from './lib/convos.svelte';
import { nav, session } from './lib/session.svelte';
import { applyTransfers, followTransfers } from './lib/transfers.svelte';
import { bus, click, conv, emit, fakeApi, ME, msg, resetFake, settle, transfer, type } from './lib/testing';
import type { AttachmentView, MessageView, TransferView } from './lib/types';

vi.mock('./lib/api', async () => (await import('./lib/fake-api')).apiModule);

let stopTransfers: (() => void) | null = null;
beforeEach(() => {
  resetFake();
  setLocale('en');
});
afterEach(() => {
  stopTransfers?.();
  stopTransfers = null;
  vi.useRealTimers();
  document.body.innerHTML = '';
});

const MB = 1024 * 1024;

function attachment(over: Partial<AttachmentView> = {}): AttachmentView {
  return { kind: 'file', fileId: 'f1', name: '季度报告.pdf', size: 10 * MB, mime: 'application/pdf', fileCount: 0, width: 0, height: 0, thumbnail: null, ...over };
}

function fileMsg(over: Partial<MessageView> = {}, a: Partial<AttachmentView> = {}): MessageView {
  const att = attachment(a);
  return msg({ kind: 'file', text: att.name, attachment: att, ...over });
}

async function render(history: MessageView[], opts: { outbox?: MessageView[]; transfers?: TransferView[] } = {}) {
  convos.list = [conv({ id: 10, name: '李四' })];
  fakeApi.history.mockResolvedValue(history);
  fakeApi.outbox.mockResolvedValue(opts.outbox ?? []);
  fakeApi.transfers.mockResolvedValue(opts.transfers ?? []);
  stopTransfers = followTransfers();
  const target = document.body.appendChild(document.createElement('div'));
  const app = mount(Chat, { target, props: { conversationId: 10 } });
  await settle();
  return { target, app };
}

const card = (t: HTMLElement, seq: number) => t.querySelector(`.message[data-seq="${seq}"] .file-card`) as HTMLElement;

describe('file messages', () => {
  it('downloads, shows progress with percent, speed and time left, pauses, resumes, opens', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = new Date(2025, 0, 1, 10, 0, 0).getTime();
    vi.setSystemTime(t0);
    const { target, app } = await render([fileMsg({ seq: 5, sentAtMs: t0 })]);
    const c = () => card(target, 5);
    expect(c().querySelector('.file-name')?.textContent).toBe('季度报告.pdf');
    expect(c().querySelector('.file-size')?.textContent).toBe('10 MB');
    expect(c().querySelector('.file-icon')?.getAttribute('data-icon')).toBe('file');
    expect(c().querySelector('.progress')).toBeNull();
    click(c().querySelector('.download'));
    await settle();
    expect(fakeApi.fetchAttachment).toHaveBeenCalledWith(10, 5);

    const down = transfer({ id: 'd', direction: 'download', seq: 5, clientMsgId: '', totalBytes: 10 * MB, localPath: '/dl/季度报告.pdf' });
    await emit({ event: 'transfers', transfers: [down] });
    expect(c().getAttribute('data-transfer')).toBe('queued');
    expect(c().querySelector('.transfer-note')?.textContent).toBe('Waiting…');
    expect(c().querySelector('.download')).toBeNull();

    // 1 MB a second for two seconds.
    for (let i = 0; i <= 2; i++) {
      vi.setSystemTime(t0 + i * 1000);
      await emit({ event: 'transfers', transfers: [{ ...down, state: 'running', doneBytes: i * MB }] });
    }
    expect(c().getAttribute('data-transfer')).toBe('running');
    expect(c().querySelector('.percent')?.textContent).toBe('20%');
    expect(c().querySelector('.progress')?.getAttribute('aria-valuenow')).toBe('20');
    expect((c().querySelector('.bar') as HTMLElement).style.width).toBe('20%');
    expect(c().querySelector('.speed')?.textContent).toBe('1 MB/s');
    expect(c().querySelector('.eta')?.textContent).toBe('8 s left');

    click(c().querySelector('.pause'));
    await settle();
    expect(fakeApi.pauseTransfer).toHaveBeenCalledWith('d');
    await emit({ event: 'transfers', transfers: [{ ...down, state: 'paused', doneBytes: 2 * MB }] });
    expect(c().querySelector('.transfer-note')?.textContent).toBe('Paused');
    expect(c().querySelector('.speed')).toBeNull();
    click(c().querySelector('.resume'));
    await settle();
    expect(fakeApi.resumeTransfer).toHaveBeenCalledWith('d');

    await emit({ event: 'transfers', transfers: [{ ...down, state: 'done', doneBytes: 10 * MB }] });
    expect(c().querySelector('.progress')).toBeNull();
    expect(c().querySelector('.file-done')?.textContent).toBe('Downloaded');
    click(c().querySelector('.open'));
    await settle();
    expect(fakeApi.openPath).toHaveBeenCalledWith('/dl/季度报告.pdf');
    click(c().querySelector('.reveal'));
    await settle();
    expect(fakeApi.revealPath).toHaveBeenCalledWith('/dl/季度报告.pdf');
    unmount(app);
  });

  it('cancels a running transfer and explains a failed one, with Retry', async () => {
    setLocale('zh-CN');
    const running = transfer({ id: 'd', direction: 'download', state: 'running', seq: 6, clientMsgId: '', doneBytes: 100 });
    const { target, app } = await render([fileMsg({ seq: 6 })], { transfers: [running] });
    const c = () => card(target, 6);
    click(c().querySelector('.cancel'));
    await settle();
    expect(fakeApi.cancelTransfer).toHaveBeenCalledWith('d');
    await emit({
      event: 'transfers',
      transfers: [{ ...running, state: 'failed', errorCode: 'QUOTA_EXCEEDED', error: 'quota exceeded' }],
    });
    expect(c().getAttribute('data-transfer')).toBe('failed');
    expect(c().querySelector('.file-error')?.textContent).toBe('失败：存储空间配额已用完，请联系管理员');
    click(c().querySelector('.retry-transfer'));
    await settle();
    expect(fakeApi.resumeTransfer).toHaveBeenCalledWith('d');
    // A failed action explains itself too.
    fakeApi.resumeTransfer.mockRejectedValueOnce({ code: 'OFFLINE', message: 'offline' });
    click(c().querySelector('.retry-transfer'));
    await settle();
    expect(c().querySelector('.action-error')?.textContent).toBe('未连接到服务器');
    unmount(app);
  });

  it('leaves the question of opening a program to the shell: the page cannot confirm it', async () => {
    setLocale('zh-CN');
    const done = transfer({ id: 'x', direction: 'download', state: 'done', seq: 8, clientMsgId: '', localPath: '/dl/安装程序.exe' });
    const { target, app } = await render([fileMsg({ seq: 8 }, { name: '安装程序.exe' })], { transfers: [done] });
    const c = () => card(target, 8);
    // The shell asked in its native dialog and the person declined.
    fakeApi.openPath.mockResolvedValueOnce(false);
    click(c().querySelector('.open'));
    await settle();
    // One call with the path only: there is no "confirmed" for the page to pass.
    expect(fakeApi.openPath.mock.calls).toEqual([['/dl/安装程序.exe']]);
    expect(c().querySelector('.runs-warning')).toBeNull();
    expect(c().querySelector('.action-error')).toBeNull();
    unmount(app);
  });

  it('shows an image with its thumbnail; the click fetches it, then opens it', async () => {
    const thumbnail = 'data:image/jpeg;base64,/9j/4AAQ';
    const { target, app } = await render([
      fileMsg({ seq: 7 }, { kind: 'image', name: '截图.png', size: 300 * 1024, width: 1600, height: 900, thumbnail }),
    ]);
    const c = () => card(target, 7);
    const img = c().querySelector('.thumb img') as HTMLImageElement;
    expect(img.getAttribute('src')).toBe(thumbnail);
    expect(img.getAttribute('alt')).toBe('截图.png');
    expect(img.getAttribute('width')).toBe('240');
    expect(img.getAttribute('height')).toBe('135');
    expect(c().querySelector('.file-icon')?.getAttribute('data-icon')).toBe('image');
    expect(c().querySelector('.file-size')?.textContent).toBe('300 KB');
    click(c().querySelector('.thumb'));
    await settle();
    expect(fakeApi.fetchAttachment).toHaveBeenCalledWith(10, 7);
    await emit({
      event: 'transfers',
      transfers: [transfer({ id: 'i', direction: 'download', seq: 7, clientMsgId: '', state: 'done', localPath: '/dl/截图.png' })],
    });
    click(c().querySelector('.thumb'));
    await settle();
    expect(fakeApi.openPath).toHaveBeenCalledWith('/dl/截图.png');
    unmount(app);
  });

  it('shows a folder with its file count and total size', async () => {
    const { target, app } = await render([fileMsg({ seq: 8 }, { kind: 'folder', name: '项目资料', size: 3 * MB, fileCount: 3 })]);
    const c = card(target, 8);
    expect(c.querySelector('.file-icon')?.getAttribute('data-icon')).toBe('folder');
    expect(c.querySelector('.file-name')?.textContent).toBe('项目资料');
    expect(c.querySelector('.file-count')?.textContent).toBe('3 files');
    expect(c.querySelector('.file-size')?.textContent).toBe('3 MB');
    expect(c.querySelector('.download')).not.toBeNull();
    unmount(app);
  });

  it('renders untrusted names as text', async () => {
    const name = '<img src=x onerror="alert(1)">.txt';
    const { target, app } = await render([fileMsg({ seq: 9 }, { name })]);
    expect(card(target, 9).querySelector('.file-name')?.textContent).toBe(name);
    expect(card(target, 9).querySelector('img')).toBeNull();
    unmount(app);
  });

  it('shows the upload progress on my pending message instead of the spinner', async () => {
    const up = transfer({ id: 'u', clientMsgId: 'c-up', state: 'running', totalBytes: 4 * MB, doneBytes: MB, name: 'big.iso' });
    const pending = fileMsg({ seq: 0, clientMsgId: 'c-up', senderId: ME, state: 'sending' }, { name: 'big.iso', size: 4 * MB, fileId: '' });
    const { target, app } = await render([], { outbox: [pending], transfers: [up] });
    const m = () => target.querySelector('.message[data-client-id="c-up"]') as HTMLElement;
    expect(m().classList.contains('mine')).toBe(true);
    expect(m().querySelector('.percent')?.textContent).toBe('25%');
    expect(m().querySelector('.spinner')).toBeNull();
    expect(m().querySelector('.download')).toBeNull();
    // Uploaded: the chat re-reads the outbox (the message now waits there for the server).
    fakeApi.outbox.mockClear();
    await emit({ event: 'transfers', transfers: [{ ...up, state: 'done', doneBytes: 4 * MB }] });
    expect(fakeApi.outbox).toHaveBeenCalledWith(10);
    expect(m().querySelector('.spinner')).not.toBeNull();
    await emit({ event: 'acked', clientMsgId: 'c-up', conversationId: 10, seq: 12 });
    expect(m().getAttribute('data-seq')).toBe('12');
    // Done upload: open the source, show it in its folder.
    expect(m().querySelector('.open')).not.toBeNull();
    unmount(app);
  });

  it('drops a cancelled upload’s pending message', async () => {
    const up = transfer({ id: 'u', clientMsgId: 'c-up', state: 'running' });
    const pending = fileMsg({ seq: 0, clientMsgId: 'c-up', senderId: ME, state: 'sending' });
    const { target, app } = await render([], { outbox: [pending], transfers: [up] });
    expect(target.querySelector('.message[data-client-id="c-up"]')).not.toBeNull();
    await emit({ event: 'transfers', transfers: [{ ...up, state: 'cancelled' }] });
    expect(target.querySelector('.message[data-client-id="c-up"]')).toBeNull();
    unmount(app);
  });
});

describe('sending files', () => {
  it('shows the drop overlay while files are dragged over and sends the dropped paths', async () => {
    setLocale('zh-CN');
    const { target, app } = await render([]);
    expect(target.querySelector('#drop-overlay')).toBeNull();
    const paths = ['/home/me/项目资料', '/home/me/报告.pdf'];
    bus.drop?.({ type: 'enter', paths });
    await settle();
    expect(target.querySelector('#drop-overlay')?.textContent).toContain('松开即可发送');
    bus.drop?.({ type: 'over' });
    bus.drop?.({ type: 'leave' });
    await settle();
    expect(target.querySelector('#drop-overlay')).toBeNull();
    bus.drop?.({ type: 'enter', paths });
    await settle();
    fakeApi.outbox.mockResolvedValue([
      fileMsg({ seq: 0, clientMsgId: 'c-up-0', senderId: ME, state: 'sending' }, { kind: 'folder', name: '项目资料' }),
    ]);
    bus.drop?.({ type: 'drop', paths });
    await settle();
    expect(fakeApi.sendPaths).toHaveBeenCalledWith(10, paths);
    expect(target.querySelector('#drop-overlay')).toBeNull();
    expect(target.querySelector('.message[data-client-id="c-up-0"] .file-name')?.textContent).toBe('项目资料');
    unmount(app);
  });

  it('explains a refused file in file terms', async () => {
    fakeApi.sendPaths.mockRejectedValue({ code: 'TOO_LARGE', message: 'too large' });
    const { target, app } = await render([]);
    bus.drop?.({ type: 'drop', paths: ['/huge.bin'] });
    await settle();
    expect(target.querySelector('.chat-error')?.textContent).toBe('The file is larger than the server allows');
    unmount(app);
  });

  it('picks files or a folder with the paperclip', async () => {
    const { target, app } = await render([]);
    fakeApi.pickPaths.mockResolvedValueOnce(['/home/me/a.txt', '/home/me/b.txt']);
    click(target.querySelector('#attach-button'));
    await settle();
    click(target.querySelector('#attach-files'));
    await settle();
    expect(fakeApi.pickPaths).toHaveBeenCalledWith(false, false);
    expect(fakeApi.sendPaths).toHaveBeenCalledWith(10, ['/home/me/a.txt', '/home/me/b.txt']);
    fakeApi.pickPaths.mockResolvedValueOnce(null);
    click(target.querySelector('#attach-button'));
    await settle();
    click(target.querySelector('#attach-folder'));
    await settle();
    expect(fakeApi.pickPaths).toHaveBeenLastCalledWith(true, false);
    expect(fakeApi.sendPaths).toHaveBeenCalledTimes(1);
    unmount(app);
  });

  it('pastes an image as a file and text as text', async () => {
    const { target, app } = await render([]);
    const box = target.querySelector('#composer') as HTMLTextAreaElement;
    const paste = (data: Record<string, string>) => {
      const e = new Event('paste', { bubbles: true, cancelable: true }) as Event & { clipboardData: unknown };
      e.clipboardData = {
        types: Object.keys(data),
        items: Object.keys(data).map((type) => ({ kind: type.startsWith('image/') ? 'file' : 'string', type })),
        getData: (type: string) => data[type] ?? '',
      };
      box.dispatchEvent(e);
      return e;
    };
    expect(paste({ 'text/plain': 'hello' }).defaultPrevented).toBe(false);
    await settle();
    expect(fakeApi.pasteImage).not.toHaveBeenCalled();
    expect(paste({ 'image/png': '' }).defaultPrevented).toBe(true);
    await settle();
    expect(fakeApi.pasteImage).toHaveBeenCalledWith(10);
    expect(fakeApi.outbox).toHaveBeenCalledTimes(2);
    // No image after all: nothing happens, nothing is shown.
    fakeApi.pasteImage.mockRejectedValueOnce({ code: 'NO_IMAGE', message: 'the clipboard holds no image' });
    paste({});
    await settle();
    expect(fakeApi.pasteImage).toHaveBeenCalledTimes(2);
    expect(target.querySelector('.chat-error')).toBeNull();
    unmount(app);
  });
});

describe('download folder setting', () => {
  it('shows the default and changes it only through the native picker', async () => {
    const target = document.body.appendChild(document.createElement('div'));
    const app = mount(Settings, { target, props: { onSignOut: () => {} } });
    await settle();
    const input = target.querySelector('#setting-download-dir') as HTMLInputElement;
    expect(input.value).toBe('/home/me/Downloads/Hutong');
    // The page cannot type a folder: the field is read-only and typing saves nothing.
    expect(input.readOnly).toBe(true);
    type(input, '/home/me/.config/autostart');
    await settle();
    expect(fakeApi.saveSettings).not.toHaveBeenCalled();
    // The shell's picker chooses and saves it.
    fakeApi.pickDownloadDir.mockResolvedValueOnce({ ...session.settings, downloadDir: '/data/下载' });
    click(target.querySelector('#choose-download-dir'));
    await settle();
    expect(fakeApi.pickDownloadDir).toHaveBeenCalledTimes(1);
    expect(fakeApi.pickPaths).not.toHaveBeenCalled();
    expect(session.settings.downloadDir).toBe('/data/下载');
    // Cancelled: nothing changes.
    click(target.querySelector('#choose-download-dir'));
    await settle();
    expect(session.settings.downloadDir).toBe('/data/下载');
    click(target.querySelector('#default-download-dir'));
    await settle();
    expect(fakeApi.saveSettings).toHaveBeenLastCalledWith(expect.objectContaining({ downloadDir: '' }));
    unmount(app);
  });
});

describe('transfers panel', () => {
  it('lists transfers with their state, counts the active ones and acts on them', async () => {
    setLocale('zh-CN');
    applyTransfers([
      transfer({ id: 'done', direction: 'download', state: 'done', name: '旧文件.zip', totalBytes: 2 * MB, localPath: '/dl/旧文件.zip', conversationId: 11 }),
      transfer({ id: 'run', state: 'running', name: '视频.mp4', totalBytes: 100, doneBytes: 40 }),
      transfer({ id: 'bad', state: 'failed', name: '大文件.iso', errorCode: 'TOO_LARGE', error: 'too large' }),
      transfer({ id: 'gone', state: 'cancelled', name: '不要了.txt' }),
    ]);
    const target = document.body.appendChild(document.createElement('div'));
    const app = mount(TransfersPanel, { target });
    await settle();
    expect(target.querySelector('#nav-transfers .rail-badge')?.textContent).toBe('1');
    expect(target.querySelector('#transfers-panel')).toBeNull();
    click(target.querySelector('#nav-transfers'));
    await settle();
    const rows = [...target.querySelectorAll('.transfer')];
    expect(rows.map((r) => r.getAttribute('data-id'))).toEqual(['bad', 'run', 'done']);
    const row = (id: string) => target.querySelector(`.transfer[data-id="${id}"]`) as HTMLElement;
    expect(row('run').querySelector('.note')?.textContent).toBe('40%');
    expect(row('bad').querySelector('.note')?.textContent).toBe('文件超过服务器允许的大小');
    expect(row('done').querySelector('.note')?.textContent).toBe('2 MB · 已下载');
    click(row('run').querySelector('.mini[aria-label="暂停"]'));
    click(row('bad').querySelector('.mini[aria-label="重试"]'));
    click(row('done').querySelector('.mini[aria-label="在文件夹中显示"]'));
    await settle();
    expect(fakeApi.pauseTransfer).toHaveBeenCalledWith('run');
    expect(fakeApi.resumeTransfer).toHaveBeenCalledWith('bad');
    expect(fakeApi.revealPath).toHaveBeenCalledWith('/dl/旧文件.zip');
    // Opening a file that would run asks first, here too.
    fakeApi.openPath.mockRejectedValueOnce({ code: 'RUNS_WHEN_OPENED', message: 'confirm first' });
    click(row('done').querySelector('.mini[aria-label="打开"]'));
    await settle();
    expect(target.querySelector('#transfers-panel .runs-warning')?.textContent).toContain('“旧文件.zip”');
    expect(target.querySelector('#transfers-panel .error')).toBeNull();
    click(target.querySelector('#transfers-panel .open-anyway'));
    await settle();
    expect(fakeApi.openPath.mock.calls).toEqual([['/dl/旧文件.zip'], ['/dl/旧文件.zip']]);
    expect(target.querySelector('#transfers-panel .runs-warning')).toBeNull();
    click(row('done').querySelector('.name'));
    await settle();
    expect(nav.conversationId).toBe(11);
    expect(target.querySelector('#transfers-panel')).toBeNull();
    unmount(app);
  });
});

describe('bidirectional text', () => {
  const spoof = 'invoice\u202Efdp.exe';
  /** The element holding `text` is an isolating one (a <bdi>). */
  function isolated(root: Element, text: string): void {
    const holders = [...root.querySelectorAll('*')].filter((e) => e.children.length === 0 && e.textContent?.includes(text));
    expect(holders.length).toBeGreaterThan(0);
    for (const h of holders) expect(h.closest('bdi'), h.outerHTML).not.toBeNull();
  }

  it('isolates a spoofed file name in the chat, the transfers panel and the conversation preview', async () => {
    const { target, app } = await render([fileMsg({ seq: 5 }, { name: spoof })]);
    isolated(target, spoof);
    unmount(app);

    applyTransfers([transfer({ id: 'x', state: 'running', name: spoof, totalBytes: 100, doneBytes: 40, conversationId: 10 })]);
    const panelTarget = document.body.appendChild(document.createElement('div'));
    const panel = mount(TransfersPanel, { target: panelTarget });
    await settle();
    click(panelTarget.querySelector('#nav-transfers'));
    await settle();
    isolated(panelTarget, spoof);
    unmount(panel);

    convos.list = [conv({ id: 12, name: 'evil\u202Egnp.scr', lastText: spoof })];
    const listTarget = document.body.appendChild(document.createElement('div'));
    const list = mount(ConversationList, { target: listTarget });
    await settle();
    isolated(listTarget, 'evil\u202Egnp.scr');
    const preview = listTarget.querySelector('.preview');
    expect(preview?.querySelector('bdi')).not.toBeNull();
    unmount(list);
  });
});

import { afterEach, describe, expect, it, vi } from 'vitest';
import { mount, unmount } from 'svelte';
import Audit from './Audit.svelte';
import { setLang } from './lib/locale.svelte';
import { click, fakeServer, json, submit } from './lib/testing';

afterEach(() => {
  vi.restoreAllMocks();
  document.body.innerHTML = '';
});

const FILE_ID = 'ab'.repeat(32);

function archived(kind: 'file' | 'folder', text: string) {
  return {
    conversation_id: 7,
    conversation_kind: 'direct',
    conversation_name: '',
    seq: kind === 'file' ? 3 : 4,
    sender_id: 2,
    sender_account: 'nina',
    sender_name: '倪娜',
    sent_at_ms: Date.UTC(2026, 10, 30, 9, 30),
    kind: 'file',
    text,
    recalled: false,
    file: { kind, file_id: FILE_ID, size: kind === 'file' ? 2_621_440 : 10_485_760, file_count: kind === 'file' ? 0 : 12 },
  };
}

describe('Audit', () => {
  it('shows what archived file messages hold and downloads a file under its name', async () => {
    setLang('zh');
    const calls = fakeServer({
      'GET /audit/messages': () => json(200, { messages: [archived('file', '季度报告 (终版) <b>季度报告</b>.pdf 附录.pdf'), archived('folder', '设计图纸')] }),
      [`GET /audit/messages/files/${FILE_ID}`]: () =>
        new Response(new Blob(['%PDF-1.7']), { status: 200, headers: { 'Content-Type': 'application/octet-stream' } }),
    });
    const created = vi.fn((_: Blob) => 'blob:archived');
    Object.defineProperty(URL, 'createObjectURL', { value: created, configurable: true });
    Object.defineProperty(URL, 'revokeObjectURL', { value: vi.fn(), configurable: true });
    const target = document.body.appendChild(document.createElement('div'));
    const app = mount(Audit, { target });
    submit(target.querySelector('form'));
    await vi.waitFor(() => expect(target.querySelectorAll('[data-testid=audit-results] tbody tr').length).toBe(2));
    const rows = [...target.querySelectorAll('[data-testid=audit-results] tbody tr')].map((tr) => tr.textContent ?? '');
    expect(rows[0]).toContain('季度报告 (终版) <b>季度报告</b>.pdf 附录.pdf');
    expect(rows[0]).toContain('文件');
    expect(rows[0]).toContain('2.5 MB');
    expect(rows[1]).toContain('文件夹');
    expect(rows[1]).toContain('12 个文件');
    // Folders are listed, not downloaded; a file is.
    const buttons = target.querySelectorAll('[data-testid=audit-file-download]');
    expect(buttons.length).toBe(1);
    const saved: string[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(function (this: HTMLAnchorElement) {
      saved.push(this.download);
    });
    click(buttons[0] ?? null);
    await vi.waitFor(() => expect(saved).toEqual(['季度报告 (终版) <b>季度报告</b>.pdf 附录.pdf']));
    const download = calls.find((c) => c.path.startsWith('/audit/messages/files/'));
    expect(download?.path).toBe(`/audit/messages/files/${FILE_ID}?name=${encodeURIComponent('季度报告 (终版) <b>季度报告</b>.pdf 附录.pdf')}`);
    expect(created).toHaveBeenCalledTimes(1);
    unmount(app);
  });
});

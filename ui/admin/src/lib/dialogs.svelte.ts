// In-page confirmation and text dialogs (instead of the browser's confirm()
// and prompt(), which cannot be styled or translated). One dialog at a time;
// `Dialogs.svelte` renders it, call sites await the answer.

export interface DialogRequest {
  kind: 'confirm' | 'prompt';
  title: string;
  message: string;
  /** The label of the text field (prompt only). */
  label: string;
  value: string;
  confirmLabel: string;
  danger: boolean;
  /** The entered text (prompt), '' (confirmed) or null (cancelled). */
  resolve: (answer: string | null) => void;
}

export const dialogs = $state<{ current: DialogRequest | null }>({ current: null });

function open(request: Omit<DialogRequest, 'resolve'>): Promise<string | null> {
  // A new question cancels one left open.
  dialogs.current?.resolve(null);
  return new Promise((resolve) => {
    dialogs.current = {
      ...request,
      resolve: (answer) => {
        dialogs.current = null;
        resolve(answer);
      },
    };
  });
}

export async function confirmAction(opts: { title: string; message: string; confirmLabel: string; danger?: boolean }): Promise<boolean> {
  const answer = await open({ kind: 'confirm', label: '', value: '', danger: opts.danger ?? false, ...opts });
  return answer !== null;
}

export function askText(opts: { title: string; label: string; value?: string; confirmLabel: string }): Promise<string | null> {
  return open({ kind: 'prompt', message: '', danger: false, value: opts.value ?? '', ...opts });
}

// Checks of the person form: the rules the server applies (account names,
// required name, password length, email shape, field length), so mistakes
// show next to the field before a round trip. The server checks again.
import type { Key } from './i18n';
import type { PersonInput } from './api';

export type Field = 'account' | 'display_name' | 'password' | 'email' | 'employee_no' | 'title' | 'phone';
export type FieldErrors = Partial<Record<Field, Key>>;

/** The server's limit on a text field. */
export const MAX_FIELD_CHARS = 200;
export const MIN_PASSWORD_CHARS = 8;

const ACCOUNT = /^[A-Za-z0-9._-]{1,64}$/;

export function validatePerson(input: PersonInput, creating: boolean): FieldErrors {
  const errors: FieldErrors = {};
  if (creating && !ACCOUNT.test(input.account ?? '')) errors.account = 'form.err.account';
  const name = (input.display_name ?? '').trim();
  if (!name) errors.display_name = 'form.err.name';
  else if ([...name].length > MAX_FIELD_CHARS) errors.display_name = 'form.err.tooLong';
  if (creating && input.password !== undefined && input.password !== '' && [...input.password].length < MIN_PASSWORD_CHARS) {
    errors.password = 'form.err.password';
  }
  const email = (input.email ?? '').trim();
  if (email && (!email.includes('@') || email.includes(' ') || [...email].length > MAX_FIELD_CHARS)) errors.email = 'form.err.email';
  for (const field of ['employee_no', 'title', 'phone'] as const) {
    if ([...(input[field] ?? '').trim()].length > MAX_FIELD_CHARS) errors[field] = 'form.err.tooLong';
  }
  return errors;
}

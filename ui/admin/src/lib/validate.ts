// Checks of the person form, the same rules the server applies, so mistakes
// show next to the field before a round trip.
import type { Key } from './i18n';
import type { PersonInput } from './api';

export type FieldErrors = Partial<Record<'account' | 'display_name' | 'password' | 'email', Key>>;

export function validatePerson(input: PersonInput, creating: boolean): FieldErrors {
  const errors: FieldErrors = {};
  if (creating && !/^[A-Za-z0-9._-]{1,64}$/.test(input.account ?? '')) errors.account = 'form.err.account';
  if (!(input.display_name ?? '').trim()) errors.display_name = 'form.err.name';
  if (creating && input.password !== undefined && input.password !== '' && [...input.password].length < 8) {
    errors.password = 'form.err.password';
  }
  const email = (input.email ?? '').trim();
  if (email && (!email.includes('@') || email.includes(' '))) errors.email = 'form.err.email';
  return errors;
}

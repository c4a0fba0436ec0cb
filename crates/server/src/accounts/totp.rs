//! The second factor of administrators and auditors: TOTP (RFC 6238;
//! HMAC-SHA-1, 6 digits, 30-second steps, as every authenticator app reads
//! an `otpauth://` URI) and single-use recovery codes, stored as SHA-256
//! hashes. A code is accepted for the step before, the current and the next
//! one (clock drift), and each step at most once (a code seen over a
//! shoulder cannot be replayed).

use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

use crate::error::ServiceError;

pub const ISSUER: &str = "Hutong";
const STEP_SECS: u64 = 30;
/// Recovery codes handed out at enrolment.
pub const RECOVERY_CODES: usize = 10;

fn totp(secret: &[u8], account: &str) -> Result<TOTP, ServiceError> {
    TOTP::new(Algorithm::SHA1, 6, 0, STEP_SECS, secret.to_vec(), Some(ISSUER.into()), account.into())
        .map_err(|e| ServiceError::Internal(format!("totp: {e}")))
}

/// A new secret: 160 bits, the size RFC 4226 recommends.
pub fn new_secret() -> Vec<u8> {
    super::random_bytes::<20>().to_vec()
}

/// What an authenticator app needs: the secret in base32 (to type in) and
/// the `otpauth://` URI (to scan).
#[derive(Debug, serde::Serialize)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
}

pub fn enrolment(secret: &[u8], account: &str) -> Result<Enrolment, ServiceError> {
    let t = totp(secret, account)?;
    Ok(Enrolment { secret: t.get_secret_base32(), otpauth_uri: t.get_url() })
}

/// The time step `code` is valid for (the current one or a neighbour) if it
/// is newer than `last_step`.
pub fn matching_step(secret: &[u8], account: &str, code: &str, now_secs: u64, last_step: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, account).ok()?;
    let now = (now_secs / STEP_SECS) as i64;
    (now - 1..=now + 1)
        .filter(|step| *step > last_step && *step >= 0)
        .find(|step| t.check(&code, *step as u64 * STEP_SECS))
}

/// Ten random recovery codes, `xxxxx-xxxxx` of a readable alphabet (50 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let b = super::random_bytes::<10>();
            let s: String = b.iter().map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char).collect();
            format!("{}-{}", &s[..5], &s[5..])
        })
        .collect()
}

/// How a recovery code is stored: SHA-256 of its letters and digits in lower
/// case (a high-entropy random code needs no slow hash).
pub fn recovery_hash(code: &str) -> Vec<u8> {
    let normal: String =
        code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    Sha256::digest(normal.as_bytes()).to_vec()
}

pub fn now_secs() -> u64 {
    (crate::storage::now_ms() / 1000).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits) → 287082.
        let secret = b"12345678901234567890";
        assert_eq!(matching_step(secret, "a", "287082", 59, 0), Some(1));
        assert_eq!(matching_step(secret, "a", "287082", 59, 1), None, "a step is used once");
        assert_eq!(matching_step(secret, "a", "287083", 59, 0), None);
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalised() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(recovery_hash(&codes[0]), recovery_hash(&codes[0].to_uppercase().replace('-', " ")));
        assert_ne!(recovery_hash(&codes[0]), recovery_hash(&codes[1]));
    }
}

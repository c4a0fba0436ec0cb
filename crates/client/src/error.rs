//! The client core's error type. `code()` gives the stable string a UI or a
//! script branches on; `Display` is the sentence shown to a person.

use hutong_protocol::ErrorCode;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("{message}")]
    Remote { code: ErrorCode, message: String, retry_after_ms: u64 },
    #[error("not connected to the server")]
    Offline,
    #[error("the connection was lost before the answer arrived")]
    Disconnected,
    #[error("network: {0}")]
    Transport(String),
    #[error("invalid server address {0:?}: use tls://host:port or wss://host:port/ws")]
    InvalidAddress(String),
    /// A `tcp://` or `ws://` address without the explicit insecure choice.
    #[error(
        "{0} is not encrypted: passwords and messages would cross the network in clear text. Use tls:// or \
         wss://, or choose an insecure connection explicitly (--insecure-plaintext)"
    )]
    InsecureAddress(String),
    #[error(
        "the server's certificate changed (expected {expected}, got {actual}); this may be an attack. \
         If the administrator replaced the certificate, log in again with --fingerprint"
    )]
    FingerprintChanged { expected: String, actual: String },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("local cache: {0}")]
    Cache(String),
    #[error("the client was shut down")]
    Closed,
    /// Something on this machine: a path, a file, the disk. `code` is stable
    /// (`UNSAFE_PATH`, `NOT_FOUND`, `NOT_A_FILE`, `IO`, `FILE_CHANGED`, `CORRUPT`...).
    #[error("{message}")]
    Local { code: &'static str, message: String },
}

impl ClientError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Remote { code, .. } => code.as_str_name(),
            ClientError::Offline => "OFFLINE",
            ClientError::Disconnected => "DISCONNECTED",
            ClientError::Transport(_) => "NETWORK",
            ClientError::InvalidAddress(_) => "INVALID_ADDRESS",
            ClientError::InsecureAddress(_) => "INSECURE_ADDRESS",
            ClientError::FingerprintChanged { .. } => "FINGERPRINT_CHANGED",
            ClientError::Protocol(_) => "PROTOCOL",
            ClientError::Cache(_) => "CACHE",
            ClientError::Closed => "CLOSED",
            ClientError::Local { code, .. } => code,
        }
    }

    /// Errors that retrying will not fix, whenever they come: stop
    /// reconnecting and tell the person.
    pub fn is_fatal(&self) -> bool {
        self.give_up(false)
    }

    /// Whether the connection task stops retrying after a connection ended
    /// with this error (and tells the person why) instead of reconnecting.
    /// `before_login`: the server refused the hello or the login itself, so
    /// trying the same credentials again cannot help (a lockout included).
    pub fn give_up(&self, before_login: bool) -> bool {
        match self {
            ClientError::Remote { code, .. } => recovery(*code, before_login) == Recovery::GiveUp,
            ClientError::FingerprintChanged { .. }
            | ClientError::InvalidAddress(_)
            | ClientError::InsecureAddress(_)
            | ClientError::Closed => true,
            _ => false,
        }
    }

    /// How long the server asked us to wait before trying again, if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ClientError::Remote { retry_after_ms, .. } if *retry_after_ms > 0 => {
                Some(std::time::Duration::from_millis(*retry_after_ms))
            }
            _ => None,
        }
    }

    /// The sentence for a person, with the time left when the server gave
    /// one (a lockout, a connection cap): "… try again in 4 min 59 s".
    pub fn explain(&self) -> String {
        match (self.remote_code(), self.retry_after()) {
            (Some(ErrorCode::RateLimited), Some(left)) => format!(
                "signing in is locked after too many failed attempts; try again in {}",
                human_duration(left)
            ),
            (Some(ErrorCode::TooManyConnections), Some(left)) => format!(
                "the server has too many connections from this person or address; try again in {}",
                human_duration(left)
            ),
            (Some(ErrorCode::SessionExpired), _) => {
                "the session expired; sign in with the password again".to_owned()
            }
            _ => self.to_string(),
        }
    }

    pub fn remote_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What the connection task does when a connection ends with a server error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Reconnect after the back-off, never sooner than the server's `retry_after_ms`.
    Retry,
    /// Stop and report the error: only the person can fix it (a password,
    /// an update, an administrator, or waiting out a lockout they are told about).
    GiveUp,
}

/// The policy for every error code the server sends, when it ends a
/// connection (`before_login`: as the answer to the hello or the login).
/// Errors answering one request reach its caller, which shows them; this
/// decides what happens to the connection. The match has no wildcard so a
/// new code cannot be added without deciding here.
pub fn recovery(code: ErrorCode, before_login: bool) -> Recovery {
    use ErrorCode as C;
    match code {
        // Only the person (or an administrator, or an update) can fix these.
        C::BadCredentials
        | C::AccountDisabled
        | C::SessionRevoked
        | C::SessionExpired
        | C::PasswordChangeRequired
        | C::UnsupportedVersion => Recovery::GiveUp,
        // At login: a lockout (retrying the same secret only prolongs it; the
        // person is told the time left). After login: a request limit, retried
        // no sooner than the server asks.
        C::RateLimited => {
            if before_login {
                Recovery::GiveUp
            } else {
                Recovery::Retry
            }
        }
        // A login the server refused as a request cannot succeed when repeated;
        // after login these answer one request and the caller shows them.
        C::BadRequest
        | C::NotFound
        | C::Forbidden
        | C::TooLarge
        | C::RecallWindowPassed
        | C::Conflict
        | C::QuotaExceeded
        | C::UnsafePath => {
            if before_login {
                Recovery::GiveUp
            } else {
                Recovery::Retry
            }
        }
        // Passing conditions of the server or of this connection.
        C::Unspecified
        | C::NotAuthenticated
        | C::SlowConsumer
        | C::IdleTimeout
        | C::ShuttingDown
        | C::Internal
        | C::TooManyConnections => Recovery::Retry,
    }
}

/// "4 min 59 s", "12 s", "1 h 5 min": a wait as a person reads it (rounded up to a second).
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_millis().div_ceil(1000) as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

impl From<hutong_protocol::v1::Error> for ClientError {
    fn from(e: hutong_protocol::v1::Error) -> Self {
        ClientError::Remote {
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
            message: e.message,
            retry_after_ms: e.retry_after_ms,
        }
    }
}

impl ClientError {
    /// A local error with a stable code and a sentence.
    pub fn local(code: &'static str, message: impl Into<String>) -> Self {
        ClientError::Local { code, message: message.into() }
    }

    /// A local input/output error about `path`.
    pub fn io(path: &std::path::Path, e: &std::io::Error) -> Self {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => "NOT_FOUND",
            std::io::ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            _ => "IO",
        };
        ClientError::Local { code, message: format!("{}: {e}", path.display()) }
    }
}

impl From<rusqlite::Error> for ClientError {
    fn from(e: rusqlite::Error) -> Self {
        ClientError::Cache(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the server can send, with what a person sees when a
    /// connection ends with it. Exhaustive (no wildcard): a new code fails
    /// to build until someone decides how it is shown or handled.
    fn shown_as(code: ErrorCode) -> &'static str {
        use ErrorCode as C;
        match code {
            C::BadCredentials
            | C::AccountDisabled
            | C::SessionRevoked
            | C::SessionExpired
            | C::PasswordChangeRequired
            | C::UnsupportedVersion => "offline with the reason",
            C::RateLimited | C::TooManyConnections => "the reason and the time left",
            C::BadRequest
            | C::NotFound
            | C::Forbidden
            | C::TooLarge
            | C::RecallWindowPassed
            | C::Conflict
            | C::QuotaExceeded
            | C::UnsafePath => "the caller's error",
            C::Unspecified
            | C::NotAuthenticated
            | C::SlowConsumer
            | C::IdleTimeout
            | C::ShuttingDown
            | C::Internal => "reconnecting with the reason",
        }
    }

    fn all_codes() -> Vec<ErrorCode> {
        (0..1000).filter_map(|n| ErrorCode::try_from(n).ok()).collect()
    }

    fn remote(code: ErrorCode, retry_after_ms: u64) -> ClientError {
        ClientError::Remote { code, message: "the server's sentence".into(), retry_after_ms }
    }

    #[test]
    fn every_code_is_shown_or_handled_and_none_reads_as_unreachable() {
        let codes = all_codes();
        assert!(codes.len() >= 22, "{codes:?}");
        for code in codes {
            let _ = shown_as(code);
            for before_login in [true, false] {
                let e = remote(code, 0);
                // The code the UI branches on is the server's, never a network fault's.
                assert_eq!(e.code(), code.as_str_name());
                assert_ne!(e.code(), "NETWORK");
                assert!(!e.explain().is_empty());
                let _ = e.give_up(before_login);
            }
        }
    }

    #[test]
    fn refused_logins_stop_retrying_and_passing_conditions_do_not() {
        for code in [
            ErrorCode::RateLimited,
            ErrorCode::BadCredentials,
            ErrorCode::AccountDisabled,
            ErrorCode::SessionRevoked,
            ErrorCode::SessionExpired,
            ErrorCode::PasswordChangeRequired,
            ErrorCode::UnsupportedVersion,
        ] {
            assert!(remote(code, 0).give_up(true), "{code:?} at login");
        }
        // A send limit after login is waited out, not a reason to give up.
        assert!(!remote(ErrorCode::RateLimited, 1000).give_up(false));
        for code in [ErrorCode::TooManyConnections, ErrorCode::ShuttingDown, ErrorCode::Internal] {
            assert!(!remote(code, 0).give_up(true), "{code:?}");
        }
        assert!(!ClientError::Transport("reset".into()).give_up(true));
    }

    #[test]
    fn lockouts_and_caps_say_the_time_left() {
        let e = remote(ErrorCode::RateLimited, 299_001);
        assert_eq!(e.explain(), "signing in is locked after too many failed attempts; try again in 5 min");
        let e = remote(ErrorCode::TooManyConnections, 12_000);
        assert!(e.explain().ends_with("try again in 12 s"), "{}", e.explain());
        assert_eq!(human_duration(std::time::Duration::from_secs(3900)), "1 h 5 min");
        assert_eq!(human_duration(std::time::Duration::from_secs(61)), "1 min 1 s");
    }
}

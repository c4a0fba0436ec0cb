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

    /// Errors that retrying will not fix: stop reconnecting and tell the person.
    pub fn is_fatal(&self) -> bool {
        match self {
            ClientError::Remote { code, .. } => matches!(
                code,
                ErrorCode::BadCredentials
                    | ErrorCode::AccountDisabled
                    | ErrorCode::SessionRevoked
                    | ErrorCode::UnsupportedVersion
                    | ErrorCode::PasswordChangeRequired
            ),
            ClientError::FingerprintChanged { .. }
            | ClientError::InvalidAddress(_)
            | ClientError::InsecureAddress(_)
            | ClientError::Closed => true,
            _ => false,
        }
    }

    pub fn remote_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote { code, .. } => Some(*code),
            _ => None,
        }
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

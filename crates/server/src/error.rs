//! The one error type of the server's services, converted exactly once into an
//! error frame at the gateway. Database details go to the log, never to clients.

use hutong_protocol::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("you are not a member of this conversation")]
    NotMember,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    UnsafePath(String),
    #[error("the recall window of this message has passed")]
    RecallWindowPassed,
    #[error("{0}")]
    Conflict(String),
    #[error("wrong account or password")]
    BadCredentials,
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("too many failed logins; try again in {} s", .0.div_ceil(1000))]
    RateLimited(u64),
    /// A limit on simultaneous use (not a failed login); worth retrying later.
    #[error("{0}")]
    Busy(String),
    /// A per-person rate (messages sent, say) was exceeded; retry after the delay.
    #[error("too many {what}; wait {} s", .retry_after_ms.div_ceil(1000).max(1))]
    Throttled { what: &'static str, retry_after_ms: u64 },
    /// A cap on simultaneous connections was reached.
    #[error("{0}")]
    TooManyConnections(String),
    #[error("the password must be changed before logging in")]
    PasswordChangeRequired,
    #[error("the session was revoked; log in again")]
    SessionRevoked,
    #[error("the session expired; log in again")]
    SessionExpired,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::BadRequest(_) => ErrorCode::BadRequest,
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::NotMember | ServiceError::Forbidden(_) => ErrorCode::Forbidden,
            ServiceError::TooLarge(_) => ErrorCode::TooLarge,
            ServiceError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            ServiceError::UnsafePath(_) => ErrorCode::UnsafePath,
            ServiceError::RecallWindowPassed => ErrorCode::RecallWindowPassed,
            ServiceError::Conflict(_) => ErrorCode::Conflict,
            ServiceError::BadCredentials => ErrorCode::BadCredentials,
            ServiceError::AccountDisabled => ErrorCode::AccountDisabled,
            ServiceError::RateLimited(_) | ServiceError::Busy(_) | ServiceError::Throttled { .. } => {
                ErrorCode::RateLimited
            }
            ServiceError::TooManyConnections(_) => ErrorCode::TooManyConnections,
            ServiceError::SessionRevoked => ErrorCode::SessionRevoked,
            ServiceError::SessionExpired => ErrorCode::SessionExpired,
            ServiceError::PasswordChangeRequired => ErrorCode::PasswordChangeRequired,
            ServiceError::ShuttingDown => ErrorCode::ShuttingDown,
            ServiceError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The sentence a client may see. Internal details stay in the log.
    pub fn client_message(&self) -> String {
        match self {
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "the server could not complete the request".to_owned()
            }
            other => other.to_string(),
        }
    }

    pub fn to_frame(&self) -> hutong_protocol::v1::Error {
        hutong_protocol::v1::Error {
            code: self.code() as i32,
            message: self.client_message(),
            retry_after_ms: match self {
                ServiceError::RateLimited(ms) | ServiceError::Throttled { retry_after_ms: ms, .. } => *ms,
                _ => 0,
            },
        }
    }
}

//! The one error type of the service and how each error looks on the wire.
//!
//! Every error body is exactly `{"code": <int>, "message": "<text>"}`. Internal
//! causes never reach the client: they are logged once, here, with their chain.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
#[allow(unused_imports)]
use serde_json::json;

use crate::ledger::limits::LimitKind;
use crate::ledger::rules::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A login with an unknown email or a wrong password: one answer for both.
    #[error("unknown email or wrong password")]
    BadCredentials,
    /// A player's session ended by idling or by reaching its absolute end.
    #[error("session expired, log in again")]
    SessionExpired,
    /// Too many failed logins for one email: refused until the lockout ends.
    #[error("too many failed logins for this email, try again later")]
    LoginLocked,
    #[error("no such session")]
    SessionNotFound,
    /// The operator turned off the feature (a flag of its document).
    #[error("{0} is disabled for this operator")]
    FeatureDisabled(&'static str),
    /// Younger than the operator's `min_age`.
    #[error("the player is younger than the operator's minimum age of {0}")]
    UnderAge(u8),
    #[error("missing or invalid signature")]
    BadSignature,
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("Player is invalid")]
    PlayerNotFound,
    #[error("no such reconciliation run")]
    ReconciliationRunNotFound,
    /// No operator by that code, domain or `X-Operator` (or not one the caller may see).
    #[error("unknown operator")]
    OperatorNotFound,
    #[error("no such provider key")]
    KeyNotFound,
    #[error("no such staff member")]
    StaffNotFound,
    #[error("no such bonus campaign")]
    CampaignNotFound,
    /// A console request whose CSRF token is missing or is not its session's.
    #[error("missing or wrong CSRF token: reload the console")]
    CsrfRefused,
    /// The caller's role may not do this.
    #[error("your role does not allow this")]
    Forbidden,
    /// `If-Match` named another version than the stored one.
    #[error("If-Match: {0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Conflict(String),
    /// A player withdrawal while a bonus is active, without `forfeit_bonus`.
    #[error("a bonus is active: a withdrawal forfeits it, send \"forfeit_bonus\": true")]
    BonusBlocksWithdrawal,
    /// The campaign cannot grant this bonus (the message says why).
    #[error("{0}")]
    BonusNotEligible(String),
    #[error("no such bonus")]
    BonusNotFound,
    /// A time-out or self-exclusion in force: nobody may shorten or lift it.
    #[error("{0}")]
    ExclusionInForce(String),
    #[error("request body is larger than 64 KiB")]
    PayloadTooLarge,
    /// The money rules refused an operation; nothing of it was kept.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("too many requests")]
    RateLimited,
    /// Too many requests in flight on this instance; shed before any work.
    #[error("server is overloaded, safe to retry with the same ids")]
    Overloaded,
    /// Two transactions met in a deadlock or a serialization failure more
    /// times than the service retries; nothing was kept.
    #[error("conflicting concurrent requests, safe to retry with the same ids")]
    Contention(#[source] sqlx::Error),
    /// The request ran past the configured timeout and was abandoned; its
    /// transaction either rolled back or committed, and a retry with the same
    /// ids answers the same either way.
    #[error("request timed out, safe to retry with the same ids")]
    TimedOut,
    #[error("database unavailable, safe to retry with the same ids")]
    Unavailable(#[source] sqlx::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized | AppError::BadCredentials | AppError::SessionExpired => {
                StatusCode::UNAUTHORIZED
            }
            AppError::LoginLocked => StatusCode::TOO_MANY_REQUESTS,
            AppError::SessionNotFound => StatusCode::NOT_FOUND,
            AppError::FeatureDisabled(_) => StatusCode::FORBIDDEN,
            AppError::UnderAge(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadSignature => StatusCode::FORBIDDEN,
            AppError::RouteNotFound | AppError::PlayerNotFound => StatusCode::NOT_FOUND,
            AppError::ReconciliationRunNotFound
            | AppError::OperatorNotFound
            | AppError::KeyNotFound
            | AppError::StaffNotFound
            | AppError::BonusNotFound
            | AppError::CampaignNotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden | AppError::CsrfRefused => StatusCode::FORBIDDEN,
            AppError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) | AppError::ExclusionInForce(_) | AppError::BonusBlocksWithdrawal => {
                StatusCode::CONFLICT
            }
            AppError::BonusNotEligible(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Refused(refusal) => match refusal {
                Refusal::InsufficientFunds
                | Refusal::RollbackOfRollback
                | Refusal::PlayerBlocked
                | Refusal::GameForbidden
                | Refusal::KycTierForbids
                | Refusal::OverLimit { .. }
                | Refusal::OverMaxBet
                | Refusal::CurrencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
                Refusal::BonusActive => StatusCode::CONFLICT,
                Refusal::ActionReused(_) | Refusal::ForeignAction(_) => StatusCode::CONFLICT,
                Refusal::BalanceOverflow => StatusCode::BAD_REQUEST,
            },
            AppError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_)
            | AppError::Contention(_)
            | AppError::Overloaded
            | AppError::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` of the error body: a wallet error code where the contract
    /// defines one, the HTTP status otherwise.
    pub fn code(&self) -> u16 {
        match self {
            AppError::Refused(Refusal::InsufficientFunds) => 100,
            AppError::PlayerNotFound => 101,
            AppError::SessionExpired => 113,
            AppError::OperatorNotFound => 120,
            AppError::FeatureDisabled(_) => 121,
            AppError::UnderAge(_) => 130,
            AppError::Refused(Refusal::RollbackOfRollback) => 102,
            AppError::Refused(Refusal::GameForbidden) => 107,
            AppError::Refused(Refusal::PlayerBlocked) => 110,
            AppError::Refused(Refusal::KycTierForbids) => 111,
            AppError::Refused(Refusal::OverLimit { kind: LimitKind::Deposit, .. }) => 112,
            AppError::Refused(Refusal::OverLimit { .. }) => 105,
            AppError::Refused(Refusal::OverMaxBet) => 106,
            AppError::Refused(Refusal::BonusActive) => 122,
            AppError::BonusBlocksWithdrawal => 123,
            AppError::BonusNotEligible(_) => 124,
            AppError::ExclusionInForce(_) => 131,
            AppError::Refused(Refusal::CurrencyMismatch) => 154,
            other => other.status().as_u16(),
        }
    }

    pub fn bad_request(field: &str, problem: impl std::fmt::Display) -> AppError {
        AppError::BadRequest(format!("{field}: {problem}"))
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> AppError {
        AppError::Internal(cause.into())
    }
}

/// SQLSTATE of a deadlock the server broke by aborting this transaction.
pub const DEADLOCK_DETECTED: &str = "40P01";
/// SQLSTATE of a transaction that could not be serialised with another.
pub const SERIALIZATION_FAILURE: &str = "40001";
/// SQLSTATE of text the database encoding cannot hold (a NUL byte).
const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";

/// What a caught panic said, for the log.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Whether `error` is a deadlock or serialization failure: the transaction
/// was rolled back and running it again may well succeed.
pub fn is_retryable(error: &AppError) -> bool {
    matches!(error, AppError::Contention(_))
}

/// Database errors become domain errors by constraint name; connection
/// trouble becomes 503 so that callers retry with the same ids.
impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => return AppError::Unavailable(err),
            sqlx::Error::Database(db) => {
                // The schema's own funds checks: a balance, or a ledger row's
                // balance after it, below zero.
                if matches!(db.constraint(), Some("players_balance_check" | "ledger_balance_after_check")) {
                    return AppError::Refused(Refusal::InsufficientFunds);
                }
                if db.constraint() == Some("accounts_email_key") {
                    return AppError::Conflict("an account with this email exists".into());
                }
                // A deadlock or serialization failure that outlived the
                // retries: nothing was kept, and a retry is safe.
                if db.code().is_some_and(|c| c == DEADLOCK_DETECTED || c == SERIALIZATION_FAILURE) {
                    return AppError::Contention(err);
                }
                // Text PostgreSQL cannot store (a NUL): the edge refuses it
                // first; this keeps any path that misses it a 400, not a 500.
                if db.code().is_some_and(|c| c == CHARACTER_NOT_IN_REPERTOIRE) {
                    return AppError::BadRequest(
                        "a text field holds a character that cannot be stored".into(),
                    );
                }
                // Another player's request claimed the same action_id between our
                // lookup and our insert (same-player requests are serialised by the
                // row lock, so this is always a foreign id).
                if db.is_unique_violation() && db.table().is_some_and(|t| t.starts_with("actions")) {
                    return AppError::Conflict("action_id belongs to another player".into());
                }
                // Connection-level failures reported by the server: admin shutdown,
                // crash recovery, too many connections, cannot connect now.
                if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08") || c == "53300") {
                    return AppError::Unavailable(err);
                }
            }
            _ => {}
        }
        AppError::Internal(err.into())
    }
}

/// Every error: a wallet error code where the contract defines one (100
/// insufficient funds, 101 unknown player, …), else the HTTP status.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)] // exactly these keys
#[schema(example = json!({"code": 101, "message": "Player is invalid"}))]
pub struct ErrorBody<'a> {
    code: u16,
    message: &'a str,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match &self {
            AppError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error")
            }
            AppError::Unavailable(cause) => tracing::warn!(error = %cause, "database unavailable"),
            AppError::Contention(cause) => {
                tracing::warn!(error = %cause, "transaction kept conflicting with others; answered 503")
            }
            _ => {}
        }
        let body = Json(ErrorBody { code: self.code(), message: &message });
        let mut response = (self.status(), body).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// The error code of a response, left in its extensions for metrics and logs.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub u16);

pub type AppResult<T> = Result<T, AppError>;

//! The one error type of the service layer and the HTTP edge.
//!
//! Services return [`ApiError`]; the HTTP layer turns it into
//! `{"error":{"code","message"}}` with the code's status, the WebSocket into an
//! `error` frame. Internal failures (database, I/O) are logged once and reach
//! the client only as `internal` with a generic sentence.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chorus_proto::error::{ErrorBody, ErrorCode, ErrorDetail};

/// A failed request: a documented code and a plain-words message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// The code.
    pub code: ErrorCode,
    /// The message shown to the client.
    pub message: String,
}

/// Result alias used across the server.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }
    /// `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    /// `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    /// `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "missing, invalid or expired access token")
    }
    /// `rate_limited`.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        crate::metrics::metrics().rate_limited.inc();
        Self::new(ErrorCode::RateLimited, message)
    }
    /// `internal`, logging the cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ErrorCode::Internal, "internal server error; nothing was changed")
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(format_args!("database: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        (status, axum::Json(body)).into_response()
    }
}

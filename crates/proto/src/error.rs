//! Error codes: the one list every Chorus interface answers with.
//!
//! REST answers `{"error": {"code": "...", "message": "..."}}` with the HTTP
//! status of [`ErrorCode::http_status`]; the WebSocket answers an `error` frame
//! with the same code. docs/protocol.md and the OpenAPI document list them.

use serde::{Deserialize, Serialize};

/// A stable, documented error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ErrorCode {
    /// The request is malformed: bad JSON, a missing or invalid field.
    BadRequest,
    /// No valid access token (or admin token) was presented.
    Unauthorized,
    /// The caller is known but not allowed to do this.
    Forbidden,
    /// The thing addressed does not exist (or the caller may not know it does).
    NotFound,
    /// The request conflicts with the current state (e.g. already exists).
    Conflict,
    /// The body or message is larger than the configured limit.
    TooLarge,
    /// Too many requests; retry after a while.
    RateLimited,
    /// The login code is wrong.
    CodeInvalid,
    /// The login code has expired or was never requested.
    CodeExpired,
    /// Too many wrong attempts: the login code is locked; request a new one.
    CodeLocked,
    /// The group pin is wrong, expired or used up.
    PinInvalid,
    /// A group limit (members, pins) would be exceeded.
    LimitExceeded,
    /// The endpoint exists but not with this HTTP method.
    MethodNotAllowed,
    /// The server failed; nothing was changed. Details are in the server log.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::CodeInvalid,
        ErrorCode::CodeExpired,
        ErrorCode::CodeLocked,
        ErrorCode::PinInvalid,
        ErrorCode::LimitExceeded,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Internal,
    ];

    /// The HTTP status a REST answer with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::PinInvalid => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::TooLarge => 413,
            ErrorCode::LimitExceeded | ErrorCode::CodeInvalid | ErrorCode::CodeExpired => 422,
            ErrorCode::CodeLocked | ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::CodeInvalid => "code_invalid",
            ErrorCode::CodeExpired => "code_expired",
            ErrorCode::CodeLocked => "code_locked",
            ErrorCode::PinInvalid => "pin_invalid",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The JSON body of every REST error: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A code and a human-readable sentence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// What went wrong, in plain words. Never contains internal details.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_name_matches_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}

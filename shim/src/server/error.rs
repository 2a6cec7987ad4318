//! The API's errors and their wire form: every error is a status and a JSON body
//! `{ "code", "message", "field" }` with a stable `code`. Each error type of
//! the library says its code; the code's status is decided here and nowhere
//! else ([`status`]), in the one `IntoResponse`.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::tasks::Refusal;
use crate::api::{Code, ErrorBody};
use crate::error::CommitError;

/// A refused or failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),

    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },

    #[error("{message}")]
    UnknownField { field: String, message: String },

    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },

    #[error("{0}")]
    Forbidden(String),

    #[error("{0}")]
    NotFound(String),

    #[error("method not allowed")]
    MethodNotAllowed,

    #[error("{0}")]
    SessionNotFound(String),

    /// The session exists but cannot be committed (not overlayfs, say).
    #[error("{0}")]
    SessionUnsupported(String),

    #[error("{0}")]
    Conflict(String),

    #[error("{}: already exists", path.display())]
    OutputExists { path: PathBuf },

    #[error("the queue is full: {running} commits running and {queued} waiting")]
    QueueFull { running: usize, queued: usize },

    #[error("the server is shutting down")]
    ShuttingDown,

    #[error("{0}")]
    Internal(String),

    /// The commit pipeline refused the request.
    #[error(transparent)]
    Commit(#[from] CommitError),

    /// The task manager refused the request.
    #[error(transparent)]
    Manager(#[from] Refusal),
}

/// The status of each code: the one place it is decided.
pub fn status(code: Code) -> StatusCode {
    match code {
        Code::BadRequest | Code::InvalidField | Code::UnknownField | Code::BodyTooLarge => {
            StatusCode::BAD_REQUEST
        }
        Code::Forbidden => StatusCode::FORBIDDEN,
        Code::NotFound | Code::SessionNotFound => StatusCode::NOT_FOUND,
        Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Code::SessionUnsupported => StatusCode::UNPROCESSABLE_ENTITY,
        Code::Conflict | Code::OutputExists => StatusCode::CONFLICT,
        Code::QueueFull | Code::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        Code::PushFailed => StatusCode::BAD_GATEWAY,
        Code::Internal | Code::Interrupted | Code::CommitFailed | Code::Cancelled => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> Code {
        use ApiError::*;
        match self {
            BadRequest(_) => Code::BadRequest,
            InvalidField { .. } => Code::InvalidField,
            UnknownField { .. } => Code::UnknownField,
            BodyTooLarge { .. } => Code::BodyTooLarge,
            Forbidden(_) => Code::Forbidden,
            NotFound(_) => Code::NotFound,
            MethodNotAllowed => Code::MethodNotAllowed,
            SessionNotFound(_) => Code::SessionNotFound,
            SessionUnsupported(_) => Code::SessionUnsupported,
            Conflict(_) => Code::Conflict,
            OutputExists { .. } => Code::OutputExists,
            QueueFull { .. } => Code::QueueFull,
            ShuttingDown => Code::ShuttingDown,
            Internal(_) => Code::Internal,
            Commit(e) => e.code(),
            Manager(e) => e.code(),
        }
    }

    /// The status and code of this error.
    pub fn status_and_code(&self) -> (StatusCode, Code) {
        let code = self.code();
        (status(code), code)
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidField { field, .. } | ApiError::UnknownField { field, .. } => {
                Some(field)
            }
            ApiError::OutputExists { .. } => Some("output"),
            ApiError::Commit(e) => e.field(),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: match self {
                // The field is in its own member; the message says what is wrong.
                ApiError::InvalidField { message, .. }
                | ApiError::Commit(CommitError::Invalid { message, .. }) => message.clone(),
                ApiError::Commit(e) => crate::error_chain(e),
                other => other.to_string(),
            },
            field: self.field().map(str::to_string),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() && !matches!(code, Code::QueueFull | Code::ShuttingDown) {
            tracing::error!(error = %self, "request failed");
        }
        (status, axum::Json(self.body())).into_response()
    }
}

impl From<serde_path_to_error::Error<serde_json::Error>> for ApiError {
    /// serde's word on a body, with the field it was at: unknown fields, missing
    /// fields, wrong types and broken JSON.
    fn from(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let quoted = || message.split('`').nth(1).map(str::to_string);
        if message.starts_with("unknown field") {
            let field = if path == "." {
                quoted().unwrap_or_default()
            } else {
                path
            };
            return ApiError::UnknownField { field, message };
        }
        if message.starts_with("missing field") || message.starts_with("duplicate field") {
            if let Some(name) = quoted() {
                let field = if path == "." {
                    name
                } else {
                    format!("{path}.{name}")
                };
                return ApiError::invalid(field, message);
            }
        }
        let category = inner.classify();
        let top = path == "." || path == "?" || path.starts_with('[');
        if category == serde_json::error::Category::Eof
            || (top && category != serde_json::error::Category::Data)
        {
            return ApiError::BadRequest(format!("malformed JSON: {message}"));
        }
        if top {
            return ApiError::BadRequest(format!("the body must be a JSON object: {message}"));
        }
        if category == serde_json::error::Category::Syntax {
            return ApiError::invalid(path, format!("malformed value: {message}"));
        }
        ApiError::invalid(path, message)
    }
}

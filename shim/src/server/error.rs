//! The API's errors and their wire form: every error is a status and a JSON body
//! `{ "code", "message", "field" }` with a stable `code`, mapped here and nowhere
//! else.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The stable error codes of the API and of failed tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    BadRequest,
    InvalidField,
    UnknownField,
    BodyTooLarge,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    SessionNotFound,
    SessionUnsupported,
    Conflict,
    OutputExists,
    QueueFull,
    ShuttingDown,
    Internal,
    /// A task the server was running when it stopped without finishing it.
    Interrupted,
    Cancelled,
    CommitFailed,
}

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
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: Code,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The status and code of this error: the one place they are decided.
    pub fn status_and_code(&self) -> (StatusCode, Code) {
        use ApiError::*;
        match self {
            BadRequest(_) => (StatusCode::BAD_REQUEST, Code::BadRequest),
            InvalidField { .. } => (StatusCode::BAD_REQUEST, Code::InvalidField),
            UnknownField { .. } => (StatusCode::BAD_REQUEST, Code::UnknownField),
            BodyTooLarge { .. } => (StatusCode::BAD_REQUEST, Code::BodyTooLarge),
            Forbidden(_) => (StatusCode::FORBIDDEN, Code::Forbidden),
            NotFound(_) => (StatusCode::NOT_FOUND, Code::NotFound),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, Code::MethodNotAllowed),
            SessionNotFound(_) => (StatusCode::NOT_FOUND, Code::SessionNotFound),
            SessionUnsupported(_) => (StatusCode::UNPROCESSABLE_ENTITY, Code::SessionUnsupported),
            Conflict(_) => (StatusCode::CONFLICT, Code::Conflict),
            OutputExists { .. } => (StatusCode::CONFLICT, Code::OutputExists),
            QueueFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, Code::QueueFull),
            ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, Code::ShuttingDown),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Code::Internal),
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidField { field, .. } | ApiError::UnknownField { field, .. } => {
                Some(field)
            }
            ApiError::OutputExists { .. } => Some("output"),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.status_and_code().1,
            message: match self {
                // The field is in its own member; the message says what is wrong.
                ApiError::InvalidField { message, .. } => message.clone(),
                other => other.to_string(),
            },
            field: self.field().map(str::to_string),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        if status.is_server_error()
            && !matches!(self, ApiError::QueueFull { .. } | ApiError::ShuttingDown)
        {
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

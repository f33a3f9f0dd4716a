//! One error type for every answer: `{"error": "..."}` with the status that says what went
//! wrong, from the node's, the store's and the request's own failures.

use crate::raft::node::NodeError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_api::wire::ErrorBody;
use herd_registry_core::CommandError;
use serde::Serialize;

pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(ErrorBody::new(self.1))).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = match e {
            NodeError::NoLeader => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Forward { .. } => StatusCode::BAD_GATEWAY,
            NodeError::Raft(_) | NodeError::NoQuorum(_) => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Remote { status, .. } => StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_GATEWAY),
        };
        ApiError(status, e.to_string())
    }
}

pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

pub fn command_error(e: &CommandError) -> ApiError {
    let status = match e {
        CommandError::LeaseNotFound { .. } => StatusCode::NOT_FOUND,
        CommandError::CasFailed { .. } => StatusCode::PRECONDITION_FAILED,
        CommandError::AlreadyCompacted { .. } => StatusCode::GONE,
        CommandError::LeaseExists { .. } => StatusCode::CONFLICT,
        CommandError::ValueTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError(status, e.to_string())
}

pub type ApiResult = Result<Response, ApiError>;

pub fn ok<T: Serialize>(v: T) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

pub fn internal(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
}

//! Why a request got no answer from a server, and the one place that turns that into the
//! status and body the client gets (or the route's configured fallback).

use crate::traffic::SlotFailure;
use herd_config::Fallback;
use http::StatusCode;
use std::time::Duration;

#[derive(Debug)]
pub enum Failure {
    NoServer,
    Connect,
    Reset,
    Timeout(Duration),
    /// The backend's circuit breaker is open.
    CircuitOpen,
    /// max_conns_per_server: no slot, and the queue was full or timed out.
    Slot(SlotFailure),
    /// The client's request body broke off or was malformed: not the server's fault.
    ClientBody,
}

/// The answer for `failure` in backend `backend`: the client's own fault is always a 400;
/// anything else is the fallback when one is configured, else 502, 503 or 504 with a
/// message naming the backend.
pub fn answer(
    failure: &Failure,
    backend: &str,
    fallback: Option<&Fallback>,
) -> (StatusCode, String) {
    match (failure, fallback) {
        (Failure::ClientBody, _) => (
            StatusCode::BAD_REQUEST,
            "the request body ended early or was malformed\n".to_string(),
        ),
        (_, Some(f)) => (
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            f.body.clone(),
        ),
        (Failure::CircuitOpen, None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("circuit open: backend \"{backend}\" is failing; retry later\n"),
        ),
        (Failure::Slot(SlotFailure::QueueTimeout), None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("backend \"{backend}\" is busy: no server slot came free in time\n"),
        ),
        (Failure::Slot(_), None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "backend \"{backend}\" is busy: every server is at its limit and the queue is full\n"
            ),
        ),
        (Failure::NoServer, None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no server available in backend \"{backend}\"\n"),
        ),
        (Failure::Connect | Failure::Reset, None) => (
            StatusCode::BAD_GATEWAY,
            format!("bad gateway: no server of backend \"{backend}\" answered\n"),
        ),
        (Failure::Timeout(t), None) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("gateway timeout: backend \"{backend}\" did not answer within {t:?}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status() {
        let table = [
            (Failure::NoServer, 503),
            (Failure::Connect, 502),
            (Failure::Reset, 502),
            (Failure::Timeout(Duration::from_secs(3)), 504),
            (Failure::CircuitOpen, 503),
            (Failure::Slot(SlotFailure::QueueFull), 503),
            (Failure::Slot(SlotFailure::QueueTimeout), 503),
            (Failure::ClientBody, 400),
        ];
        for (f, status) in &table {
            let (s, body) = answer(f, "app", None);
            assert_eq!(s.as_u16(), *status, "{f:?}");
            if !matches!(f, Failure::ClientBody) {
                assert!(body.contains("\"app\""), "{f:?}: {body}");
            }
        }
        let (_, body) = answer(&Failure::Timeout(Duration::from_millis(1500)), "app", None);
        assert!(body.contains("1.5s"), "{body}");

        // A fallback answers for every server-side failure, never for the client's own.
        let fb = Fallback {
            status: 200,
            body: "sorry\n".into(),
            content_type: "text/plain".into(),
        };
        for (f, _) in &table {
            let (s, body) = answer(f, "app", Some(&fb));
            if matches!(f, Failure::ClientBody) {
                assert_eq!(s, StatusCode::BAD_REQUEST);
            } else {
                assert_eq!((s.as_u16(), body.as_str()), (200, "sorry\n"), "{f:?}");
            }
        }
    }
}

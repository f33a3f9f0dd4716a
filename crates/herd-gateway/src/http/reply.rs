//! Answers the gateway writes itself: no server answered (via `failure`), a rule refused
//! the request, a redirect to https.

use crate::http::failure::Failure;
use crate::http::respond::{Done, LogRecord, ProxyBody};
use crate::state::snapshot::RouteState;
use crate::traffic::Refusal;
use herd_config::Fallback;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

pub(crate) fn fail(
    route: &RouteState,
    failure: Failure,
    log: Option<LogRecord>,
) -> Response<ProxyBody> {
    let name = &route.group.config.name;
    let fallback: Option<&Fallback> = route.route.fallback.as_ref().or(route
        .group
        .config
        .fallback
        .as_ref());
    if let Failure::NoServer = failure {
        route.group.no_server.inc();
    }
    let (status, body) = crate::http::failure::answer(&failure, name, fallback);
    route.responses.record(status.as_u16());
    let content_type = fallback.map_or("text/plain; charset=utf-8", |f| f.content_type.as_str());
    let mut resp = local(status, body, Done::local(log, Some(route.label.clone())));
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// 308 to the same URL over https, for `redirect_https` routes reached over plain HTTP.
pub(crate) fn redirect_https(
    parts: &http::request::Parts,
    route: &RouteState,
    log: Option<LogRecord>,
) -> Response<ProxyBody> {
    let done = Done::local(log, Some(route.label.clone()));
    let Some(location) = crate::codec::headers::https_location(parts) else {
        route.responses.record(400);
        return local(
            StatusCode::BAD_REQUEST,
            "a redirect to https needs a Host header\n",
            done,
        );
    };
    route.responses.record(308);
    let mut resp = local(StatusCode::PERMANENT_REDIRECT, "", done);
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}

pub(crate) fn local(
    status: StatusCode,
    body: impl Into<bytes::Bytes>,
    mut done: Done,
) -> Response<ProxyBody> {
    done.status = status.as_u16();
    let mut r = Response::new(ProxyBody::full(body, Some(done)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A request refused before any server saw it (ACL, time window, rate limit, body size).
pub(crate) fn refuse(
    route: Option<&RouteState>,
    r: Refusal,
    log: Option<LogRecord>,
) -> Response<ProxyBody> {
    let status = r.status();
    if let Some(rs) = route {
        rs.responses.record(status.as_u16());
    }
    let mut resp = local(
        status,
        r.body(),
        Done::local(log, route.map(|rs| rs.label.clone())),
    );
    if let Refusal::RateLimited { retry_after_s } = r {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    }
    resp
}

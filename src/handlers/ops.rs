//! Operations endpoints: the health check, the metrics and the API
//! description. None of them touches an account.

use super::Context;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::metrics::Gauges;
use serde_json::json;

/// `GET /healthz`: 200 `{"status": "ok"}` while a query on the database
/// succeeds, 503 `database_unavailable` otherwise. Meant for load balancers
/// and the container health check; it reveals nothing else.
pub fn healthz(ctx: &Context, _request: &Request) -> Result<Response, ApiError> {
    ctx.db.ping()?;
    Ok(Response::json(200, &json!({"status": "ok"})))
}

/// `GET /metrics` on the API's address: the metrics, unless
/// `METRICS_BIND_ADDR` moved them to an address of their own (then 404, so
/// they are not public).
pub fn metrics_here(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    if ctx.config.metrics_bind_addr.is_some() {
        return Err(ApiError::NotFound);
    }
    metrics(ctx, request)
}

/// `GET /openapi.json`: the OpenAPI 3.1 description of this API.
pub fn openapi(_ctx: &Context, _request: &Request) -> Result<Response, ApiError> {
    let mut response = Response::empty(200);
    response.body = OPENAPI.as_bytes().to_vec();
    response.set_header("Content-Type", "application/json");
    Ok(response)
}

/// The API description, `docs/openapi.json`, compiled in.
const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// `GET /metrics`: the Prometheus text exposition of the server's metrics.
pub fn metrics(ctx: &Context, _request: &Request) -> Result<Response, ApiError> {
    let text = ctx.metrics.render(&Gauges {
        hash_queue_depth: ctx.hash_gate.queue_depth(),
        hash_rejections: ctx.hash_gate.rejections(),
        db_connections_in_use: ctx.db.connections_in_use(),
        mail_waiting: ctx.db.mail_backlog().ok().map(|b| {
            (
                b.waiting,
                b.oldest.map_or(0, |t| ctx.now().saturating_sub(t)),
            )
        }),
    });
    let mut response = Response::empty(200);
    response.body = text.into_bytes();
    response.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    Ok(response)
}

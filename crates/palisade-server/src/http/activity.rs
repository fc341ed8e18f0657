//! `GET /activity`: the caller's own calls from the audit log, with each verdict and why.
//!
//! Authenticates like the MCP endpoint; the principal whose actions are
//! shown is the one the credential establishes, never a parameter, so a
//! user sees only what the agent did on their behalf. `since` (`2h`,
//! `30m`) and `limit` (at most 1,000, default 200) narrow it. What is
//! shown passes the redaction seam, like everything that leaves palisade.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response as HttpResponse};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::Server;
use super::auth::authenticate;
use super::guards::check_origin;

const MAX_LIMIT: usize = 1_000;

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

pub(super) async fn list(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResponse {
    if check_origin(&server, &headers).is_err() {
        return error(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let principal = match authenticate(&server, &headers).await {
        Ok(principal) => principal,
        Err(refused) => return refused,
    };
    let since = match query.get("since") {
        None => None,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) => SystemTime::now().checked_sub(d),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("`since`: expected a duration such as \"2h\", got `{text}` ({e})"),
                );
            }
        },
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 200,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`limit`: expected a whole number from 1 to {MAX_LIMIT}"),
            );
        }
    };
    if let Some(unknown) = query
        .keys()
        .find(|k| !matches!(k.as_str(), "since" | "limit"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown parameter `{unknown}`: expected `since` or `limit`"),
        );
    }
    let q = palisade_audit::activity::Query {
        principal: principal.as_str().to_owned(),
        tenant: principal.tenant().map(str::to_owned),
        since,
        limit,
    };
    let config = &server.gateway.config;
    let (path, target) = (config.audit_path(), config.audit.postgres_target());
    // The log is read from disk (or the database): off the async workers.
    let read = tokio::task::spawn_blocking(move || match target {
        None => palisade_audit::activity::read(&path, &q).map_err(|e| e.to_string()),
        Some(target) => palisade_audit::postgres::activity(&target, &q),
    })
    .await;
    match read {
        Ok(Ok(actions)) => {
            let value = json!({ "principal": principal.as_str(), "actions": actions });
            Json(server.gateway.seam().apply(value).into_inner()).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!("activity: cannot read the audit log: {e}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit log cannot be read",
            )
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the activity read failed",
        ),
    }
}

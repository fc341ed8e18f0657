//! The admin API: humans list, read, approve and deny held calls.
//!
//! Every endpoint authenticates like the MCP endpoint and then requires the
//! `approver` role; the gate itself refuses an
//! approver deciding their own request. Each decision is audited with who
//! made it. What is shown (the exact arguments) passes the redaction seam.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response as HttpResponse};
use http::{HeaderMap, StatusCode};
use palisade_authz::approvals::{ApprovalError, ApprovalFilter, ApprovalRecord};
use palisade_core::{AuditEvent, Bounded, Principal};
use serde_json::{Value, json};

use super::Server;
use super::auth::authenticate;
use super::guards::check_origin;

const LIST_LIMIT: usize = 500;

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The caller, if it may act as an approver.
async fn approver(server: &Server, headers: &HeaderMap) -> Result<Principal, HttpResponse> {
    if check_origin(server, headers).is_err() {
        return Err(error(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let principal = authenticate(server, headers).await?;
    let role = palisade_authz::APPROVER_ROLE;
    if principal.roles().iter().any(|r| &**r == role) {
        Ok(principal)
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "`{}` lacks the `{role}` role the approval API requires",
                principal.as_str()
            ),
        ))
    }
}

/// A record as shown to a human: through the redaction seam, like
/// everything that leaves palisade.
fn shown(server: &Server, record: &ApprovalRecord) -> Value {
    let value = serde_json::to_value(record).unwrap_or(Value::Null);
    server.gateway.seam().apply(value).into_inner()
}

fn refused(e: &ApprovalError) -> HttpResponse {
    let status = match e {
        ApprovalError::Unknown { .. } => StatusCode::NOT_FOUND,
        ApprovalError::NotPending { .. } | ApprovalError::Contended { .. } => StatusCode::CONFLICT,
        ApprovalError::SelfApproval { .. }
        | ApprovalError::LacksRole { .. }
        | ApprovalError::OtherTenant { .. } => StatusCode::FORBIDDEN,
        ApprovalError::Store { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

pub(super) async fn list(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Err(refused) = approver(&server, &headers).await {
        return refused;
    }
    let filter = match query.get("state").map(String::as_str) {
        None | Some("pending") => ApprovalFilter::Pending,
        Some("all") => ApprovalFilter::All,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`state` is `pending` or `all`, not `{other}`"),
            );
        }
    };
    match server
        .gateway
        .approvals
        .list(filter, None, LIST_LIMIT)
        .await
    {
        Ok(records) => {
            let items: Vec<Value> = records.iter().map(|r| shown(&server, r)).collect();
            Json(json!({ "approvals": items })).into_response()
        }
        Err(e) => refused(&e),
    }
}

pub(super) async fn show(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> HttpResponse {
    if let Err(refused) = approver(&server, &headers).await {
        return refused;
    }
    match server.gateway.approvals.show(&id).await {
        Ok(record) => Json(shown(&server, &record)).into_response(),
        Err(e) => refused(&e),
    }
}

#[derive(Debug, Clone, Copy)]
enum Verdict {
    Approve,
    Deny,
}

pub(super) async fn approve(
    state: State<Arc<Server>>,
    headers: HeaderMap,
    id: Path<String>,
    body: axum::body::Bytes,
) -> HttpResponse {
    decide(state, headers, id, body, Verdict::Approve).await
}

pub(super) async fn deny(
    state: State<Arc<Server>>,
    headers: HeaderMap,
    id: Path<String>,
    body: axum::body::Bytes,
) -> HttpResponse {
    decide(state, headers, id, body, Verdict::Deny).await
}

async fn decide(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
    verdict: Verdict,
) -> HttpResponse {
    let principal = match approver(&server, &headers).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let reason = match reason(&body) {
        Ok(reason) => reason,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let approvals = &server.gateway.approvals;
    let decided = match verdict {
        Verdict::Approve => approvals.approve(&id, &principal, &reason).await,
        Verdict::Deny => approvals.deny(&id, &principal, &reason).await,
    };
    let (decision, record) = match (verdict, decided) {
        (Verdict::Approve, Ok(record)) => ("approved", record),
        (Verdict::Deny, Ok(record)) => ("denied", record),
        (_, Err(e)) => {
            tracing::info!(approver = %principal, "approval refused: {e}");
            return refused(&e);
        }
    };
    let event = AuditEvent::ApprovalDecided {
        time: server.gateway.pipeline.now(),
        request: Bounded::new(record.id.as_str()),
        principal: principal.clone(),
        requester: Bounded::new(record.principal.as_str()),
        decision,
        reason: (!reason.is_empty()).then(|| Bounded::new(reason.as_str())),
    };
    if let Err(failure) = server.gateway.pipeline.record(&event).await {
        // The decision is stored; the held call's own records still show it ran.
        tracing::error!("cannot record the approval decision: {failure}");
    }
    Json(shown(&server, &record)).into_response()
}

/// `{"reason": "…"}`, or an empty body.
fn reason(body: &[u8]) -> Result<String, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body must be JSON such as {{\"reason\": \"…\"}}: {e}"))?;
    match value.get("reason") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(reason)) if reason.len() <= 1024 => Ok(reason.clone()),
        Some(Value::String(_)) => Err("`reason` is at most 1024 bytes".into()),
        Some(_) => Err("`reason` must be a string".into()),
    }
}

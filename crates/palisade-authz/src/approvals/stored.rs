//! Approval requests kept in the state store: asked by the gate, decided by humans, spent once, shared by every replica.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::stage::StageFuture;
use palisade_core::{CallContext, Clock, Principal, Reason, ReasonCode, StageError};
use palisade_store::{Document, Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::record::{self, ApprovalRecord, ApprovalState, Consumed, Decided};
use crate::permit::{Approval, ApprovalRequest};
use crate::{ApprovalGate, GateDecision};

/// The collection of requests, keyed by request id.
pub const APPROVALS: &str = "approvals";
/// request digest (hex) → `{"id": …}` of the latest request for it, so
/// that the agent's identical retry finds its request.
pub const APPROVAL_DIGESTS: &str = "approval-digests";

/// How many lost compare-and-sets one operation tolerates before it gives
/// up; each loss means another writer made progress.
const MAX_RACES: usize = 16;
/// The longest reason an approver may give; longer ones are cut.
const MAX_DECISION_REASON: usize = 1000;
/// Records read per store page when listing.
const PAGE: usize = 100;

/// How the gate treats requests. The server reads it from `[approvals]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long a request may wait for a decision, and an approval for its
    /// call, from the moment it is asked.
    pub ttl: Duration,
    /// How long the gate holds the agent's call open waiting for a decision
    /// before it answers pending. Zero: answer at once.
    pub hold: Duration,
    /// How often a held call reads the store for a decision made on another
    /// replica (one made on this one wakes it at once).
    pub poll: Duration,
    /// The longest canonical argument text a request may carry. A human
    /// cannot judge what they cannot read, so longer ones are refused.
    pub max_argument_bytes: usize,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            hold: Duration::ZERO,
            poll: Duration::from_millis(500),
            max_argument_bytes: 64 * 1024,
        }
    }
}

/// A setting the gate cannot work with, by its config field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("`approvals.ttl` must be longer than zero")]
    Ttl,
    #[error("`approvals.poll` must be between 10 ms and 60 s")]
    Poll,
    #[error("`approvals.max_argument_bytes` must be at least 2 (the text `{{}}`)")]
    MaxArgumentBytes,
}

/// Which requests [`StoredApprovals::list`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalFilter {
    /// Those waiting for a decision now.
    Pending,
    All,
}

/// Why a human's decision was not taken. Each names the request.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such request: a mistyped or guessed id.
    #[error("there is no approval request `{id}`")]
    Unknown { id: String },
    #[error("approval request `{id}` is {state}, not pending")]
    NotPending { id: String, state: ApprovalState },
    #[error("`{approver}` asked for approval request `{id}` and cannot decide it")]
    SelfApproval { id: String, approver: String },
    #[error("`{approver}` cannot decide approval request `{id}`: it needs the role {roles}")]
    LacksRole {
        id: String,
        approver: String,
        roles: String,
    },
    #[error("`{approver}` cannot decide approval request `{id}` of another tenant")]
    OtherTenant { id: String, approver: String },
    /// Writers kept racing for the request; nothing was decided.
    #[error("approval request `{id}` is being changed by others; try again")]
    Contended { id: String },
    #[error("approval request `{id}`: {error}")]
    Store { id: String, error: StoreError },
}

/// Approval requests in a [`Store`]: the [`ApprovalGate`] the pipeline asks,
/// and the side humans act on through the admin API.
///
/// Every change of a request is a compare-and-set on its version, so two
/// replicas on one database agree: one approval is spent by one call.
#[derive(Debug)]
pub struct StoredApprovals {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: ApprovalSettings,
    /// Wakes this process's held calls when a human decides here.
    decided: Notify,
}

/// Where one look at the store left the agent's request.
enum Step {
    Approved,
    Refused(Reason),
    Waiting(Box<ApprovalRecord>),
}

impl StoredApprovals {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: ApprovalSettings,
    ) -> Result<Self, SettingsError> {
        if settings.ttl.is_zero() {
            return Err(SettingsError::Ttl);
        }
        if settings.poll < Duration::from_millis(10) || settings.poll > Duration::from_secs(60) {
            return Err(SettingsError::Poll);
        }
        if settings.max_argument_bytes < 2 {
            return Err(SettingsError::MaxArgumentBytes);
        }
        Ok(Self {
            store,
            clock,
            settings,
            decided: Notify::new(),
        })
    }

    pub fn settings(&self) -> &ApprovalSettings {
        &self.settings
    }

    // The human side.

    /// Requests in creation order, after `after` (an id), at most `limit`,
    /// each with its state as of now.
    pub async fn list(
        &self,
        filter: ApprovalFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, ApprovalError> {
        let now = self.clock.wall();
        let mut found = Vec::new();
        let mut cursor = after.map(str::to_owned);
        while found.len() < limit {
            let page = self
                .store
                .list(APPROVALS, cursor.as_deref(), PAGE)
                .await
                .map_err(|error| store_error(cursor.as_deref().unwrap_or("*"), error))?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.key.clone());
            let full = page.len() == PAGE;
            for doc in page {
                let mut record = parse(&doc).map_err(|error| store_error(&doc.key, error))?;
                record.state = record.state_at(now);
                let wanted = match filter {
                    ApprovalFilter::All => record.state != ApprovalState::Withdrawn,
                    ApprovalFilter::Pending => record.state == ApprovalState::Pending,
                };
                if wanted && found.len() < limit {
                    found.push(record);
                }
            }
            if !full {
                break;
            }
        }
        Ok(found)
    }

    /// One request, with its state as of now.
    pub async fn show(&self, id: &str) -> Result<ApprovalRecord, ApprovalError> {
        let (_, mut record) = self.load(id).await?;
        record.state = record.state_at(self.clock.wall());
        Ok(record)
    }

    /// `approver` approves request `id`; the decided record, for the audit.
    pub async fn approve(
        &self,
        id: &str,
        approver: &Principal,
        reason: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        self.decide(id, approver, reason, ApprovalState::Approved)
            .await
    }

    /// `approver` refuses request `id`; the decided record, for the audit.
    pub async fn deny(
        &self,
        id: &str,
        approver: &Principal,
        reason: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        self.decide(id, approver, reason, ApprovalState::Denied)
            .await
    }

    async fn decide(
        &self,
        id: &str,
        approver: &Principal,
        reason: &str,
        to: ApprovalState,
    ) -> Result<ApprovalRecord, ApprovalError> {
        for _ in 0..MAX_RACES {
            let (doc, record) = self.load(id).await?;
            may_decide(&record, approver)?;
            let now = self.clock.wall();
            match record.state_at(now) {
                ApprovalState::Pending => {}
                ApprovalState::Expired if record.state == ApprovalState::Pending => {
                    // Written down, so every replica sees it the same way.
                    let mut expired = record.clone();
                    expired.state = ApprovalState::Expired;
                    self.replace(&doc, &expired)
                        .await
                        .map_err(|error| store_error(id, error))?;
                    return Err(not_pending(&record, ApprovalState::Expired));
                }
                state @ (ApprovalState::Approved
                | ApprovalState::Denied
                | ApprovalState::Consumed
                | ApprovalState::Expired
                | ApprovalState::Withdrawn) => return Err(not_pending(&record, state)),
            }
            let mut decided = record;
            decided.state = to;
            decided.decision = Some(Decided {
                by: approver.as_str().to_owned(),
                tenant: approver.tenant().map(str::to_owned),
                at: now,
                reason: reason.chars().take(MAX_DECISION_REASON).collect(),
            });
            if self
                .replace(&doc, &decided)
                .await
                .map_err(|error| store_error(id, error))?
            {
                self.decided.notify_waiters();
                return Ok(decided);
            }
        }
        Err(ApprovalError::Contended {
            id: record::quoted(id),
        })
    }

    async fn load(&self, id: &str) -> Result<(Document, ApprovalRecord), ApprovalError> {
        let unknown = || ApprovalError::Unknown {
            id: record::quoted(id),
        };
        // A string that is not an id is not looked up at all.
        if !record::is_id(id) {
            return Err(unknown());
        }
        let doc = self
            .store
            .get(APPROVALS, id)
            .await
            .map_err(|error| store_error(id, error))?
            .ok_or_else(unknown)?;
        let record = parse(&doc).map_err(|error| store_error(id, error))?;
        // A document under another id than its own is not trusted.
        if record.id != id {
            return Err(unknown());
        }
        Ok((doc, record))
    }

    // The gate's side.

    async fn gate_request(&self, request: &ApprovalRequest) -> Result<GateDecision, StageError> {
        let Some(arguments) = request.canonical_arguments() else {
            return Ok(GateDecision::Denied(Reason::new(
                ReasonCode::NotAuthorized,
                "the approval request does not carry its arguments, so no human can approve it",
            )));
        };
        if arguments.len() > self.settings.max_argument_bytes {
            return Ok(GateDecision::Denied(Reason::new(
                ReasonCode::NotAuthorized,
                format!(
                    "the arguments ({} bytes of canonical JSON) are longer than the {} bytes an approver can be shown",
                    arguments.len(),
                    self.settings.max_argument_bytes
                ),
            )));
        }
        let start = tokio::time::Instant::now();
        let deadline = start.checked_add(self.settings.hold).unwrap_or(start);
        loop {
            // Armed before the store is read, so that a decision made
            // between the read and the wait still wakes this call.
            let notified = self.decided.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.step(request, arguments).await? {
                Step::Approved => {
                    return Ok(GateDecision::Approved(Approval::grant(request.digest())));
                }
                Step::Refused(reason) => return Ok(GateDecision::Denied(reason)),
                Step::Waiting(record) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Ok(GateDecision::Pending(waiting(request, &record)));
                    }
                    let wake = now
                        .checked_add(self.settings.poll)
                        .map_or(deadline, |next| next.min(deadline));
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(wake) => {}
                    }
                }
            }
        }
    }

    /// Finds (or asks) the request for this call and moves it on: spends an
    /// approval, writes down an expiry, or asks anew after a final state.
    async fn step(&self, request: &ApprovalRequest, arguments: &str) -> Result<Step, StageError> {
        let key = request.digest().to_hex();
        for _ in 0..MAX_RACES {
            let index = self
                .store
                .get(APPROVAL_DIGESTS, &key)
                .await
                .map_err(stage_error)?;
            let (index_version, current) = match &index {
                None => (None, None),
                Some(doc) => {
                    let id = doc.body.get("id").and_then(Value::as_str).unwrap_or("");
                    let current = if record::is_id(id) {
                        self.store.get(APPROVALS, id).await.map_err(stage_error)?
                    } else {
                        None
                    };
                    (Some(doc.version), current)
                }
            };
            // No request yet, or the index names one that is not there (a
            // crash between the two writes): ask anew.
            let Some(doc) = current else {
                match self.ask(request, arguments, index_version).await? {
                    Some(record) => return Ok(Step::Waiting(Box::new(record))),
                    None => continue,
                }
            };
            let record = parse(&doc).map_err(stage_error)?;
            if record.digest != key || !record::is_id(&record.id) || record.id != doc.key {
                return Err(StageError::new(format!(
                    "approval request `{}` does not belong to the request it is indexed under",
                    record::quoted(&doc.key)
                )));
            }
            let now = self.clock.wall();
            match record.state {
                ApprovalState::Pending | ApprovalState::Approved if record.is_expired(now) => {
                    let mut expired = record.clone();
                    expired.state = ApprovalState::Expired;
                    if self.replace(&doc, &expired).await.map_err(stage_error)? {
                        return Ok(Step::Refused(expired_reason(&record)));
                    }
                }
                ApprovalState::Pending => return Ok(Step::Waiting(Box::new(record))),
                ApprovalState::Approved => {
                    let mut spent = record.clone();
                    spent.state = ApprovalState::Consumed;
                    spent.consumed = Some(Consumed {
                        call: request.head.id.to_string(),
                        at: now,
                    });
                    // Only one of several racing calls wins this write; the
                    // others read again and find it consumed.
                    if self.replace(&doc, &spent).await.map_err(stage_error)? {
                        return Ok(Step::Approved);
                    }
                }
                // A refusal stands for the request's life, so that an agent
                // cannot ask a human the same thing over and over.
                ApprovalState::Denied if !record.is_expired(now) => {
                    return Ok(Step::Refused(denied_reason(&record)));
                }
                // Spent, expired, withdrawn, or a refusal whose time is up:
                // this call is a new request, and needs a new approval.
                ApprovalState::Denied
                | ApprovalState::Consumed
                | ApprovalState::Expired
                | ApprovalState::Withdrawn => {
                    match self.ask(request, arguments, index_version).await? {
                        Some(record) => return Ok(Step::Waiting(Box::new(record))),
                        None => continue,
                    }
                }
            }
        }
        Err(StageError::unavailable(
            "the approval request is being changed by others",
            Some(Duration::from_secs(1)),
        ))
    }

    /// Writes a new pending request and points the digest's index at it.
    /// `None` when another writer got there first (the caller reads again).
    async fn ask(
        &self,
        request: &ApprovalRequest,
        arguments: &str,
        index_version: Option<u64>,
    ) -> Result<Option<ApprovalRecord>, StageError> {
        let now = self.clock.wall();
        let id = record::new_id(now)
            .map_err(|e| StageError::new(format!("cannot draw an approval request id: {e}")))?;
        let record = ApprovalRecord::new(id, request, arguments, now, self.settings.ttl);
        let body = to_body(&record)?;
        if !self
            .store
            .insert(APPROVALS, &record.id, &body)
            .await
            .map_err(stage_error)?
        {
            return Ok(None);
        }
        let key = request.digest().to_hex();
        let pointer = json!({ "id": record.id });
        let indexed = match index_version {
            None => self
                .store
                .insert(APPROVAL_DIGESTS, &key, &pointer)
                .await
                .map_err(stage_error)?,
            Some(version) => self
                .store
                .replace(APPROVAL_DIGESTS, &key, version, &pointer)
                .await
                .map_err(stage_error)?
                .is_some(),
        };
        if indexed {
            return Ok(Some(record));
        }
        // Another replica asked at the same moment and its request is the
        // one the index names; ours would wait forever for nobody.
        let mut withdrawn = record;
        withdrawn.state = ApprovalState::Withdrawn;
        let body = to_body(&withdrawn)?;
        self.store
            .replace(APPROVALS, &withdrawn.id, 1, &body)
            .await
            .map_err(stage_error)?;
        Ok(None)
    }

    /// Compare-and-set of `record` over `doc`; false when another writer won.
    async fn replace(&self, doc: &Document, record: &ApprovalRecord) -> Result<bool, StoreError> {
        let body = serde_json::to_value(record).map_err(|e| StoreError::Corrupt {
            collection: APPROVALS.into(),
            key: doc.key.clone(),
            message: e.to_string(),
        })?;
        Ok(self
            .store
            .replace(APPROVALS, &doc.key, doc.version, &body)
            .await?
            .is_some())
    }
}

impl ApprovalGate for StoredApprovals {
    fn gate<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, GateDecision> {
        Box::pin(self.gate_request(request))
    }

    fn hold(&self) -> Duration {
        self.settings.hold
    }
}

/// The checks on who decides: the role, never the requester, the same tenant.
fn may_decide(record: &ApprovalRecord, approver: &Principal) -> Result<(), ApprovalError> {
    let id = record.id.clone();
    let name = approver.as_str().to_owned();
    let has_role = approver
        .roles()
        .iter()
        .any(|role| record.approvers.iter().any(|needed| **role == **needed));
    if !has_role {
        return Err(ApprovalError::LacksRole {
            id,
            approver: name,
            roles: record
                .approvers
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(" or "),
        });
    }
    // By id alone: the same person through another credential or tenant
    // is still the one who asked.
    if approver.as_str() == record.principal {
        return Err(ApprovalError::SelfApproval { id, approver: name });
    }
    // An approver bound to a tenant decides only that tenant's requests; one
    // bound to none (an operator) decides any.
    if let (Some(theirs), Some(mine)) = (record.tenant.as_deref(), approver.tenant())
        && theirs != mine
    {
        return Err(ApprovalError::OtherTenant { id, approver: name });
    }
    Ok(())
}

fn waiting(request: &ApprovalRequest, record: &ApprovalRecord) -> Reason {
    Reason::new(
        ReasonCode::ApprovalRequired,
        format!(
            "approval required ({}): request `{id}` is waiting for a human (palisade approvals approve {id}); retry the same call once it is approved",
            request.reason.detail,
            id = record.id
        ),
    )
    .awaiting(record.id.as_str())
}

fn denied_reason(record: &ApprovalRecord) -> Reason {
    let (by, why) = record
        .decision
        .as_ref()
        .map_or(("?", ""), |d| (d.by.as_str(), d.reason.as_str()));
    Reason::new(
        ReasonCode::NotAuthorized,
        format!(
            "approval request `{}` was denied by `{by}`: {why}",
            record.id
        ),
    )
    .awaiting(record.id.as_str())
}

fn expired_reason(record: &ApprovalRecord) -> Reason {
    let what = match record.state {
        ApprovalState::Approved => "was approved but not used",
        ApprovalState::Pending
        | ApprovalState::Denied
        | ApprovalState::Consumed
        | ApprovalState::Expired
        | ApprovalState::Withdrawn => "was not decided",
    };
    Reason::new(
        ReasonCode::NotAuthorized,
        format!(
            "approval request `{}` {what} before it expired at {}; retry to ask again",
            record.id,
            humantime::format_rfc3339_seconds(record.expires)
        ),
    )
    .awaiting(record.id.as_str())
}

fn not_pending(record: &ApprovalRecord, state: ApprovalState) -> ApprovalError {
    ApprovalError::NotPending {
        id: record.id.clone(),
        state,
    }
}

fn parse(doc: &Document) -> Result<ApprovalRecord, StoreError> {
    ApprovalRecord::deserialize(&doc.body).map_err(|e| StoreError::Corrupt {
        collection: APPROVALS.into(),
        key: record::quoted(&doc.key),
        message: e.to_string(),
    })
}

fn to_body(record: &ApprovalRecord) -> Result<Value, StageError> {
    serde_json::to_value(record)
        .map_err(|e| StageError::new(format!("cannot write approval request: {e}")))
}

fn store_error(id: &str, error: StoreError) -> ApprovalError {
    ApprovalError::Store {
        id: record::quoted(id),
        error,
    }
}

/// The store is down: the call fails closed, and may be retried.
fn stage_error(error: StoreError) -> StageError {
    match error {
        StoreError::Unavailable(_) => {
            StageError::unavailable(error.to_string(), Some(Duration::from_secs(1)))
        }
        StoreError::Corrupt { .. } | StoreError::Config(_) => StageError::new(error.to_string()),
    }
}

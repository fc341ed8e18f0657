//! Adversarial tests of stored approvals, each on a real SQLite store of its own.
#![expect(
    clippy::disallowed_methods,
    reason = "racing replicas are spawned tasks; the test awaits each"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use palisade_core::{
    Call, CallContext, CallHead, CallId, CallKind, Credential, EffectClass, Identity, ManualClock,
    Principal, PrincipalKind, Reason, ReasonCode, SessionFacts, SessionId, StageError, Target,
};
use palisade_store::Store;
use serde_json::{Value, json};

use super::*;
use crate::authn::testing::{FailingStore, TempSqlite};
use crate::permit::{ArgumentsMismatch, PendingApproval, Permit};
use crate::{ApprovalGate, GateDecision};

struct World {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    settings: ApprovalSettings,
}

impl World {
    async fn new() -> Self {
        Self::with(ApprovalSettings::default()).await
    }

    async fn with(settings: ApprovalSettings) -> Self {
        Self {
            store: TempSqlite::new().await,
            clock: Arc::new(ManualClock::new(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
            )),
            settings,
        }
    }

    /// A gateway process on this world's store: every call is a new replica.
    fn replica(&self) -> StoredApprovals {
        StoredApprovals::new(
            self.store.clone(),
            self.clock.clone(),
            self.settings.clone(),
        )
        .unwrap()
    }
}

fn person(id: &str, roles: &[&str], tenant: Option<&str>) -> Principal {
    Principal::from_identity(Identity {
        id: id.into(),
        kind: PrincipalKind::User,
        roles: roles.iter().map(|r| Arc::from(*r)).collect(),
        tenant: tenant.map(Arc::from),
        credential: Credential::ApiKey {
            key: "key-id".into(),
        },
        task: None,
    })
}

fn agent() -> Principal {
    person("agent-7", &["approver"], Some("acme"))
}

fn alice() -> Principal {
    person("alice", &["approver"], Some("acme"))
}

fn call(id: u64, who: &Principal, arguments: Value) -> Call {
    Call::new(
        CallHead {
            id: CallId(id),
            principal: who.clone(),
            session: SessionId::new("s-1"),
            kind: CallKind::Tool,
            target: Target::new("mail", "send"),
            effect: EffectClass::Irreversible,
            params: None,
            parent: None,
        },
        arguments,
    )
}

/// What the pipeline builds for a held call: escalated, arguments shown.
fn pending_for(c: &Call) -> PendingApproval {
    let mut pending = Permit::issue(c).escalate_by(
        Reason::new(ReasonCode::ApprovalRequired, "sends mail"),
        vec!["policy-mail".into()],
    );
    pending.show_arguments(c.arguments()).unwrap();
    pending
}

fn send(id: u64, to: &str) -> PendingApproval {
    pending_for(&call(id, &agent(), json!({"to": to, "body": "hi"})))
}

fn ctx() -> CallContext {
    CallContext::new(SessionFacts::new())
}

/// The gate's answer in short: `approved`, `pending <id>`, `denied: <detail>`.
async fn ask(gate: &StoredApprovals, pending: &PendingApproval) -> String {
    match gate.gate(pending.request(), &ctx()).await.unwrap() {
        GateDecision::Approved(_) => "approved".into(),
        GateDecision::Pending(reason) => {
            assert_eq!(reason.code, ReasonCode::ApprovalRequired);
            let id = reason.approval.clone().unwrap();
            assert!(
                reason
                    .detail
                    .contains(&format!("palisade approvals approve {id}"))
            );
            format!("pending {id}")
        }
        GateDecision::Denied(reason) => {
            assert_eq!(reason.code, ReasonCode::NotAuthorized);
            format!("denied: {}", reason.detail)
        }
    }
}

fn id_of(answer: &str) -> String {
    answer.strip_prefix("pending ").unwrap().to_owned()
}

#[tokio::test]
async fn an_approved_call_runs_once_and_its_replay_needs_a_new_approval() {
    let world = World::new().await;
    let gate = world.replica();
    let first = ask(&gate, &send(1, "bob@example.com")).await;
    let id = id_of(&first);
    // The identical retry finds the same request, not a second one.
    assert_eq!(ask(&gate, &send(2, "bob@example.com")).await, first);
    let pending = gate.list(ApprovalFilter::Pending, None, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let shown = &pending[0];
    assert_eq!(shown.id, id);
    assert_eq!(shown.arguments, r#"{"body":"hi","to":"bob@example.com"}"#);
    assert_eq!(
        shown.arguments_sha256,
        palisade_core::ArgumentDigest::of(&json!({"to": "bob@example.com", "body": "hi"})).to_hex()
    );
    assert_eq!(shown.policies, ["policy-mail"]);
    assert_eq!(shown.approvers, ["approver"]);
    assert_eq!(
        (shown.principal.as_str(), shown.session.as_str()),
        ("agent-7", "s-1")
    );
    assert_eq!(
        shown.expires.duration_since(shown.created).unwrap(),
        Duration::from_secs(3600)
    );

    let decided = gate.approve(&id, &alice(), "ok this once").await.unwrap();
    assert_eq!(decided.state, ApprovalState::Approved);
    // Decided once: a second decision, either way, is refused.
    for second in [
        gate.approve(&id, &person("bob", &["approver"], None), "me too")
            .await,
        gate.deny(&id, &person("bob", &["approver"], None), "no")
            .await,
    ] {
        assert!(matches!(
            second,
            Err(ApprovalError::NotPending {
                state: ApprovalState::Approved,
                ..
            })
        ));
    }
    let by = decided.decision.unwrap();
    assert_eq!(
        (by.by.as_str(), by.reason.as_str()),
        ("alice", "ok this once")
    );

    // The retry runs: the approval turns the pending permit back into one.
    let retry = send(3, "bob@example.com");
    let GateDecision::Approved(approval) = gate.gate(retry.request(), &ctx()).await.unwrap() else {
        panic!("not approved");
    };
    assert!(retry.approve(approval).is_ok());
    let spent = gate.show(&id).await.unwrap();
    assert_eq!(spent.state, ApprovalState::Consumed);
    assert_eq!(spent.consumed.unwrap().call, CallId(3).to_string());

    // Replayed: a new request, not approved.
    let replay = ask(&gate, &send(4, "bob@example.com")).await;
    assert_ne!(id_of(&replay), id);
    // And the spent one cannot be approved again.
    assert!(matches!(
        gate.approve(&id, &alice(), "again").await,
        Err(ApprovalError::NotPending {
            state: ApprovalState::Consumed,
            ..
        })
    ));
}

#[tokio::test]
async fn changed_arguments_are_another_request_and_not_approved() {
    let world = World::new().await;
    let gate = world.replica();
    let id = id_of(&ask(&gate, &send(1, "bob@example.com")).await);
    gate.approve(&id, &alice(), "").await.unwrap();
    // Swapped recipient, an added field, the same call in another session,
    // by another principal: none of them gets the approval.
    let other_session = {
        let (head, args) =
            call(2, &agent(), json!({"to": "bob@example.com", "body": "hi"})).into_parts();
        pending_for(&Call::new(
            CallHead {
                session: SessionId::new("s-2"),
                ..head
            },
            args,
        ))
    };
    let cases = [
        send(2, "mallory@evil.test"),
        pending_for(&call(
            2,
            &agent(),
            json!({"to": "bob@example.com", "body": "hi", "bcc": "x"}),
        )),
        other_session,
        pending_for(&call(
            2,
            &person("agent-8", &[], Some("acme")),
            json!({"to": "bob@example.com", "body": "hi"}),
        )),
    ];
    for case in &cases {
        let answer = ask(&gate, case).await;
        assert_ne!(id_of(&answer), id, "{answer}");
    }
    // The approved one is still there for its own call.
    assert_eq!(ask(&gate, &send(3, "bob@example.com")).await, "approved");
}

#[tokio::test]
async fn a_request_shows_only_the_arguments_it_is_bound_to() {
    let c = call(1, &agent(), json!({"to": "bob@example.com"}));
    let mut pending = Permit::issue(&c).escalate(Reason::new(ReasonCode::ApprovalRequired, "x"));
    assert_eq!(
        pending.show_arguments(&json!({"to": "mallory@evil.test"})),
        Err(ArgumentsMismatch::Digest)
    );
    assert_eq!(pending.request().canonical_arguments(), None);
    // Unshown arguments cannot be approved by anybody.
    let gate = World::new().await.replica();
    assert!(
        ask(&gate, &pending)
            .await
            .starts_with("denied: the approval request does not carry its arguments")
    );
    pending
        .show_arguments(&json!({"to": "bob@example.com"}))
        .unwrap();
    assert!(ask(&gate, &pending).await.starts_with("pending "));
}

#[tokio::test]
async fn arguments_too_long_to_show_are_refused() {
    let world = World::with(ApprovalSettings {
        max_argument_bytes: 64,
        ..ApprovalSettings::default()
    })
    .await;
    let gate = world.replica();
    let long = "x".repeat(64);
    assert!(
        ask(&gate, &send(1, &long))
            .await
            .starts_with("denied: the arguments (")
    );
    assert!(ask(&gate, &send(1, "b@c")).await.starts_with("pending "));
}

#[tokio::test]
async fn an_expired_request_is_refused_and_a_later_retry_asks_anew() {
    let world = World::new().await;
    let gate = world.replica();
    // Nobody decided in time.
    let id = id_of(&ask(&gate, &send(1, "bob@example.com")).await);
    world.clock.advance(Duration::from_secs(3601));
    assert_eq!(gate.show(&id).await.unwrap().state, ApprovalState::Expired);
    let answer = ask(&gate, &send(2, "bob@example.com")).await;
    assert!(
        answer.contains(&format!("`{id}` was not decided before it expired")),
        "{answer}"
    );
    // A late decision is refused too.
    assert!(matches!(
        gate.approve(&id, &alice(), "late").await,
        Err(ApprovalError::NotPending {
            state: ApprovalState::Expired,
            ..
        })
    ));
    let again = id_of(&ask(&gate, &send(3, "bob@example.com")).await);
    assert_ne!(again, id);

    // Approved, but not used in time.
    gate.approve(&again, &alice(), "").await.unwrap();
    world.clock.advance(Duration::from_secs(3601));
    let answer = ask(&gate, &send(4, "bob@example.com")).await;
    assert!(
        answer.contains("was approved but not used before it expired"),
        "{answer}"
    );
    assert_eq!(
        gate.show(&again).await.unwrap().state,
        ApprovalState::Expired
    );
    // Just before the expiry, it would have run: the boundary is `now > expires`.
    let fresh = id_of(&ask(&gate, &send(5, "bob@example.com")).await);
    gate.approve(&fresh, &alice(), "").await.unwrap();
    world.clock.advance(Duration::from_secs(3600));
    assert_eq!(ask(&gate, &send(6, "bob@example.com")).await, "approved");
}

#[tokio::test]
async fn a_denied_request_stays_refused_with_the_approvers_reason() {
    let world = World::new().await;
    let gate = world.replica();
    let id = id_of(&ask(&gate, &send(1, "bob@example.com")).await);
    let decided = gate.deny(&id, &alice(), "not to bob").await.unwrap();
    assert_eq!(decided.state, ApprovalState::Denied);
    let expected = format!("denied: approval request `{id}` was denied by `alice`: not to bob");
    assert_eq!(ask(&gate, &send(2, "bob@example.com")).await, expected);
    assert_eq!(ask(&gate, &send(3, "bob@example.com")).await, expected);
    assert!(matches!(
        gate.approve(&id, &alice(), "changed my mind").await,
        Err(ApprovalError::NotPending {
            state: ApprovalState::Denied,
            ..
        })
    ));
    // Once its time is up, the agent may ask again.
    world.clock.advance(Duration::from_secs(3601));
    assert_ne!(id_of(&ask(&gate, &send(4, "bob@example.com")).await), id);
}

#[tokio::test]
async fn only_an_approver_other_than_the_requester_decides() {
    let world = World::new().await;
    let gate = world.replica();
    let id = id_of(&ask(&gate, &send(1, "bob@example.com")).await);
    let check = async |who: Principal, expected: &str| {
        for decide in [true, false] {
            let got = if decide {
                gate.approve(&id, &who, "").await
            } else {
                gate.deny(&id, &who, "").await
            };
            let got = match got {
                Ok(_) => "ok",
                Err(ApprovalError::SelfApproval { .. }) => "self",
                Err(ApprovalError::LacksRole { .. }) => "role",
                Err(ApprovalError::OtherTenant { .. }) => "tenant",
                Err(e) => panic!("{e}"),
            };
            assert_eq!(got, expected, "{who:?}");
        }
    };
    // The requester, with the role, in its own tenant, in another, or none.
    check(agent(), "self").await;
    check(person("agent-7", &["approver"], Some("other")), "self").await;
    check(person("agent-7", &["approver"], None), "self").await;
    // No role, or a role that is not the one asked for.
    check(person("bob", &[], Some("acme")), "role").await;
    check(person("bob", &["admin", "approvers"], Some("acme")), "role").await;
    // An approver of another tenant.
    check(person("carol", &["approver"], Some("globex")), "tenant").await;
    let unchanged = gate.show(&id).await.unwrap();
    assert_eq!(
        (unchanged.state, unchanged.decision),
        (ApprovalState::Pending, None)
    );
    // An operator bound to no tenant may.
    let decided = gate
        .approve(&id, &person("root", &["approver"], None), "")
        .await
        .unwrap();
    assert_eq!(decided.decision.unwrap().by, "root");
}

#[tokio::test]
async fn an_operator_without_tenant_approves_and_the_message_names_the_role() {
    let world = World::new().await;
    let gate = world.replica();
    let c = call(1, &agent(), json!({"amount": 10}));
    let pending = pending_for(&c).with_approvers(vec!["payments".into()]);
    let id = id_of(&ask(&gate, &pending).await);
    let refused = gate.approve(&id, &alice(), "").await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!("`alice` cannot decide approval request `{id}`: it needs the role `payments`")
    );
    let decided = gate
        .approve(&id, &person("root", &["payments"], None), "")
        .await
        .unwrap();
    assert_eq!(decided.decision.unwrap().by, "root");
}

#[tokio::test]
async fn guessed_ids_are_unknown() {
    let world = World::new().await;
    let gate = world.replica();
    let id = id_of(&ask(&gate, &send(1, "bob@example.com")).await);
    // The same creation time, other random bits; other shapes altogether.
    let mut guessed = id.clone();
    guessed.replace_range(
        id.len() - 4..,
        if id.ends_with("0000") { "0001" } else { "0000" },
    );
    let long = "apr_".to_owned() + &"a".repeat(10_000);
    for wrong in [
        guessed.as_str(),
        "",
        "apr_",
        &id.to_uppercase(),
        &format!("{id} "),
        &format!("../{id}"),
        &id[..id.len() - 1],
        long.as_str(),
        "apr_\u{202e}\n",
    ] {
        match gate.approve(wrong, &alice(), "").await {
            Err(ApprovalError::Unknown { id: quoted }) => {
                assert!(quoted.len() <= 64 * 10, "{quoted}")
            }
            other => panic!("{wrong:?}: {other:?}"),
        }
        assert!(matches!(
            gate.show(wrong).await,
            Err(ApprovalError::Unknown { .. })
        ));
    }
    assert_eq!(gate.show(&id).await.unwrap().state, ApprovalState::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_racing_replicas_exactly_one_spends_an_approval() {
    let world = Arc::new(World::new().await);
    let id = id_of(&ask(&world.replica(), &send(1, "bob@example.com")).await);
    world.replica().approve(&id, &alice(), "").await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let world = world.clone();
            tokio::spawn(
                async move { ask(&world.replica(), &send(10 + i, "bob@example.com")).await },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(
        answers.iter().filter(|a| *a == "approved").count(),
        1,
        "{answers:?}"
    );
    // The losers are a replay: they all wait on one new request.
    let mut new: Vec<_> = answers
        .iter()
        .filter(|a| *a != "approved")
        .map(|a| id_of(a))
        .collect();
    new.sort();
    new.dedup();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_ne!(new[0], id);
    let pending = world
        .replica()
        .list(ApprovalFilter::Pending, None, 100)
        .await
        .unwrap();
    assert_eq!(pending.iter().map(|r| &r.id).collect::<Vec<_>>(), [&new[0]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_asking_at_once_share_one_request() {
    let world = Arc::new(World::new().await);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let world = world.clone();
            tokio::spawn(async move { ask(&world.replica(), &send(i, "bob@example.com")).await })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(id_of(&t.await.unwrap()));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let all = world
        .replica()
        .list(ApprovalFilter::All, None, 100)
        .await
        .unwrap();
    // Duplicates a race made are withdrawn, and not listed.
    assert_eq!(all.iter().map(|r| &r.id).collect::<Vec<_>>(), [&ids[0]]);
}

#[tokio::test]
async fn requests_and_decisions_survive_a_restart() {
    let world = World::new().await;
    let before = world.replica();
    let waiting = id_of(&ask(&before, &send(1, "bob@example.com")).await);
    let refused = id_of(&ask(&before, &send(2, "mallory@evil.test")).await);
    before.deny(&refused, &alice(), "no").await.unwrap();
    drop(before);

    let after = world.replica();
    let pending = after.list(ApprovalFilter::Pending, None, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&waiting]
    );
    let all = after.list(ApprovalFilter::All, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    // Paging: after the first, the second.
    let next = after
        .list(ApprovalFilter::All, Some(&all[0].id), 10)
        .await
        .unwrap();
    assert_eq!(next.iter().map(|r| &r.id).collect::<Vec<_>>(), [&all[1].id]);
    assert_eq!(
        after.show(&refused).await.unwrap().decision.unwrap().by,
        "alice"
    );
    assert_eq!(
        ask(&after, &send(3, "bob@example.com")).await,
        format!("pending {waiting}")
    );
    after.approve(&waiting, &alice(), "").await.unwrap();
    // A third process spends it.
    assert_eq!(
        ask(&world.replica(), &send(4, "bob@example.com")).await,
        "approved"
    );
    assert!(
        ask(&world.replica(), &send(5, "mallory@evil.test"))
            .await
            .contains("denied by `alice`: no")
    );
}

#[tokio::test(start_paused = true)]
async fn a_decision_during_the_hold_completes_the_call() {
    let world = World::with(ApprovalSettings {
        hold: Duration::from_secs(30),
        ..ApprovalSettings::default()
    })
    .await;
    let here = Arc::new(world.replica());
    assert_eq!(here.hold(), Duration::from_secs(30));
    // Decided on this replica (woken at once), then on another (found by polling).
    for same_replica in [true, false] {
        let gate = here.clone();
        let to = if same_replica {
            "bob@example.com"
        } else {
            "carol@example.com"
        };
        let held = tokio::spawn(async move { ask(&gate, &send(1, to)).await });
        let id = loop {
            if let Some(r) = here
                .list(ApprovalFilter::Pending, None, 1)
                .await
                .unwrap()
                .pop()
            {
                break r.id;
            }
            tokio::task::yield_now().await;
        };
        let started = tokio::time::Instant::now();
        if same_replica {
            here.approve(&id, &alice(), "").await.unwrap();
        } else {
            world.replica().approve(&id, &alice(), "").await.unwrap();
        }
        assert_eq!(held.await.unwrap(), "approved");
        // In paused time: woken at once here, at the next poll from elsewhere,
        // and not at the end of the hold either way.
        let waited = if same_replica {
            Duration::ZERO
        } else {
            world.settings.poll
        };
        assert_eq!(started.elapsed(), waited);
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_decision_the_held_call_is_pending_with_its_id() {
    let world = World::with(ApprovalSettings {
        hold: Duration::from_secs(30),
        ..ApprovalSettings::default()
    })
    .await;
    let gate = world.replica();
    let started = tokio::time::Instant::now();
    let answer = ask(&gate, &send(1, "bob@example.com")).await;
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    let id = id_of(&answer);
    assert_eq!(gate.show(&id).await.unwrap().state, ApprovalState::Pending);
}

#[tokio::test]
async fn an_unavailable_store_fails_the_gate_closed() {
    let world = World::new().await;
    let store = FailingStore::over(world.store.clone());
    let gate =
        StoredApprovals::new(store.clone(), world.clock.clone(), world.settings.clone()).unwrap();
    let id = id_of(&ask(&gate, &send(1, "bob@example.com")).await);
    gate.approve(&id, &alice(), "").await.unwrap();
    store.down.store(true, Ordering::SeqCst);
    match gate
        .gate(send(2, "bob@example.com").request(), &ctx())
        .await
    {
        Err(e @ StageError::Unavailable { .. }) => assert!(e.retry_after().is_some()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        gate.approve(&id, &alice(), "").await,
        Err(ApprovalError::Store { .. })
    ));
    // Nothing was spent while the store was down.
    store.down.store(false, Ordering::SeqCst);
    assert_eq!(ask(&gate, &send(3, "bob@example.com")).await, "approved");
}

#[tokio::test]
async fn a_damaged_or_misfiled_record_fails_closed() {
    let world = World::new().await;
    let gate = world.replica();
    let p = send(1, "bob@example.com");
    let id = id_of(&ask(&gate, &p).await);
    gate.approve(&id, &alice(), "").await.unwrap();
    // Point the index of another request at this approved record.
    let other = send(2, "mallory@evil.test");
    world
        .store
        .insert(
            APPROVAL_DIGESTS,
            &other.request().digest().to_hex(),
            &json!({"id": id}),
        )
        .await
        .unwrap();
    assert!(gate.gate(other.request(), &ctx()).await.is_err());
    assert_eq!(ask(&gate, &p).await, "approved");
}

#[tokio::test]
async fn settings_are_checked() {
    let world = World::new().await;
    let check = |settings: ApprovalSettings, expected: Result<(), SettingsError>| {
        let got =
            StoredApprovals::new(world.store.clone(), world.clock.clone(), settings).map(|_| ());
        assert_eq!(got, expected);
    };
    check(ApprovalSettings::default(), Ok(()));
    check(
        ApprovalSettings {
            ttl: Duration::ZERO,
            ..ApprovalSettings::default()
        },
        Err(SettingsError::Ttl),
    );
    check(
        ApprovalSettings {
            poll: Duration::ZERO,
            ..ApprovalSettings::default()
        },
        Err(SettingsError::Poll),
    );
    check(
        ApprovalSettings {
            poll: Duration::from_secs(61),
            ..ApprovalSettings::default()
        },
        Err(SettingsError::Poll),
    );
    check(
        ApprovalSettings {
            max_argument_bytes: 1,
            ..ApprovalSettings::default()
        },
        Err(SettingsError::MaxArgumentBytes),
    );
}

#[test]
fn ids_are_unguessable_and_ordered_by_time() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let a = record::new_id(t).unwrap();
    let b = record::new_id(t).unwrap();
    let later = record::new_id(t + Duration::from_millis(1)).unwrap();
    assert!(record::is_id(&a) && record::is_id(&b));
    assert_ne!(a, b);
    assert_eq!(a[..16], b[..16]);
    assert!(later > a && later > b);
}

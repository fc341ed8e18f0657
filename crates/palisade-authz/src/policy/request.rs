//! A call as Cedar sees it: the principal, action and resource entities, and the typed context.

use std::str::FromStr;
use std::time::UNIX_EPOCH;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use palisade_core::{CallKind, EffectClass, Principal, PrincipalKind, Target};
use serde_json::Value;

use super::PolicyRequest;

/// The entity type names of palisade's schema, parsed once.
#[derive(Debug, Clone)]
pub(super) struct Types {
    user: EntityTypeName,
    service: EntityTypeName,
    role: EntityTypeName,
    tenant: EntityTypeName,
    server: EntityTypeName,
    tool: EntityTypeName,
    resource: EntityTypeName,
    prompt: EntityTypeName,
    arguments: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    pub(super) fn new() -> Result<Self, String> {
        let name = |n: &str| EntityTypeName::from_str(n).map_err(|e| e.to_string());
        Ok(Self {
            user: name("User")?,
            service: name("Service")?,
            role: name("Role")?,
            tenant: name("Tenant")?,
            server: name("Server")?,
            tool: name("Tool")?,
            resource: name("Resource")?,
            prompt: name("Prompt")?,
            arguments: name("Arguments")?,
            action: name("Action")?,
        })
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    pub(super) fn action(&self, effect: EffectClass) -> EntityUid {
        Self::uid(&self.action, effect.as_str())
    }

    pub(super) fn principal_uid(&self, principal: &Principal) -> EntityUid {
        let ty = match principal.kind() {
            PrincipalKind::User => &self.user,
            PrincipalKind::Service => &self.service,
        };
        Self::uid(ty, principal.as_str())
    }

    fn principal(&self, principal: &Principal) -> Result<Entity, String> {
        let parents = principal
            .roles()
            .iter()
            .map(|role| Self::uid(&self.role, role))
            .chain(principal.tenant().map(|t| Self::uid(&self.tenant, t)));
        let attrs = [(
            "credential".to_owned(),
            RestrictedExpression::new_string(principal.credential().method().to_owned()),
        )];
        Entity::new_with_tags(self.principal_uid(principal), attrs, parents, [])
            .map_err(|e| e.to_string())
    }

    /// What a call of `kind` on `target` reaches, as an entity type and id
    /// and the thing's own name. A completion is judged as the prompt or
    /// resource it completes; a task's result as a read of its server (the
    /// call that created the task was judged when it was made).
    fn resource_of<'t>(
        &self,
        kind: CallKind,
        target: &'t Target,
    ) -> (&EntityTypeName, String, &'t str) {
        let server = &*target.server;
        let name = &*target.name;
        match kind {
            CallKind::Tool => (&self.tool, format!("{server}/{name}"), name),
            CallKind::Prompt => (&self.prompt, format!("{server}/{name}"), name),
            CallKind::Resource => (&self.resource, name.to_owned(), name),
            CallKind::Completion => {
                if let Some(prompt) = name.strip_prefix("ref/prompt:") {
                    (&self.prompt, format!("{server}/{prompt}"), prompt)
                } else if let Some(uri) = name.strip_prefix("ref/resource:") {
                    (&self.resource, uri.to_owned(), uri)
                } else {
                    (&self.server, server.to_owned(), server)
                }
            }
            CallKind::TaskResult => (&self.server, server.to_owned(), server),
        }
    }

    pub(super) fn resource_uid(&self, kind: CallKind, target: &Target) -> EntityUid {
        let (ty, id, _) = self.resource_of(kind, target);
        Self::uid(ty, &id)
    }

    /// The resource entity and its server's.
    fn resource(&self, kind: CallKind, target: &Target) -> Result<Vec<Entity>, String> {
        let server_uid = Self::uid(&self.server, &target.server);
        let attrs = |name: &str| {
            [
                (
                    "server".to_owned(),
                    RestrictedExpression::new_string(target.server.to_string()),
                ),
                (
                    "name".to_owned(),
                    RestrictedExpression::new_string(name.to_owned()),
                ),
            ]
        };
        let server = Entity::new_with_tags(server_uid.clone(), attrs(&target.server), [], [])
            .map_err(|e| e.to_string())?;
        let (ty, id, name) = self.resource_of(kind, target);
        let uid = Self::uid(ty, &id);
        if uid == server_uid {
            // The server itself is the resource (a task's result).
            return Ok(vec![server]);
        }
        let resource =
            Entity::new_with_tags(uid, attrs(name), [server_uid], []).map_err(|e| e.to_string())?;
        Ok(vec![resource, server])
    }

    /// The entities a call's judgement may look at, with or without its arguments.
    pub(super) fn entities(
        &self,
        principal: &Principal,
        kind: CallKind,
        target: &Target,
        arguments: Option<&Value>,
    ) -> Result<Entities, String> {
        let mut all = self.resource(kind, target)?;
        all.push(self.principal(principal)?);
        if let Some(arguments) = arguments {
            all.push(self.arguments(arguments)?);
        }
        Entities::from_entities(all, None).map_err(|e| e.to_string())
    }

    fn arguments_uid(&self) -> EntityUid {
        Self::uid(&self.arguments, "call")
    }

    /// One tag per top-level argument: a string as it is, anything else as
    /// its JSON text, so that `hasTag` is true for every argument given.
    fn arguments(&self, arguments: &Value) -> Result<Entity, String> {
        let tags: Vec<(String, RestrictedExpression)> = match arguments {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Null
                        | Value::Bool(_)
                        | Value::Number(_)
                        | Value::Array(_)
                        | Value::Object(_) => v.to_string(),
                    };
                    (k.clone(), RestrictedExpression::new_string(text))
                })
                .collect(),
            Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::String(_)
            | Value::Array(_) => Vec::new(),
        };
        Entity::new_with_tags(self.arguments_uid(), [], [], tags).map_err(|e| e.to_string())
    }

    /// The request for a call: principal, its effect class as the action,
    /// the resource, and the context the schema types.
    pub(super) fn request(
        &self,
        r: &PolicyRequest<'_>,
        constraint_names: &[String],
    ) -> Result<Request, String> {
        let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
        let record = |fields: Vec<(String, RestrictedExpression)>| {
            RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
        };
        let task = r.principal.task();
        let scopes = task
            .map(|t| t.scopes().iter().map(|s| string(s)).collect::<Vec<_>>())
            .unwrap_or_default();
        let secs = r
            .now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        let constraints = constraint_names
            .iter()
            .map(|name| {
                let passed = r
                    .constraints
                    .iter()
                    .filter(|(n, _)| n == name)
                    .all(|(_, passed)| *passed);
                (name.clone(), RestrictedExpression::new_bool(passed))
            })
            .collect();
        let context = Context::from_pairs([
            ("effect".to_owned(), string(r.effect.as_str())),
            ("kind".to_owned(), string(r.kind.as_str())),
            ("tool".to_owned(), string(r.exposed_name)),
            (
                "session".to_owned(),
                record(vec![(
                    "tainted".to_owned(),
                    RestrictedExpression::new_bool(r.tainted),
                )])?,
            ),
            (
                "task".to_owned(),
                record(vec![
                    (
                        "present".to_owned(),
                        RestrictedExpression::new_bool(task.is_some()),
                    ),
                    ("id".to_owned(), string(task.map(|t| t.id()).unwrap_or(""))),
                    ("scopes".to_owned(), RestrictedExpression::new_set(scopes)),
                ])?,
            ),
            ("time".to_owned(), RestrictedExpression::new_long(secs)),
            (
                "hour".to_owned(),
                RestrictedExpression::new_long(secs.rem_euclid(86_400) / 3_600),
            ),
            ("constraints".to_owned(), record(constraints)?),
            (
                "args".to_owned(),
                RestrictedExpression::new_entity_uid(self.arguments_uid()),
            ),
        ])
        .map_err(|e| e.to_string())?;
        Request::new(
            self.principal_uid(r.principal),
            self.action(r.effect),
            self.resource_uid(r.kind, r.target),
            context,
            None,
        )
        .map_err(|e| e.to_string())
    }
}

//! A call as Cedar sees it: the principal, action and resource entities, and the typed context.

use std::str::FromStr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use cedar_policy_core::ast;
use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
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

/// What a call's judgement needs of its principal, built once per
/// principal and shared by its calls: its entity (with its roles and
/// tenant as parents) and the context's `task` record.
#[derive(Debug, Clone)]
pub(super) struct PrincipalParts {
    entity: Arc<ast::Entity>,
    task: ast::Value,
}

impl PrincipalParts {
    pub(super) fn task(&self) -> &ast::Value {
        &self.task
    }
}

/// A call's resource entity and its server's (one entity when the server
/// is the resource), built once per target.
pub(super) type ResourceParts = Arc<[Arc<ast::Entity>]>;

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

    pub(super) fn principal_parts(&self, principal: &Principal) -> Result<PrincipalParts, String> {
        let entity = self.principal(principal)?;
        Ok(PrincipalParts {
            entity: Arc::new(entity.as_ref().clone()),
            task: task_record(principal),
        })
    }

    pub(super) fn resource_parts(
        &self,
        kind: CallKind,
        target: &Target,
    ) -> Result<ResourceParts, String> {
        Ok(self
            .resource(kind, target)?
            .iter()
            .map(|e| Arc::new(e.as_ref().clone()))
            .collect())
    }

    /// The same entities as [`Types::entities`], from parts built earlier,
    /// without recomputing the transitive closure of the hierarchy.
    ///
    /// Why that is sound: Cedar needs each entity's ancestors to be closed
    /// (an ancestor's ancestors listed too) and the hierarchy acyclic. The
    /// only parents here are a principal's `Role`s and `Tenant` and a
    /// resource's `Server`, and none of those has parents of its own (roles
    /// and tenants are not entities at all; a `Server` is built with none),
    /// so every hierarchy is one level deep: the parents are already all the
    /// ancestors, and no cycle can form. The uids cannot collide either:
    /// principal, resource, server and arguments have distinct entity types.
    /// `fast_entities_equal_the_computed_ones` checks both routes agree.
    pub(super) fn assemble(
        &self,
        principal: &PrincipalParts,
        resource: &[Arc<ast::Entity>],
        arguments: Option<&Value>,
    ) -> Result<Entities, String> {
        let mut all: Vec<Arc<ast::Entity>> = Vec::with_capacity(resource.len() + 2);
        all.push(Arc::clone(&principal.entity));
        all.extend(resource.iter().cloned());
        if let Some(arguments) = arguments {
            all.push(Arc::new(self.arguments_entity(arguments)));
        }
        CoreEntities::new()
            .add_entities(
                all,
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::all_available(),
            )
            .map(Entities::from)
            .map_err(|e| e.to_string())
    }

    /// The arguments entity built from plain values (what [`Types::arguments`]
    /// builds through restricted expressions, without evaluating them).
    fn arguments_entity(&self, arguments: &Value) -> ast::Entity {
        let tags = arguments
            .as_object()
            .into_iter()
            .flat_map(|map| map.iter())
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null
                    | Value::Bool(_)
                    | Value::Number(_)
                    | Value::Array(_)
                    | Value::Object(_) => v.to_string(),
                };
                (
                    k.as_str().into(),
                    ast::PartialValue::Value(ast::Value::from(text)),
                )
            });
        ast::Entity::new_with_attr_partial_value(
            self.arguments_uid().into(),
            [],
            Default::default(),
            Default::default(),
            tags,
        )
    }

    #[cfg(test)]
    /// The entities a call's judgement may look at, with or without its
    /// arguments, built from scratch (the reference for [`Types::assemble`]).
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

    #[cfg(test)]
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

    #[cfg(test)]
    /// The request for a call: principal, its effect class as the action,
    /// the resource, and the context the schema types.
    pub(super) fn request(
        &self,
        r: &PolicyRequest<'_>,
        constraint_names: &[String],
    ) -> Result<Request, String> {
        self.request_with(r, constraint_names, &task_record(r.principal))
    }

    /// [`Types::request`] with the principal's `task` record built earlier.
    ///
    /// The context is made of plain values rather than restricted
    /// expressions (nothing in it needs evaluating), and neither it nor the
    /// request is checked against the schema here: every field and type is
    /// fixed by this function, so what the check would find is found once by
    /// `requests_and_entities_conform_to_the_schema`, not on every call. A
    /// mismatch could only make a policy's evaluation fail, which denies
    /// (an errored forbid) or allows nothing (an errored permit).
    pub(super) fn request_with(
        &self,
        r: &PolicyRequest<'_>,
        constraint_names: &[String],
        task: &ast::Value,
    ) -> Result<Request, String> {
        let secs = r
            .now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        let constraints = constraint_names.iter().map(|name| {
            let passed = r
                .constraints
                .iter()
                .filter(|(n, _)| n == name)
                .all(|(_, passed)| *passed);
            (name.as_str(), ast::Value::from(passed))
        });
        let record = ast::Value::record(
            [
                ("effect", ast::Value::from(r.effect.as_str())),
                ("kind", ast::Value::from(r.kind.as_str())),
                ("tool", ast::Value::from(r.exposed_name)),
                (
                    "session",
                    ast::Value::record(
                        [
                            ("tainted", ast::Value::from(r.tainted)),
                            (
                                "sources",
                                ast::Value::set(
                                    r.taint_sources.iter().map(|s| ast::Value::from(s.as_str())),
                                    None,
                                ),
                            ),
                        ],
                        None,
                    ),
                ),
                ("task", task.clone()),
                ("time", ast::Value::from(secs)),
                ("hour", ast::Value::from(secs.rem_euclid(86_400) / 3_600)),
                ("constraints", ast::Value::record(constraints, None)),
                (
                    "args",
                    ast::Value::from(ast::EntityUID::from(self.arguments_uid())),
                ),
            ],
            None,
        );
        let context = match record.value {
            ast::ValueKind::Record(fields) => ast::Context::Value(fields),
            ast::ValueKind::Lit(_) | ast::ValueKind::Set(_) | ast::ValueKind::ExtensionValue(_) => {
                return Err("the context is not a record".to_owned());
            }
        };
        Request::new(
            self.principal_uid(r.principal),
            self.action(r.effect),
            self.resource_uid(r.kind, r.target),
            Context::from(context),
            None,
        )
        .map_err(|e| e.to_string())
    }
}

/// The context's `task` record: whether the call comes with a task token,
/// its id and scopes (empty without one).
fn task_record(principal: &Principal) -> ast::Value {
    let task = principal.task();
    let scopes = task
        .map(|t| {
            t.scopes()
                .iter()
                .map(|s| ast::Value::from(&**s))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    ast::Value::record(
        [
            ("present", ast::Value::from(task.is_some())),
            ("id", ast::Value::from(task.map_or("", |t| t.id()))),
            ("scopes", ast::Value::set(scopes, None)),
        ],
        None,
    )
}

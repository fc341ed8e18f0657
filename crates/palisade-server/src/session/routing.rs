//! Which upstream a prefixed name, a resource URI or a task belongs to.

use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS};
use serde_json::Value;

use super::Session;
use crate::upstream::lock;

impl Session {
    // ----------------------------------------------------------------- routing

    /// Finds the upstream of a prefixed name; returns it with the name it has there.
    pub(super) fn resolve<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        self.upstreams
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                name.strip_prefix(u.spec.prefix.as_str())
                    .map(|rest| (i, rest, u.spec.prefix.len()))
            })
            .filter(|(_, rest, _)| !rest.is_empty())
            .max_by_key(|(_, _, len)| *len)
            .map(|(i, rest, _)| (i, rest))
    }

    pub(super) fn route_uri(&self, uri: &str) -> Result<usize, ErrorObject> {
        if let Some(index) = self.single_upstream() {
            return Ok(index);
        }
        if let Some(index) = lock(&self.routing).catalog.route_uri(uri) {
            return Ok(index);
        }
        let serving: Vec<usize> = (0..self.upstreams.len())
            .filter(|i| {
                self.upstreams
                    .get(*i)
                    .is_some_and(|u| u.capability("resources").is_some())
            })
            .collect();
        match serving.as_slice() {
            [only] => Ok(*only),
            _ => Err(ErrorObject::new(
                INVALID_PARAMS,
                format!("no upstream is known to serve `{uri}`; list resources or templates first"),
            )),
        }
    }

    /// The upstream of a task this session created (`tasks/get`, `tasks/cancel`).
    pub(super) fn route_task(&self, params: Option<&Value>) -> Result<usize, ErrorObject> {
        let Some(task) = params.and_then(|p| p.get("taskId")).and_then(Value::as_str) else {
            return Err(ErrorObject::new(
                INVALID_PARAMS,
                "`params.taskId` must be a string",
            ));
        };
        lock(&self.routing)
            .tasks
            .get(task)
            .map(|(upstream, _creator)| upstream)
            .ok_or_else(|| {
                ErrorObject::new(
                    INVALID_PARAMS,
                    format!(
                        "no task `{}` was created in this session",
                        super::printable_name(task)
                    ),
                )
            })
    }
}

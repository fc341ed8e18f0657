//! Which upstream a prefixed name, a resource URI or a completion reference belongs to.

use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS};
use serde_json::{Map, Value, json};

use super::Session;
use super::listing::Listing;
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

    pub(super) fn route_named(
        &self,
        listing: Listing,
        params: Option<Value>,
    ) -> Result<(usize, Value), ErrorObject> {
        let mut params = object(params)?;
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let what = match listing {
            Listing::Tools => "tool",
            Listing::Prompts | Listing::Resources | Listing::Templates => "prompt",
        };
        let (index, inner) = self
            .resolve(&name)
            .ok_or_else(|| ErrorObject::new(INVALID_PARAMS, format!("unknown {what} `{name}`")))?;
        params.insert("name".into(), json!(inner));
        Ok((index, Value::Object(params)))
    }

    pub(super) fn route_uri(&self, uri: &str) -> Result<usize, ErrorObject> {
        if let Some(index) = self.single_upstream() {
            return Ok(index);
        }
        let routing = lock(&self.routing);
        if let Some(index) = routing.resources.get(uri) {
            return Ok(*index);
        }
        let by_template = routing
            .templates
            .iter()
            .filter(|(prefix, _)| !prefix.is_empty() && uri.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len());
        if let Some((_, index)) = by_template {
            return Ok(*index);
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

    pub(super) fn route_completion(
        &self,
        params: Option<Value>,
    ) -> Result<(usize, Value), ErrorObject> {
        let mut params = object(params)?;
        let Some(Value::Object(mut reference)) = params.remove("ref") else {
            return Err(ErrorObject::new(
                INVALID_PARAMS,
                "`params.ref` must be an object",
            ));
        };
        let index = match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let (index, inner) = self.resolve(&name).ok_or_else(|| {
                    ErrorObject::new(INVALID_PARAMS, format!("unknown prompt `{name}`"))
                })?;
                reference.insert("name".into(), json!(inner));
                index
            }
            Some("ref/resource") => {
                let uri = reference
                    .get("uri")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.route_uri(&uri)?
            }
            _ => {
                return Err(ErrorObject::new(
                    INVALID_PARAMS,
                    "`params.ref.type` must be `ref/prompt` or `ref/resource`",
                ));
            }
        };
        params.insert("ref".into(), Value::Object(reference));
        Ok((index, Value::Object(params)))
    }
}

/// A request's `params`, which these methods need as an object.
fn object(params: Option<Value>) -> Result<Map<String, Value>, ErrorObject> {
    match params {
        Some(Value::Object(params)) => Ok(params),
        Some(_) | None => Err(ErrorObject::new(
            INVALID_PARAMS,
            "`params` must be an object",
        )),
    }
}

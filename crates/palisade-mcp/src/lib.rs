//! The MCP wire: the only crate that turns bytes into MCP messages and back.
//!
//! - [`jsonrpc`]: JSON-RPC 2.0 messages, parsed strictly, with errors that say what was wrong;
//! - [`method`]: every MCP method, by direction, and which hook each passes;
//! - [`protocol`]: protocol revisions, method names as constants, HTTP header names;
//! - [`framing`]: newline-delimited framing for stdio, with a size limit;
//! - [`sse`]: server-sent events, both directions;
//! - `redact`: how a message passes palisade's redaction seam.
#![forbid(unsafe_code)]

pub mod framing;
pub mod jsonrpc;
pub mod method;
pub mod protocol;
mod redact;
pub mod sse;

pub use jsonrpc::{ErrorObject, Message, Notification, ParseError, Request, RequestId, Response};
pub use method::{
    ClientNotification, ClientRequest, RequestClass, ServerNotification, ServerRequest,
    ServerRequestClass,
};

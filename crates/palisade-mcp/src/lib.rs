//! The MCP wire: the only crate that turns bytes into MCP messages and back.
//!
//! - [`jsonrpc`]: JSON-RPC 2.0 messages, parsed strictly, with errors that say what was wrong;
//! - [`protocol`]: protocol revisions, method names, HTTP header names;
//! - [`framing`]: newline-delimited framing for stdio, with a size limit;
//! - [`sse`]: server-sent events, both directions.

pub mod framing;
pub mod jsonrpc;
pub mod protocol;
pub mod sse;

pub use jsonrpc::{ErrorObject, Message, Notification, ParseError, Request, RequestId, Response};

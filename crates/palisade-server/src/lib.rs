//! palisade's runtime: the MCP gateway, as a stdio wrapper and as a Streamable HTTP aggregator.
//!
//! - [`config`]: `palisade.toml`, raw and validated;
//! - [`access`]: layer 1 as the transports ask it (who is calling);
//! - [`gateway`]: shared state and session opening;
//! - [`session`]: routing between one client and its upstreams;
//! - `upstream`: connections to upstream servers (stdio processes, remote HTTP);
//! - [`http`]: the Streamable HTTP listener;
//! - [`stdio`]: the stdio server for `palisade mcp`;
//! - [`denial`]: how a denial reads to the agent;
//! - [`logging`]: log lines through the redaction seam;
//! - `printable`: text from outside made fit to show.
#![forbid(unsafe_code)]

pub mod access;
pub mod alerts;
pub mod config;
pub mod denial;
pub mod egress;
pub mod filter;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod logging;
mod printable;
pub mod sandbox;
pub mod secrets;
pub mod session;
pub mod stdio;
pub mod tls;
mod upstream;

pub use config::{Config, ConfigError};
pub use gateway::{Gateway, Mode, StartError};

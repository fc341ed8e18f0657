//! Tools that measure palisade's gateway overhead against a direct connection.
//!
//! Two binaries share this library:
//! - `fast-upstream`: a minimal MCP server with one `echo` tool, over stdio and
//!   Streamable HTTP, fast enough that the gateway (not the upstream) is what a
//!   benchmark measures ([`upstream`]);
//! - `mcp-load`: a load generator that opens an MCP session, sends `tools/call`
//!   and reports latency percentiles and throughput ([`load`], [`stats`]), and
//!   renders the comparison table ([`table`]).
//!
//! `scripts/bench-gateway` drives both; `docs/benchmarks.md` records results.

pub mod load;
pub mod stats;
pub mod table;
pub mod upstream;

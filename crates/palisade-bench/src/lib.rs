//! Tools that measure palisade's gateway overhead against a direct connection.
//!
//! Two binaries share this library:
//! - `fast-upstream`: a minimal MCP server with one `echo` tool, over stdio and
//!   Streamable HTTP, fast enough that the gateway (not the upstream) is what a
//!   benchmark measures ([`upstream`]);
//! - `mcp-load`: a load generator that opens an MCP session, sends `tools/call`
//!   and reports latency percentiles and throughput ([`load`], [`stats`]), and
//!   renders the comparison tables ([`table`], and [`gateways`] for gateways
//!   side by side).
//!
//! `scripts/bench-gateway` drives both; `docs/benchmarks.md` records results.
#![forbid(unsafe_code)]

pub mod gateways;
pub mod load;
pub mod stats;
pub mod table;
pub mod upstream;

/// A runtime of `threads` worker threads; one runs everything on the calling
/// thread, so a tool started with one takes at most one core from what it measures.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

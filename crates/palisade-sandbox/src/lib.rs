//! Layer 3: fresh one-time Linux sandboxes for every tool execution (not yet built).
//!
//! The only crate allowed `unsafe` (in small functions, each with a
//! `// SAFETY:` comment) and the only one that will create tool processes.
//! Until it lands, stdio upstreams are spawned unsandboxed by the server, and
//! `palisade check` reports that degraded mode.

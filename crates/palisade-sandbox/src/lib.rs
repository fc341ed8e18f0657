//! Layer 3: fresh one-time Linux sandboxes for every tool execution (not yet built); today, children that die with palisade.
//!
//! This is the only crate where `unsafe` code is allowed, and only in small
//! functions: the workspace denies `unsafe_code` (every other crate root
//! forbids it), so each `unsafe` block here is annotated
//! `#[expect(unsafe_code, reason = "...")]` and carries a `// SAFETY:` comment
//! saying why it is sound (`clippy::undocumented_unsafe_blocks` is denied).
//! It is also the only crate that will create tool processes. Until it
//! lands, stdio upstreams are spawned unsandboxed by the server, and
//! `palisade check` reports that degraded mode.

mod parent;

pub use parent::die_with_parent;

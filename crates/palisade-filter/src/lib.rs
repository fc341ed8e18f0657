//! Layer 4: filtering of content toward the model (inbound) and toward the world (outbound).
//!
//! Inbound, every text a tool, resource or prompt returns is reduced to what
//! a person would see (HTML's hidden text removed and reported), normalized
//! (NFKC, invisible characters removed, smuggled tag text decoded), decoded
//! where it hides encodings, scanned for prompt injection with weighted
//! rules over the text and its confusable skeleton, and spotlighted with a
//! per-request boundary. Outbound, arguments are checked for secrets, PII
//! and URLs that would carry data away. Tool responses are projected onto
//! their output schema; tool definitions are pinned by hash.
#![forbid(unsafe_code)]

pub mod decode;
pub mod html;
pub mod inbound;
pub mod injection;
pub mod memory;
pub mod outbound;
pub mod pii;
pub mod pins;
pub mod policy;
pub mod quarantine;
pub mod scan;
pub mod schema;
pub mod unicode;
pub mod urls;

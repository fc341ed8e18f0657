//! The head of one chain of entries, shared by the stores: what the next entry follows and what the next checkpoint covers.
//!
//! A store (the files, a PostgreSQL node) keeps its entries and checkpoints
//! where it likes; how the chain advances is decided here once: an entry is
//! framed after the last one, an entry read back is checked against the
//! head before it is adopted, and a checkpoint signs the entries since the
//! one before. `bytes` counts each entry's line and its newline, in every
//! store, so that a store's rows written out as lines verify as a file.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use palisade_core::Clock;

use crate::checkpoint::{self, Body, Checkpoint};
use crate::entry::{self, CanonicalRecord, GENESIS, Hash};
use crate::merkle;

/// The chain's head.
#[derive(Debug)]
pub(crate) struct Head {
    /// The log's id, chosen at random when checkpoint 0 is written.
    pub log_id: String,
    /// The next entry's sequence number.
    pub seq: u64,
    /// The last entry's hash (the next one's `prev`).
    pub last: Hash,
    /// The length of the entries as lines, up to the last entry.
    pub bytes: u64,
    /// Hashes of the entries since the last checkpoint.
    pub pending: Vec<Hash>,
    /// The last checkpoint: its index and the hash of its line.
    pub checkpoint_n: u64,
    pub checkpoint_hash: Hash,
    /// Bytes of a torn entry cut off since the last checkpoint.
    pub torn_bytes: Option<u64>,
    scratch: Vec<Hash>,
}

/// Where the head stood, to go back to when a write failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    seq: u64,
    last: Hash,
    bytes: u64,
    pending: usize,
}

impl Mark {
    /// The next entry's sequence number where the chain stood.
    pub fn seq(self) -> u64 {
        self.seq
    }
}

impl Head {
    /// A new chain, with a fresh random id; its checkpoint 0 is still to be written.
    pub fn start() -> Result<Self, String> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| format!("no randomness for the log's id: {e}"))?;
        Ok(Self {
            log_id: hex::encode(id),
            seq: 0,
            last: GENESIS,
            bytes: 0,
            pending: Vec::new(),
            checkpoint_n: 0,
            checkpoint_hash: [0; 32],
            torn_bytes: None,
            scratch: Vec::new(),
        })
    }

    /// The head as the checkpoint `line` (the chain's last) left it.
    pub fn resume(line: &[u8], key: &ed25519_dalek::VerifyingKey) -> Result<Self, String> {
        let last = Checkpoint::parse(line, Some(key)).map_err(|e| e.to_string())?;
        let body = last.body;
        Ok(Self {
            last: checkpoint::decode_hash(&body.last)
                .ok_or("the last checkpoint's `last` is not a hash")?,
            log_id: body.log,
            seq: body.end,
            bytes: body.bytes,
            pending: Vec::new(),
            checkpoint_n: body.n,
            checkpoint_hash: checkpoint::line_hash(line),
            torn_bytes: None,
            scratch: Vec::new(),
        })
    }

    pub fn mark(&self) -> Mark {
        Mark {
            seq: self.seq,
            last: self.last,
            bytes: self.bytes,
            pending: self.pending.len(),
        }
    }

    /// Goes back to `mark`: the entries framed since were not stored.
    pub fn rewind(&mut self, mark: Mark) {
        self.seq = mark.seq;
        self.last = mark.last;
        self.bytes = mark.bytes;
        self.pending.truncate(mark.pending);
    }

    /// Frames `record` as the next entry and advances past it; returns the
    /// line, without its newline.
    pub fn frame(&mut self, record: &CanonicalRecord) -> Vec<u8> {
        let line = entry::frame_canonical(&self.last, self.seq, record);
        self.last = entry::leaf_hash(&line);
        self.pending.push(self.last);
        self.seq += 1;
        self.bytes += line.len() as u64 + 1;
        line
    }

    /// Adopts an entry another writer stored (or one found after the last
    /// checkpoint at open), once it is checked to follow the head.
    pub fn adopt(&mut self, line: &[u8]) -> Result<(), String> {
        let framed =
            entry::parse(line).map_err(|e| format!("entry {} is not an entry: {e}", self.seq))?;
        if framed.seq != self.seq || framed.prev != self.last {
            return Err(format!(
                "the entry after entry {} does not follow it (it says seq {}{})",
                self.seq.wrapping_sub(1),
                framed.seq,
                if framed.prev == self.last {
                    ""
                } else {
                    " and names another entry as its predecessor"
                }
            ));
        }
        self.last = entry::leaf_hash(line);
        self.pending.push(self.last);
        self.seq += 1;
        self.bytes += line.len() as u64 + 1;
        Ok(())
    }

    /// Signs checkpoint `n` over the pending entries; returns its line,
    /// without its newline. The head moves on only with
    /// [`Head::checkpointed`], once the line is stored.
    pub fn checkpoint(&mut self, n: u64, key: &SigningKey, clock: &Arc<dyn Clock>) -> Vec<u8> {
        let first = self.seq - self.pending.len() as u64;
        let root = merkle::root_with(&self.pending, &mut self.scratch);
        let body = Body {
            n,
            log: self.log_id.clone(),
            first,
            end: self.seq,
            bytes: self.bytes,
            root: hex::encode(root),
            last: hex::encode(self.last),
            prev: hex::encode(if n == 0 {
                [0; 32]
            } else {
                self.checkpoint_hash
            }),
            time: humantime::format_rfc3339_micros(clock.wall()).to_string(),
            key: hex::encode(key.verifying_key().as_bytes()),
            torn_bytes: self.torn_bytes,
        };
        body.sign(key).line()
    }

    /// Checkpoint `n`, whose line is `line`, is stored.
    pub fn checkpointed(&mut self, n: u64, line: &[u8]) {
        self.checkpoint_n = n;
        self.checkpoint_hash = checkpoint::line_hash(line);
        self.pending.clear();
        self.torn_bytes = None;
    }
}

//! Verification of a log or a range of it, and inclusion proofs for one entry.
//!
//! Verification reads the checkpoints first (each signed by the expected
//! key, numbered without gaps, each naming the one before by hash, their
//! ranges adjoining), then the entries they cover (each framed, numbered in
//! order, naming the entry before it by hash, their Merkle root and last
//! hash those of their checkpoint, their byte length the one it states),
//! then what follows the last checkpoint. It stops at the first break and
//! says where: the entry's sequence number and line, or the checkpoint's
//! index and line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint};
use crate::entry::{self, GENESIS, Hash};
use crate::log::Paths;
use crate::merkle;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The key checkpoints must be signed by. Without one, the key in
    /// checkpoint 0 is taken, which shows only that the log is consistent
    /// with itself.
    pub key: Option<VerifyingKey>,
    /// Check entries from this sequence number on (the checkpoints are always
    /// checked in full).
    pub from: Option<u64>,
    /// … up to and including this one.
    pub to: Option<u64>,
    /// A copy of the checkpoints kept elsewhere, to compare with the log's.
    pub copy: Option<PathBuf>,
}

/// What a verification that found nothing wrong covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The log's id (from checkpoint 0).
    pub log: String,
    /// The key the checkpoints are signed with (hex).
    pub key: String,
    /// Whether that key was given, or only read from the log itself.
    pub key_given: bool,
    pub checkpoints: u64,
    /// Entries checked against their checkpoints.
    pub entries: u64,
    /// The entries in the log in all, signed or not.
    pub total: u64,
    /// Entries after the last checkpoint: chained correctly, not yet signed.
    pub unsigned_tail: u64,
    /// The time of the last checkpoint.
    pub last_checkpoint: String,
    /// The checkpoints compared with the copy, if one was given.
    pub copy_compared: Option<u64>,
}

/// Where the log breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{where_}: {detail}")]
pub struct Break {
    /// `entry 41 (audit.jsonl line 42)`, `checkpoint 3 (… line 4)`, a file.
    #[serde(rename = "where")]
    pub where_: String,
    pub detail: String,
}

fn brk(where_: impl Into<String>, detail: impl Into<String>) -> Break {
    Break {
        where_: where_.into(),
        detail: detail.into(),
    }
}

fn io_break(path: &Path, e: &std::io::Error) -> Break {
    brk(
        format!("`{}`", path.display()),
        format!("cannot read it: {e}"),
    )
}

/// Reads a file's whole lines; a final line without a newline (being
/// written right now, or torn by a crash) is left out and its length returned.
fn whole_lines(path: &Path) -> Result<(Vec<Vec<u8>>, usize), Break> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io_break(path, &e))?;
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = bytes.len() - end;
    bytes.truncate(end);
    let lines = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Ok((lines, torn))
}

/// The checkpoints, each checked on its own and against the one before.
struct Chain {
    checkpoints: Vec<Checkpoint>,
    lines: Vec<Vec<u8>>,
    key: VerifyingKey,
}

fn read_chain(paths: &Paths, key: Option<&VerifyingKey>) -> Result<Chain, Break> {
    let file = &paths.checkpoints;
    let at = |i: usize| format!("checkpoint {i} (`{}` line {})", file.display(), i + 1);
    let (lines, _) = whole_lines(file)?;
    let Some(first) = lines.first() else {
        return Err(brk(
            format!("`{}`", file.display()),
            "there are no checkpoints: checkpoint 0 is written when a log is started, so this file was emptied or is not an audit log's",
        ));
    };
    let key = match key {
        Some(key) => *key,
        None => {
            let named = Checkpoint::parse(first, None).map_err(|e| brk(at(0), e.to_string()))?;
            checkpoint::parse_key(&named.body.key).map_err(|e| brk(at(0), e.to_string()))?
        }
    };
    let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(lines.len());
    let mut prev_hash = [0u8; 32];
    for (i, line) in lines.iter().enumerate() {
        let c = Checkpoint::parse(line, Some(&key)).map_err(|e| brk(at(i), e.to_string()))?;
        let b = &c.body;
        if b.n != i as u64 {
            return Err(brk(
                at(i),
                format!(
                    "it is numbered {} where checkpoint {i} belongs: checkpoints were removed, inserted or reordered",
                    b.n
                ),
            ));
        }
        if checkpoint::decode_hash(&b.prev) != Some(prev_hash) {
            return Err(brk(
                at(i),
                "it does not name the checkpoint before it by hash: that checkpoint was changed or replaced",
            ));
        }
        match checkpoints.last() {
            None => {
                if b.first != 0 || b.end != 0 || b.bytes != 0 {
                    return Err(brk(at(i), "checkpoint 0 must cover nothing"));
                }
            }
            Some(p) => {
                let p = &p.body;
                if b.log != p.log {
                    return Err(brk(
                        at(i),
                        format!("it belongs to log {}, not to log {}", b.log, p.log),
                    ));
                }
                if b.first != p.end || b.end < b.first || b.bytes < p.bytes {
                    return Err(brk(
                        at(i),
                        format!(
                            "its range (entries {}..{}, up to byte {}) does not continue checkpoint {}'s (up to entry {}, byte {})",
                            b.first, b.end, b.bytes, p.n, p.end, p.bytes
                        ),
                    ));
                }
            }
        }
        prev_hash = checkpoint::line_hash(line);
        checkpoints.push(c);
    }
    Ok(Chain {
        checkpoints,
        lines,
        key,
    })
}

/// Compares the log's checkpoints with a copy kept elsewhere.
fn compare_copy(chain: &Chain, copy: &Path) -> Result<u64, Break> {
    let (lines, _) = whole_lines(copy)?;
    let mut compared = 0;
    for (i, line) in lines.iter().enumerate() {
        let at = format!("checkpoint copy `{}` line {}", copy.display(), i + 1);
        let c = Checkpoint::parse(line, Some(&chain.key)).map_err(|e| brk(&at, e.to_string()))?;
        let n = c.body.n;
        let Some(ours) = usize::try_from(n).ok().and_then(|n| chain.lines.get(n)) else {
            return Err(brk(
                at,
                format!(
                    "the copy holds checkpoint {n}, but the log's checkpoints end at {}: the log's tail was removed or rewritten",
                    chain.lines.len().saturating_sub(1)
                ),
            ));
        };
        if ours != line {
            return Err(brk(
                at,
                format!(
                    "checkpoint {n} in the log differs from its copy: the log's checkpoints were rewritten"
                ),
            ));
        }
        compared += 1;
    }
    Ok(compared)
}

/// Reads entry lines in order from a byte offset, checking each frame.
struct Entries {
    reader: BufReader<File>,
    path: PathBuf,
    line_no: u64,
    offset: u64,
    line: Vec<u8>,
}

impl Entries {
    fn open(path: &Path, offset: u64, line_no: u64) -> Result<Self, Break> {
        let mut file = File::open(path).map_err(|e| io_break(path, &e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_break(path, &e))?;
        Ok(Self {
            reader: BufReader::with_capacity(1 << 20, file),
            path: path.to_owned(),
            line_no,
            offset,
            line: Vec::new(),
        })
    }

    fn at(&self, seq: u64) -> String {
        format!(
            "entry {seq} (`{}` line {})",
            self.path.display(),
            self.line_no
        )
    }

    /// Reads the next whole line into `self.line`; `false` at the end (a
    /// torn last line included).
    fn advance(&mut self) -> Result<bool, Break> {
        self.line.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|e| io_break(&self.path, &e))?;
        if n == 0 || self.line.last() != Some(&b'\n') {
            return Ok(false);
        }
        self.line_no += 1;
        self.offset += n as u64;
        self.line.pop();
        Ok(true)
    }

    /// Reads entry `seq`, which must name `prev`; returns its hash. Error
    /// texts are made only when there is an error: this runs per entry.
    fn expect(&mut self, seq: u64, prev: &Hash, within: &str) -> Result<Option<Hash>, Break> {
        if !self.advance()? {
            return Ok(None);
        }
        let (line, path, line_no) = (&self.line, &self.path, self.line_no);
        let at = || format!("entry {seq} (`{}` line {line_no})", path.display());
        let framed =
            entry::parse(line).map_err(|e| brk(at(), format!("it is not an entry: {e}")))?;
        if framed.seq != seq {
            return Err(brk(
                at(),
                format!(
                    "the line holds entry {} where entry {seq} belongs{within}: entries were removed, inserted or reordered",
                    framed.seq
                ),
            ));
        }
        if framed.prev != *prev {
            return Err(brk(
                at(),
                format!(
                    "it does not name entry {}'s hash as its predecessor: entry {} was altered, or this entry's link was",
                    seq.wrapping_sub(1),
                    seq.wrapping_sub(1)
                ),
            ));
        }
        Ok(Some(entry::leaf_hash(line)))
    }
}

/// Checks the entries of consecutive checkpoints, each paired with the
/// checkpoint before it; returns how many entries it checked.
fn check_checkpoints(path: &Path, work: &[(&checkpoint::Body, &Checkpoint)]) -> Result<u64, Break> {
    let mut checked = 0u64;
    let mut leaves: Vec<Hash> = Vec::new();
    let mut scratch = Vec::new();
    let mut entries: Option<Entries> = None;
    for (p, c) in work {
        let b = &c.body;
        let reader = match &mut entries {
            Some(r) if r.offset == p.bytes => r,
            _ => entries.insert(Entries::open(path, p.bytes, p.end)?),
        };
        let mut last = checkpoint::decode_hash(&p.last).unwrap_or(GENESIS);
        leaves.clear();
        let within = format!(" (checkpoint {} covers {}..{})", b.n, b.first, b.end);
        for seq in b.first..b.end {
            let Some(hash) = reader.expect(seq, &last, &within)? else {
                return Err(brk(
                    reader.at(seq),
                    format!(
                        "the log ends before it, but checkpoint {} covers entries up to {}: entries were removed",
                        b.n,
                        b.end - 1
                    ),
                ));
            };
            last = hash;
            leaves.push(hash);
        }
        if reader.offset != b.bytes {
            return Err(brk(
                format!("checkpoint {}", b.n),
                format!(
                    "its entries end at byte {} of `{}`, not at byte {} as it says: entries {}..{} were changed in length",
                    reader.offset,
                    path.display(),
                    b.bytes,
                    b.first,
                    b.end
                ),
            ));
        }
        if checkpoint::decode_hash(&b.last) != Some(last)
            || c.root() != Some(merkle::root_with(&leaves, &mut scratch))
        {
            return Err(brk(
                format!("checkpoint {}", b.n),
                format!(
                    "entries {}..{} do not match its Merkle root: they were rewritten together",
                    b.first, b.end
                ),
            ));
        }
        checked += b.end - b.first;
    }
    Ok(checked)
}

/// Verifies the log in `paths` (or the range `options` names).
pub fn verify(paths: &Paths, options: &Options) -> Result<Report, Break> {
    let chain = read_chain(paths, options.key.as_ref())?;
    let copy_compared = match &options.copy {
        Some(copy) => Some(compare_copy(&chain, copy)?),
        None => None,
    };
    let from = options.from.unwrap_or(0);
    let to = options.to.unwrap_or(u64::MAX);
    let mut work: Vec<(&checkpoint::Body, &Checkpoint)> = Vec::new();
    let mut prev_body: Option<&checkpoint::Body> = None;
    for c in &chain.checkpoints {
        let b = &c.body;
        let previous = prev_body.replace(b);
        let Some(p) = previous else { continue };
        if b.end == b.first {
            if b.bytes != p.bytes {
                return Err(brk(
                    format!("checkpoint {}", b.n),
                    "it covers no entries but moves the byte offset",
                ));
            }
            continue;
        }
        if b.end <= from || b.first > to {
            continue;
        }
        work.push((p, c));
    }
    // Checkpoints are independent once their chain is checked: the entries
    // are checked in two halves at once, and the earlier half's break, if
    // any, is the one reported.
    let total: u64 = work.iter().map(|(_, c)| c.body.end - c.body.first).sum();
    let mut running = 0u64;
    let split = work
        .iter()
        .position(|(_, c)| {
            running += c.body.end - c.body.first;
            running >= total / 2
        })
        .map_or(0, |i| i + 1);
    let (early, late) = work.split_at(split.min(work.len()));
    let (first, second) = std::thread::scope(|s| {
        let late = s.spawn(|| check_checkpoints(&paths.entries, late));
        let early = check_checkpoints(&paths.entries, early);
        (early, late.join())
    });
    let checked =
        first? + second.map_err(|_| brk("verification", "a verifying thread failed"))??;
    let last_cp = chain.checkpoints.last().map(|c| &c.body);
    let (signed_end, signed_bytes, mut last) = last_cp.map_or((0, 0, GENESIS), |b| {
        (
            b.end,
            b.bytes,
            checkpoint::decode_hash(&b.last).unwrap_or(GENESIS),
        )
    });
    // What follows the last checkpoint: chained, not yet signed.
    let mut tail = 0u64;
    let mut reader = Entries::open(&paths.entries, signed_bytes, signed_end)?;
    let mut seq = signed_end;
    while seq <= to
        && let Some(hash) = reader.expect(seq, &last, " (after the last checkpoint)")?
    {
        last = hash;
        seq += 1;
        tail += 1;
    }
    Ok(Report {
        log: last_cp.map(|b| b.log.clone()).unwrap_or_default(),
        key: hex::encode(chain.key.as_bytes()),
        key_given: options.key.is_some(),
        checkpoints: chain.checkpoints.len() as u64,
        entries: checked,
        total: signed_end + tail,
        unsigned_tail: tail,
        last_checkpoint: last_cp.map(|b| b.time.clone()).unwrap_or_default(),
        copy_compared,
    })
}

/// An inclusion proof: one entry, the signed checkpoint that covers it, and
/// the sibling hashes that join it to the checkpoint's root. It shows no
/// other entry's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    pub seq: u64,
    /// The entry's line, as in the log.
    pub entry: String,
    /// The covering checkpoint's line, as in the log.
    pub checkpoint: String,
    /// The entry's index in the checkpoint's tree, and the tree's size.
    pub index: u64,
    pub size: u64,
    /// The RFC 9162 audit path, leaf side first (hex).
    pub path: Vec<String>,
}

/// Builds the inclusion proof of entry `seq`.
pub fn prove(paths: &Paths, seq: u64, key: Option<&VerifyingKey>) -> Result<Proof, Break> {
    let chain = read_chain(paths, key)?;
    let found = chain
        .checkpoints
        .iter()
        .enumerate()
        .find(|(_, c)| c.body.first <= seq && seq < c.body.end);
    let Some((i, covering)) = found else {
        let end = chain.checkpoints.last().map_or(0, |c| c.body.end);
        return Err(brk(
            format!("entry {seq}"),
            if seq < end {
                "no checkpoint covers it".to_owned()
            } else {
                format!(
                    "no checkpoint covers it yet (the last covers entries up to {end}; a checkpoint follows within the checkpoint interval)"
                )
            },
        ));
    };
    let p = i
        .checked_sub(1)
        .and_then(|j| chain.checkpoints.get(j))
        .map(|c| &c.body)
        .ok_or_else(|| brk(format!("entry {seq}"), "checkpoint 0 covers nothing"))?;
    let b = &covering.body;
    let mut reader = Entries::open(&paths.entries, p.bytes, p.end)?;
    let mut last = checkpoint::decode_hash(&p.last).unwrap_or(GENESIS);
    let mut leaves = Vec::new();
    let mut line = None;
    for s in b.first..b.end {
        let hash = reader
            .expect(s, &last, "")?
            .ok_or_else(|| brk(reader.at(s), "the log ends before it"))?;
        if s == seq {
            line = Some(String::from_utf8_lossy(&reader.line).into_owned());
        }
        last = hash;
        leaves.push(hash);
    }
    if c_root(covering) != Some(merkle::root(&leaves)) {
        return Err(brk(
            format!("checkpoint {}", b.n),
            "its entries do not match its Merkle root: run `palisade audit verify`",
        ));
    }
    let index = seq - b.first;
    let path = usize::try_from(index)
        .ok()
        .and_then(|i| merkle::inclusion_proof(&leaves, i))
        .ok_or_else(|| brk(format!("entry {seq}"), "index out of range"))?;
    Ok(Proof {
        seq,
        entry: line.unwrap_or_default(),
        checkpoint: String::from_utf8_lossy(chain.lines.get(i).map_or(&[][..], |l| l)).into_owned(),
        index,
        size: b.end - b.first,
        path: path.iter().map(hex::encode).collect(),
    })
}

fn c_root(c: &Checkpoint) -> Option<Hash> {
    c.root()
}

/// Checks a proof on its own: the checkpoint's signature (by `key`), the
/// entry's sequence number, and the path from the entry to the root.
pub fn check_proof(proof: &Proof, key: &VerifyingKey) -> Result<checkpoint::Body, String> {
    let c = Checkpoint::parse(proof.checkpoint.as_bytes(), Some(key))
        .map_err(|e| format!("the checkpoint: {e}"))?;
    let framed = entry::parse(proof.entry.as_bytes()).map_err(|e| format!("the entry: {e}"))?;
    if framed.seq != proof.seq {
        return Err(format!(
            "the entry is entry {}, not entry {}",
            framed.seq, proof.seq
        ));
    }
    let b = &c.body;
    if proof.seq < b.first
        || proof.seq >= b.end
        || proof.index != proof.seq - b.first
        || proof.size != b.end - b.first
    {
        return Err(format!(
            "checkpoint {} covers entries {}..{}, which does not place entry {} at index {} of {}",
            b.n, b.first, b.end, proof.seq, proof.index, proof.size
        ));
    }
    let path: Option<Vec<Hash>> = proof
        .path
        .iter()
        .map(|h| checkpoint::decode_hash(h))
        .collect();
    let path = path.ok_or("a path element is not a hash")?;
    let root = c.root().ok_or("the checkpoint's root is not a hash")?;
    if !merkle::verify_inclusion(
        &entry::leaf_hash(proof.entry.as_bytes()),
        proof.index,
        proof.size,
        &path,
        &root,
    ) {
        return Err("the path does not lead from the entry to the checkpoint's root: the entry or the path was changed".into());
    }
    Ok(c.body)
}

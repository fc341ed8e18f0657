//! One log entry: a record framed with its sequence number and the hash of the entry before it.
//!
//! An entry is one line of canonical JSON ([`crate::canonical`]),
//! `{"prev":"<64 hex>","record":{…},"seq":N}`. JCS sorts the keys, so the
//! frame's two fixed fields sit at fixed places — the previous entry's hash
//! right after the opening brace, the sequence number right before the
//! closing one — and a verifier reads them without parsing the record.
//! An entry's hash is its RFC 6962 leaf hash, SHA-256(0x00 ‖ line).

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev` of entry 0.
pub const GENESIS: Hash = [0; 32];

const HEAD: &[u8] = b"{\"prev\":\"";
const RECORD: &[u8] = b"\",\"record\":";
const SEQ: &[u8] = b",\"seq\":";

/// Why a record could not become an entry.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the record is not JSON with a canonical form: {0}")]
    NotJson(crate::canonical::Invalid),
}

/// A record (JSON) in its canonical form, ready to be framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRecord(Vec<u8>);

impl CanonicalRecord {
    pub fn of(record: &[u8]) -> Result<Self, FrameError> {
        crate::canonical::from_slice(record)
            .map(Self)
            .map_err(FrameError::NotJson)
    }
}

/// The canonical line (no newline) of entry `seq` holding `record`.
pub fn frame(prev: &Hash, seq: u64, record: &[u8]) -> Result<Vec<u8>, FrameError> {
    Ok(frame_canonical(prev, seq, &CanonicalRecord::of(record)?))
}

/// [`frame`] for a record already canonical: what the writer does, in
/// order, once the record's canonical form was made beforehand.
pub fn frame_canonical(prev: &Hash, seq: u64, record: &CanonicalRecord) -> Vec<u8> {
    let mut line = Vec::with_capacity(record.0.len() + 100);
    line.extend_from_slice(HEAD);
    let mut hex = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(prev, &mut hex);
    line.extend_from_slice(&hex);
    line.extend_from_slice(RECORD);
    line.extend_from_slice(&record.0);
    line.extend_from_slice(SEQ);
    line.extend_from_slice(seq.to_string().as_bytes());
    line.push(b'}');
    line
}

/// What a line's frame says, read without parsing the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub prev: Hash,
    pub seq: u64,
    pub record: &'a [u8],
}

/// Why a line is not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("it does not start with `{{\"prev\":\"<64 hex digits>\",\"record\":`")]
    Head,
    #[error("it does not end with `,\"seq\":<number>}}`")]
    Tail,
}

/// Reads a line's frame (without its newline).
pub fn parse(line: &[u8]) -> Result<Framed<'_>, ParseError> {
    let rest = line.strip_prefix(HEAD).ok_or(ParseError::Head)?;
    let (prev_hex, rest) = rest.split_at_checked(64).ok_or(ParseError::Head)?;
    let mut prev = [0u8; 32];
    hex::decode_to_slice(prev_hex, &mut prev).map_err(|_| ParseError::Head)?;
    let rest = rest.strip_prefix(RECORD).ok_or(ParseError::Head)?;
    let body = rest.strip_suffix(b"}").ok_or(ParseError::Tail)?;
    let digits_at = body
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let (record_and_key, digits) = body.split_at_checked(digits_at).ok_or(ParseError::Tail)?;
    let record = record_and_key.strip_suffix(SEQ).ok_or(ParseError::Tail)?;
    // Canonical numbers have no leading zeros; an empty or padded number
    // would let two lines spell one sequence number.
    if digits.is_empty() || (digits.len() > 1 && digits.first() == Some(&b'0')) {
        return Err(ParseError::Tail);
    }
    let seq = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(ParseError::Tail)?;
    if record.is_empty() {
        return Err(ParseError::Head);
    }
    Ok(Framed { prev, seq, record })
}

/// The entry's hash: RFC 6962's leaf hash of its line.
pub fn leaf_hash(line: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(line);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_canonical_json_and_parses_back() {
        let record = br#"{"z": 1, "event": "call-intent", "a": {"y": [1.0, "x"], "b": null}}"#;
        let prev = leaf_hash(b"before");
        let line = frame(&prev, 41, record).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(crate::canonical::to_vec(&value).unwrap(), line);
        assert_eq!(value["seq"], 41);
        assert_eq!(value["record"]["event"], "call-intent");
        let framed = parse(&line).unwrap();
        assert_eq!(framed.prev, prev);
        assert_eq!(framed.seq, 41);
        assert_eq!(
            framed.record,
            br#"{"a":{"b":null,"y":[1,"x"]},"event":"call-intent","z":1}"#
        );
    }

    #[test]
    fn a_record_that_is_not_json_is_refused() {
        assert!(matches!(
            frame(&GENESIS, 0, b"{nope"),
            Err(FrameError::NotJson(_))
        ));
    }

    #[test]
    fn damaged_frames_are_refused() {
        let line = frame(&GENESIS, 7, br#"{"a":1}"#).unwrap();
        let text = String::from_utf8(line.clone()).unwrap();
        for (bad, why) in [
            (text.replacen("prev", "prew", 1), ParseError::Head),
            (
                text.replacen("\"record\"", "\"recorb\"", 1),
                ParseError::Head,
            ),
            (
                text.replace(",\"seq\":7}", ",\"seq\":07}"),
                ParseError::Tail,
            ),
            (text.replace(",\"seq\":7}", ",\"seq\":}"), ParseError::Tail),
            (text.replace(",\"seq\":7}", ",\"seq\":7"), ParseError::Tail),
            (
                text.replace(",\"seq\":7}", ",\"seq\":99999999999999999999999}"),
                ParseError::Tail,
            ),
            (text[..40].to_owned(), ParseError::Head),
            (text.replacen('0', "g", 1), ParseError::Head),
        ] {
            assert_eq!(parse(bad.as_bytes()), Err(why), "{bad}");
        }
        assert!(parse(&line).is_ok());
    }

    #[test]
    fn the_leaf_hash_is_rfc6962s() {
        // RFC 6962 leaf hash of the empty string: SHA-256 of the single byte 0x00.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}

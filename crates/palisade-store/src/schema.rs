//! The store's schema: numbered migrations, applied in order at open, in one transaction.
//!
//! Each step is written once per backend. A database records each step it
//! has applied in `palisade_schema`; one that records a step this build
//! does not know was migrated by a newer palisade, and is refused rather
//! than written with assumptions that may no longer hold.

use crate::StoreError;

/// One schema step, its SQL for each backend.
#[derive(Debug)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
}

/// The table recording applied steps, created before any step runs.
pub(crate) const SQLITE_SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS palisade_schema (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)";
pub(crate) const POSTGRES_SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS palisade_schema (
    version BIGINT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// Every step, in order, numbered from 1 without gaps (a test checks).
///
/// Keys sort bytewise on both backends (`COLLATE "C"` on PostgreSQL, whose
/// default collation depends on the server's locale), so `list` pages in
/// the same order everywhere: Rust's `str` order. Bodies are JSON text.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sqlite: "CREATE TABLE palisade_documents (
        collection TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (collection, key)
    ) WITHOUT ROWID",
    postgres: "CREATE TABLE palisade_documents (
        collection TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        version BIGINT NOT NULL,
        body TEXT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (collection, key)
    )",
}];

/// The steps a database at schema version `found` still needs; refuses
/// one newer than this build. `place` names the database in the error.
pub(crate) fn pending(found: i64, place: &str) -> Result<&'static [Migration], StoreError> {
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if found > latest {
        return Err(StoreError::Config(format!(
            "the state store {place} has schema version {found}, newer than this build of \
             palisade knows (up to {latest}): run the newer palisade that migrated it, or use \
             another store"
        )));
    }
    let done = MIGRATIONS.iter().take_while(|m| m.version <= found).count();
    Ok(MIGRATIONS.get(done..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::{MIGRATIONS, pending};
    use crate::StoreError;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i64::try_from(i).unwrap_or(-1) + 1);
        }
    }

    #[test]
    fn pending_is_what_is_left_and_a_newer_schema_is_refused() {
        assert_eq!(pending(0, "x").map(<[_]>::len).ok(), Some(MIGRATIONS.len()));
        let latest = i64::try_from(MIGRATIONS.len()).unwrap_or(0);
        assert_eq!(pending(latest, "x").map(<[_]>::len).ok(), Some(0));
        match pending(latest + 1, "`here`") {
            Err(StoreError::Config(m)) => {
                assert!(m.contains("`here`") && m.contains("newer"), "{m}");
            }
            other => panic!("a newer schema was accepted: {other:?}"),
        }
    }
}

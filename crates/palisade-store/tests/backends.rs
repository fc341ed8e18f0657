//! The store's contract, run on real databases: SQLite always, PostgreSQL at `PALISADE_TEST_POSTGRES`.
//!
//! One suite ([`contract`]) is run on every backend, given two handles on
//! one database (two replicas, or two processes, sharing state). What only
//! a backend can arrange (a schema from a newer build, a damaged row, the
//! file's permissions) is set up with that backend's own client, then
//! checked through the store.
//!
//! PostgreSQL: `scripts/postgres start` starts a throwaway server and
//! writes its URL to `.state/postgres/url`; `scripts/test` exports it as
//! `PALISADE_TEST_POSTGRES`. Without it these tests fail under CI (`CI`
//! set), and elsewhere print a notice and pass, so that `cargo test` works
//! on a machine without PostgreSQL. Each test creates its own database,
//! so tests run in parallel on one server.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use palisade_store::{Backend, Document, Store, StoreError, open};
use serde_json::{Value, json};
use tokio::task::JoinSet;

// ------------------------------------------------------------------ the contract

/// Everything every backend must do; `a` and `b` are two handles on one database.
async fn contract(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    insert_is_if_absent(&*a, &*b).await;
    replace_is_compare_and_set(&*a, &*b).await;
    list_pages_in_key_order(&*a).await;
    bodies_come_back_as_written(&*a, &*b).await;
    names_with_nul_are_refused(&*a).await;
    one_racer_wins(&a, &b).await;
    no_update_is_lost(&a, &b).await;
}

async fn insert_is_if_absent(a: &dyn Store, b: &dyn Store) {
    assert!(a.insert("keys", "k1", &json!({"n": 1})).await.unwrap());
    // The second insert, from either handle, changes nothing.
    assert!(!a.insert("keys", "k1", &json!({"n": 2})).await.unwrap());
    assert!(!b.insert("keys", "k1", &json!({"n": 3})).await.unwrap());
    let doc = b.get("keys", "k1").await.unwrap().unwrap();
    assert_eq!(doc, document("k1", 1, json!({"n": 1})));
    assert_eq!(a.get("keys", "absent").await.unwrap(), None);
    // Collections are separate namespaces.
    assert_eq!(a.get("other", "k1").await.unwrap(), None);
    assert!(a.insert("other", "k1", &json!("x")).await.unwrap());
    assert_eq!(
        a.get("keys", "k1").await.unwrap().unwrap().body,
        json!({"n": 1})
    );
}

async fn replace_is_compare_and_set(a: &dyn Store, b: &dyn Store) {
    assert!(a.insert("cas", "k", &json!(1)).await.unwrap());
    assert_eq!(a.replace("cas", "k", 1, &json!(2)).await.unwrap(), Some(2));
    // A writer still holding version 1 is refused, and nothing changes.
    assert_eq!(
        b.replace("cas", "k", 1, &json!("stale")).await.unwrap(),
        None
    );
    assert_eq!(
        a.get("cas", "k").await.unwrap().unwrap(),
        document("k", 2, json!(2))
    );
    assert_eq!(b.replace("cas", "k", 2, &json!(3)).await.unwrap(), Some(3));
    assert_eq!(
        a.get("cas", "k").await.unwrap().unwrap(),
        document("k", 3, json!(3))
    );
    // Versions no document has; a key that does not exist is not created.
    for version in [0, 4, 99, u64::MAX, u64::MAX - 1, 1 << 63] {
        assert_eq!(
            a.replace("cas", "k", version, &json!("no")).await.unwrap(),
            None,
            "{version}"
        );
    }
    assert_eq!(
        a.replace("cas", "absent", 1, &json!("no")).await.unwrap(),
        None
    );
    assert_eq!(a.get("cas", "absent").await.unwrap(), None);
    assert_eq!(a.get("cas", "k").await.unwrap().unwrap().version, 3);
}

async fn list_pages_in_key_order(store: &dyn Store) {
    // Inserted out of order; upper case, digits, accents and symbols so that
    // a locale's collation would order them differently from bytes.
    let keys = [
        "b", "a", "B", "é", "a0", "z", "Z", "ä", "~", "a-b", "ab", "A", "1", "ß",
    ];
    for (i, key) in keys.iter().enumerate() {
        assert!(store.insert("paged", key, &json!(i)).await.unwrap());
    }
    assert!(
        store
            .insert("paged-not", "a", &json!("elsewhere"))
            .await
            .unwrap()
    );
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();

    let all = names(&store.list("paged", None, 100).await.unwrap());
    assert_eq!(all, sorted);
    for limit in [1, 2, 3, 5, 13, 14, 15] {
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.list("paged", after.as_deref(), limit).await.unwrap();
            assert!(
                page.len() <= limit,
                "a page of {} for limit {limit}",
                page.len()
            );
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            pages.extend(names(&page));
        }
        assert_eq!(pages, sorted, "paging by {limit}");
    }
    assert!(store.list("paged", None, 0).await.unwrap().is_empty());
    // `after` is exclusive, and need not be a key that exists.
    assert_eq!(
        names(&store.list("paged", Some("a"), 2).await.unwrap()),
        ["a-b", "a0"]
    );
    assert_eq!(
        names(&store.list("paged", Some("aa"), 1).await.unwrap()),
        ["ab"]
    );
    assert!(store.list("empty", None, 10).await.unwrap().is_empty());
    let doc = &store.list("paged", Some("é"), usize::MAX).await.unwrap();
    assert!(doc.is_empty(), "{doc:?}");
}

async fn bodies_come_back_as_written(a: &dyn Store, b: &dyn Store) {
    // Key order, big and precise numbers, escapes and non-ASCII text.
    let text = r#"{"z":1,"a":{"y":[1,2.50,-0.0],"b":null},"big":123456789012345678901234567890,"tiny":1e-400,"s":"\u0000 \"quoted\" é 🦀 \n"}"#;
    let body: Value = serde_json::from_str(text).unwrap();
    assert!(a.insert("bodies", "k", &body).await.unwrap());
    let back = b.get("bodies", "k").await.unwrap().unwrap().body;
    assert_eq!(back, body);
    assert_eq!(back.to_string(), body.to_string());
    assert_eq!(
        b.replace("bodies", "k", 1, &json!([])).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        a.list("bodies", None, 1).await.unwrap(),
        [document("k", 2, json!([]))]
    );
}

async fn names_with_nul_are_refused(store: &dyn Store) {
    let refused = |r: Result<(), StoreError>| match r {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("NUL"), "{m}"),
        other => panic!("a NUL in a name was not refused: {other:?}"),
    };
    refused(store.insert("nul", "a\0b", &json!(1)).await.map(drop));
    refused(store.insert("n\0ul", "a", &json!(1)).await.map(drop));
    refused(store.get("nul", "a\0").await.map(drop));
    refused(store.replace("nul", "\0", 1, &json!(1)).await.map(drop));
    refused(store.list("nul\0", None, 1).await.map(drop));
    refused(store.list("nul", Some("\0"), 1).await.map(drop));
    assert!(store.list("nul", None, 10).await.unwrap().is_empty());
}

/// Many tasks, on both handles, try to replace version 1 of one document
/// (as replicas would spend one approval): exactly one wins. Then the same
/// for inserting one new key.
async fn one_racer_wins(a: &Arc<dyn Store>, b: &Arc<dyn Store>) {
    const RACERS: usize = 24;
    assert!(
        a.insert("race", "approval", &json!({"spent": false}))
            .await
            .unwrap()
    );
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let store = Arc::clone(if i % 2 == 0 { a } else { b });
        tasks.spawn(async move {
            let won = store
                .replace("race", "approval", 1, &json!({"spent": i}))
                .await
                .unwrap();
            (i, won)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, won) = joined.unwrap();
        if let Some(version) = won {
            assert_eq!(version, 2);
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let doc = a.get("race", "approval").await.unwrap().unwrap();
    assert_eq!(doc, document("approval", 2, json!({"spent": winners[0]})));

    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let store = Arc::clone(if i % 2 == 0 { a } else { b });
        tasks.spawn(async move { (i, store.insert("race", "new", &json!(i)).await.unwrap()) });
    }
    let mut inserted = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, added) = joined.unwrap();
        if added {
            inserted.push(i);
        }
    }
    assert_eq!(inserted.len(), 1, "inserters that won: {inserted:?}");
    assert_eq!(
        b.get("race", "new").await.unwrap().unwrap().body,
        json!(inserted[0])
    );
}

/// Counters incremented by read-then-replace, retried on a lost race, from
/// many tasks: every increment lands once.
async fn no_update_is_lost(a: &Arc<dyn Store>, b: &Arc<dyn Store>) {
    const TASKS: u64 = 8;
    const EACH: u64 = 10;
    assert!(a.insert("counter", "n", &json!(0)).await.unwrap());
    let mut tasks = JoinSet::new();
    for i in 0..TASKS {
        let store = Arc::clone(if i % 2 == 0 { a } else { b });
        tasks.spawn(async move {
            for _ in 0..EACH {
                loop {
                    let doc = store.get("counter", "n").await.unwrap().unwrap();
                    let n = doc.body.as_u64().unwrap();
                    if store
                        .replace("counter", "n", doc.version, &json!(n + 1))
                        .await
                        .unwrap()
                        .is_some()
                    {
                        break;
                    }
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let doc = b.get("counter", "n").await.unwrap().unwrap();
    assert_eq!(doc, document("n", TASKS * EACH + 1, json!(TASKS * EACH)));
}

fn document(key: &str, version: u64, body: Value) -> Document {
    Document {
        key: key.to_owned(),
        version,
        body,
    }
}

fn names(docs: &[Document]) -> Vec<String> {
    docs.iter().map(|d| d.key.clone()).collect()
}

/// The schema refusal, as both backends must word it.
fn assert_newer_schema_refused(result: Result<Arc<dyn Store>, StoreError>, place: &str) {
    match result {
        Err(StoreError::Config(m)) => {
            assert!(
                m.contains("schema version 999") && m.contains("newer"),
                "{m}"
            );
            assert!(m.contains(place), "`{m}` does not name `{place}`");
        }
        Err(other) => panic!("a newer schema gave {other:?}"),
        Ok(store) => panic!("a newer schema was opened: {store:?}"),
    }
}

/// A damaged row is reported as such, naming it, by `get` and by `list`.
async fn assert_corrupt(store: &dyn Store, collection: &str, key: &str, what: &str) {
    let check = |e: StoreError| {
        let StoreError::Corrupt {
            collection: c,
            key: k,
            message,
        } = e
        else {
            panic!("a damaged row gave {e:?}");
        };
        assert_eq!((c.as_str(), k.as_str()), (collection, key));
        assert!(message.contains(what), "{message}");
    };
    check(store.get(collection, key).await.unwrap_err());
    check(store.list(collection, None, 10).await.unwrap_err());
}

// ------------------------------------------------------------------ backends: parsing

#[test]
fn store_urls_parse_into_backends() {
    let dir = Path::new("/var/lib/palisade");
    let check = |url: &str, expected: Backend| {
        assert_eq!(Backend::parse(url, dir).unwrap(), expected, "{url}");
    };
    let sqlite = |p: &str| Backend::Sqlite {
        path: PathBuf::from(p),
    };
    check("sqlite", sqlite("/var/lib/palisade/state.db"));
    check(" sqlite ", sqlite("/var/lib/palisade/state.db"));
    check("sqlite:other.db", sqlite("/var/lib/palisade/other.db"));
    check("sqlite:/srv/state.db", sqlite("/srv/state.db"));
    let pg = "postgres://palisade@127.0.0.1:55432/palisade";
    check(pg, Backend::Postgres { url: pg.to_owned() });
    let pg = "postgresql://u:secret@db.internal/state?connect_timeout=3";
    check(pg, Backend::Postgres { url: pg.to_owned() });
}

#[test]
fn bad_store_urls_are_refused_without_showing_a_password() {
    let check = |url: &str, says: &str| match Backend::parse(url, Path::new("/d")) {
        Err(StoreError::Config(m)) => {
            assert!(m.contains(says), "`{url}`: `{m}` does not say `{says}`");
            assert!(!m.contains("hunter2"), "`{url}`: `{m}` shows the password");
        }
        other => panic!("`{url}` was accepted: {other:?}"),
    };
    check("sqlite:", "names no file");
    check("", "unknown state store ``");
    check("SQLite", "unknown state store `SQLite`");
    check(
        "mysql://root:hunter2@db/x",
        "unknown state store `mysql://root:***@db/x`",
    );
    check(
        "host=db password=hunter2",
        "unknown state store `host=db password=***`",
    );
    check(
        "postgres://u:hunter2@db:notaport/x",
        "postgres://u:***@db:notaport/x",
    );
}

#[test]
fn debug_and_display_mask_the_password() {
    let backend = Backend::parse("postgres://u:hunter2@db:5432/x", Path::new("/d")).unwrap();
    for shown in [
        format!("{backend:?}"),
        format!("{backend:#?}"),
        backend.to_string(),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://u:***@db:5432/x"), "{shown}");
    }
}

// ------------------------------------------------------------------ SQLite

/// A directory of its own for one test, removed after it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("palisade-store-{}-{n}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite_at(path: &Path) -> Backend {
    Backend::Sqlite {
        path: path.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_keeps_the_contract() {
    let scratch = Scratch::new("contract");
    let backend = Backend::parse("sqlite", &scratch.0).unwrap();
    // Two handles on one file, as two processes would have.
    let a = open(&backend).await.unwrap();
    let b = open(&backend).await.unwrap();
    contract(a, b).await;
}

#[tokio::test]
async fn sqlite_state_survives_a_reopen() {
    let scratch = Scratch::new("reopen");
    let backend = sqlite_at(&scratch.0.join("state.db"));
    let store = open(&backend).await.unwrap();
    assert!(
        store
            .insert("c", "k", &json!({"kept": true}))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .replace("c", "k", 1, &json!({"kept": 2}))
            .await
            .unwrap(),
        Some(2)
    );
    drop(store);
    let store = open(&backend).await.unwrap();
    assert_eq!(
        store.get("c", "k").await.unwrap().unwrap(),
        document("k", 2, json!({"kept": 2}))
    );
}

#[tokio::test]
async fn sqlite_creates_an_owner_only_file_in_an_owner_only_directory() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("modes");
    let path = scratch.0.join("data/nested/state.db");
    let store = open(&sqlite_at(&path)).await.unwrap();
    assert!(store.insert("c", "k", &json!(1)).await.unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&scratch.0.join("data/nested")), 0o700);
    assert_eq!(mode(&scratch.0.join("data")), 0o700);
    // SQLite's own files take the database's mode.
    let wal = scratch.0.join("data/nested/state.db-wal");
    assert_eq!(mode(&wal), 0o600);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let journal: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[tokio::test]
async fn sqlite_refuses_a_schema_newer_than_this_build() {
    let scratch = Scratch::new("newer");
    let path = scratch.0.join("state.db");
    drop(open(&sqlite_at(&path)).await.unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("INSERT INTO palisade_schema (version) VALUES (999)", [])
        .unwrap();
    drop(raw);
    assert_newer_schema_refused(open(&sqlite_at(&path)).await, &path.display().to_string());
}

#[tokio::test]
async fn sqlite_reports_a_damaged_row() {
    let scratch = Scratch::new("corrupt");
    let path = scratch.0.join("state.db");
    let store = open(&sqlite_at(&path)).await.unwrap();
    assert!(store.insert("c", "bad-body", &json!(1)).await.unwrap());
    assert!(store.insert("v", "bad-version", &json!(1)).await.unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE palisade_documents SET body = '{\"half\": ' WHERE key = 'bad-body'",
        [],
    )
    .unwrap();
    raw.execute(
        "UPDATE palisade_documents SET version = 0 WHERE key = 'bad-version'",
        [],
    )
    .unwrap();
    assert_corrupt(&*store, "c", "bad-body", "not JSON").await;
    assert_corrupt(&*store, "v", "bad-version", "version 0").await;
}

#[tokio::test]
async fn sqlite_that_cannot_be_opened_is_unavailable() {
    let scratch = Scratch::new("unopenable");
    // A directory where the file should be; a file that is not a database.
    let not_db = scratch.0.join("garbage.db");
    std::fs::write(
        &not_db,
        b"this is not an sqlite database, not even close....",
    )
    .unwrap();
    for path in [scratch.0.clone(), not_db] {
        match open(&sqlite_at(&path)).await {
            Err(StoreError::Unavailable(m)) => {
                assert!(m.contains(&path.display().to_string()), "{m}");
            }
            other => panic!("`{}` opened: {other:?}", path.display()),
        }
    }
}

// ------------------------------------------------------------------ PostgreSQL

/// The server to test on, from `PALISADE_TEST_POSTGRES`. Unset: a failure
/// under CI, a notice (and `None`) on a developer's machine.
fn postgres_server() -> Option<String> {
    if let Ok(url) = std::env::var("PALISADE_TEST_POSTGRES")
        && !url.trim().is_empty()
    {
        return Some(url);
    }
    let how = "start one with `scripts/postgres start` and \
               `export PALISADE_TEST_POSTGRES=$(scripts/postgres url)` (scripts/test does both)";
    assert!(
        std::env::var_os("CI").is_none(),
        "PALISADE_TEST_POSTGRES is not set, and CI is: the PostgreSQL backend must be tested; {how}"
    );
    eprintln!("notice: PostgreSQL tests skipped: PALISADE_TEST_POSTGRES is not set; {how}");
    None
}

async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to `{url}`: {e}"));
    #[expect(
        clippy::disallowed_methods,
        reason = "a test connection's I/O task, ended by dropping its client"
    )]
    tokio::spawn(connection);
    client
}

/// `url` naming the database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A database of its own for one test, on the test server.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn new(server: &str, test: &str) -> Database {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("palisade_test_{}_{n}_{test}", std::process::id());
        let admin = raw_client(server).await;
        // One statement each: CREATE DATABASE cannot run in the implicit
        // transaction of a multi-statement query.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        // A collation that does not sort bytewise (ICU's en-US puts `a`
        // before `B`), so the key order the store promises is its own doing.
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
        );
        if let Err(e) = admin.batch_execute(&icu).await {
            eprintln!("notice: no ICU collation on the test server ({e:?}): the default one");
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| {
                    panic!("cannot create the database `{name}` on `{server}`: {e:?}")
                });
        }
        Database {
            server: server.to_owned(),
            url: with_database(server, &name),
            name,
        }
    }

    fn backend(&self) -> Backend {
        Backend::parse(&self.url, Path::new("/unused")).unwrap()
    }

    async fn client(&self) -> tokio_postgres::Client {
        raw_client(&self.url).await
    }

    /// Dropped at the end of a test that passed (a failed one leaves its
    /// database to look at; the server is a throwaway).
    async fn remove(self) {
        let admin = raw_client(&self.server).await;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_keeps_the_contract() {
    let Some(server) = postgres_server() else {
        return;
    };
    let db = Database::new(&server, "contract").await;
    // Two stores on one database, as two gateway replicas would have.
    let a = open(&db.backend()).await.unwrap();
    let b = open(&db.backend()).await.unwrap();
    contract(a, b).await;
    db.remove().await;
}

#[tokio::test]
async fn postgres_state_survives_a_reopen() {
    let Some(server) = postgres_server() else {
        return;
    };
    let db = Database::new(&server, "reopen").await;
    let store = open(&db.backend()).await.unwrap();
    assert!(
        store
            .insert("c", "k", &json!({"kept": true}))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .replace("c", "k", 1, &json!({"kept": 2}))
            .await
            .unwrap(),
        Some(2)
    );
    drop(store);
    let store = open(&db.backend()).await.unwrap();
    assert_eq!(
        store.get("c", "k").await.unwrap().unwrap(),
        document("k", 2, json!({"kept": 2}))
    );
    drop(store);
    db.remove().await;
}

#[tokio::test]
async fn postgres_refuses_a_schema_newer_than_this_build() {
    let Some(server) = postgres_server() else {
        return;
    };
    let db = Database::new(&server, "newer").await;
    drop(open(&db.backend()).await.unwrap());
    let raw = db.client().await;
    raw.execute("INSERT INTO palisade_schema (version) VALUES (999)", &[])
        .await
        .unwrap();
    assert_newer_schema_refused(
        open(&db.backend()).await,
        &format!("database `{}`", db.name),
    );
    drop(raw);
    db.remove().await;
}

#[tokio::test]
async fn postgres_reports_a_damaged_row() {
    let Some(server) = postgres_server() else {
        return;
    };
    let db = Database::new(&server, "corrupt").await;
    let store = open(&db.backend()).await.unwrap();
    assert!(store.insert("c", "bad-body", &json!(1)).await.unwrap());
    assert!(store.insert("v", "bad-version", &json!(1)).await.unwrap());
    let raw = db.client().await;
    raw.batch_execute(
        "UPDATE palisade_documents SET body = '{\"half\": ' WHERE key = 'bad-body';
         UPDATE palisade_documents SET version = -3 WHERE key = 'bad-version'",
    )
    .await
    .unwrap();
    assert_corrupt(&*store, "c", "bad-body", "not JSON").await;
    assert_corrupt(&*store, "v", "bad-version", "version -3").await;
    drop((store, raw));
    db.remove().await;
}

/// Gateways starting together on a new database: the migration lock makes
/// them migrate one after the other, so all open and each step is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_opens_migrate_once() {
    let Some(server) = postgres_server() else {
        return;
    };
    let db = Database::new(&server, "opens").await;
    let mut opens = JoinSet::new();
    for _ in 0..8 {
        let backend = db.backend();
        opens.spawn(async move { open(&backend).await.map(drop) });
    }
    while let Some(opened) = opens.join_next().await {
        opened.unwrap().unwrap();
    }
    let raw = db.client().await;
    let row = raw
        .query_one("SELECT count(*), max(version) FROM palisade_schema", &[])
        .await
        .unwrap();
    let (count, latest): (i64, i64) = (row.get(0), row.get(1));
    assert!(latest >= 1);
    assert_eq!(count, latest, "each step once");
    drop(raw);
    db.remove().await;
}

/// Connections the server closed are opened again: at most one failed
/// operation per connection of the store, then it works.
#[tokio::test]
async fn postgres_connections_closed_by_the_server_are_reopened() {
    let Some(server) = postgres_server() else {
        return;
    };
    let db = Database::new(&server, "reconnect").await;
    let store = open(&db.backend()).await.unwrap();
    assert!(store.insert("c", "k", &json!(1)).await.unwrap());
    let raw = db.client().await;
    let killed = raw
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db.name],
        )
        .await
        .unwrap();
    assert!(!killed.is_empty());
    let mut failures = 0;
    loop {
        match store.get("c", "k").await {
            Ok(doc) => {
                assert_eq!(doc.unwrap().version, 1);
                break;
            }
            Err(StoreError::Unavailable(m)) => {
                assert!(m.contains(&format!("database `{}`", db.name)), "{m}");
                failures += 1;
                assert!(failures <= 4, "still failing after {failures} tries: {m}");
            }
            Err(other) => panic!("a closed connection gave {other:?}"),
        }
    }
    for _ in 0..10 {
        assert_eq!(store.get("c", "k").await.unwrap().unwrap().version, 1);
    }
    drop((store, raw));
    db.remove().await;
}

#[tokio::test]
async fn postgres_missing_database_is_unavailable_naming_the_server() {
    let Some(server) = postgres_server() else {
        return;
    };
    let url = with_database(&server, "palisade_no_such_database");
    match open(&Backend::parse(&url, Path::new("/d")).unwrap()).await {
        Err(StoreError::Unavailable(m)) => {
            assert!(m.contains("database `palisade_no_such_database`"), "{m}");
            assert!(m.contains("does not exist"), "{m}");
        }
        other => panic!("a missing database opened: {other:?}"),
    }
}

/// Needs no server: nothing listens on the port.
#[tokio::test]
async fn postgres_unreachable_is_unavailable_naming_host_and_port_not_the_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://palisade:hunter2@127.0.0.1:{port}/state");
    match open(&Backend::parse(&url, Path::new("/d")).unwrap()).await {
        Err(e @ StoreError::Unavailable(_)) => {
            let m = e.to_string();
            assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}");
            assert!(!m.contains("hunter2"), "{m}");
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
        other => panic!("an unreachable server opened: {other:?}"),
    }
}

#[test]
fn with_database_replaces_only_the_database() {
    let check = |url: &str, expected: &str| assert_eq!(with_database(url, "t"), expected);
    check("postgres://u@h:1/palisade", "postgres://u@h:1/t");
    check("postgres://u@h:1", "postgres://u@h:1/t");
    check(
        "postgres://u@h:1/p?sslmode=disable",
        "postgres://u@h:1/t?sslmode=disable",
    );
}

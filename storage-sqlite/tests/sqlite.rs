//! Behaviour specific to the SQLite store: what reaches the disk, durability across reopen,
//! migrations, concurrency between stores sharing a file, corrupt rows and URLs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyward::RecordStore;
use keyward::UsageStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyward::conformance::sample_record;
use keyward::{
    Consumption, Environment, HashParams, IssueRequest, KeyChange, KeyManager, KeyRecord, KeyStore,
    ListQuery, Project, Requirements, StoreError, Timestamp, UsageBucket,
};
use keyward_sqlite::{SCHEMA_VERSION, SqliteError, SqliteOptions, SqliteStore};
use tempfile::TempDir;

fn db_in(dir: &TempDir) -> PathBuf {
    dir.path().join("keys.db")
}

fn env(s: &str) -> Environment {
    s.parse().unwrap()
}

fn project(s: &str) -> Project {
    Project::new(s).unwrap()
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + ms)
}

fn manager(store: &SqliteStore) -> KeyManager {
    KeyManager::builder(store.clone())
        .prefix("av".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .serve(env("dev"))
        .build()
        .unwrap()
}

/// A raw connection to poke at the file behind the store's back.
fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn
}

fn read_or_empty(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn source_of(err: &StoreError) -> Option<&SqliteError> {
    std::error::Error::source(err)?.downcast_ref::<SqliteError>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_the_database_nor_its_wal_file_holds_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    let m = manager(&store);
    let issued = m
        .issue(
            IssueRequest::new(project("disk"), env("dev"))
                .scopes(["read"])
                .unwrap(),
        )
        .await
        .unwrap();
    let full = issued.key.expose_secret().to_owned();
    let secret = &full[full.len() - 49..full.len() - 6];
    assert_eq!(secret.len(), 43);
    // Verify once too, so a re-hash or last-used write would also be on disk.
    m.verify(&full, &Requirements::none()).await.unwrap();

    // Read while the store is open: the WAL file still holds the recent commits.
    let wal_path = PathBuf::from(format!("{}-wal", path.display()));
    let db = read_or_empty(&path);
    let wal = read_or_empty(&wal_path);
    assert!(
        !wal.is_empty(),
        "expected a WAL file at {}",
        wal_path.display()
    );
    let hash = issued.record.secret_hash.as_str();
    assert!(
        contains(&db, hash) || contains(&wal, hash),
        "the record itself should be on disk (sanity check)"
    );
    for (name, bytes) in [("database", &db), ("wal", &wal)] {
        assert!(!contains(bytes, secret), "the {name} file holds the secret");
        assert!(
            !contains(bytes, &full),
            "the {name} file holds the full key"
        );
    }

    let stored: String = raw(&path)
        .query_row(
            "SELECT secret_hash FROM keyward_keys WHERE id = ?1",
            [issued.record.id.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_persists_across_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let r = sample_record(&project("persist"), env("prd"), t(1));
    let bucket = UsageBucket {
        counter: "persist".into(),
        period_start: t(0),
    };
    let revision = {
        let store = SqliteStore::open(&path).await.unwrap();
        store.insert(&r, &[]).await.unwrap();
        let change = KeyChange {
            revoke_at: Some(t(5)),
            ..KeyChange::default()
        };
        store.update(&r.id, &change, &[]).await.unwrap().unwrap();
        store.consume(&bucket, 7, 10).await.unwrap();
        store.record_usage(&[(r.id, t(9))]).await.unwrap();
        store.changes_since(0).await.unwrap().revision
    };
    let store = SqliteStore::open(&path).await.unwrap();
    let mut expected = r.clone();
    expected.revoked_at = Some(t(5));
    expected.last_used_at = Some(t(9));
    assert_eq!(store.get(&r.id).await.unwrap(), Some(expected));
    assert_eq!(store.usage(&bucket).await.unwrap(), 7);
    let changes = store.changes_since(0).await.unwrap();
    assert_eq!(changes.revision, revision);
    assert_eq!(changes.ids, vec![r.id, r.id], "the insert and the update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_is_idempotent_and_sets_wal_and_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let r = sample_record(&project("reopen"), env("dev"), t(1));
    for round in 0..3 {
        let store = SqliteStore::open(&path).await.unwrap();
        if round == 0 {
            store.insert(&r, &[]).await.unwrap();
        }
        assert_eq!(store.get(&r.id).await.unwrap(), Some(r.clone()));
    }
    let conn = raw(&path);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_of_one_new_file_all_succeed() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = db_in(&dir);
        let opens = (0..4).map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(path).await })
        });
        let stores: Vec<SqliteStore> = futures_join(opens).await;
        let r = sample_record(&project("race"), env("dev"), t(1));
        stores[0].insert(&r, &[]).await.unwrap();
        for s in &stores {
            assert_eq!(s.get(&r.id).await.unwrap(), Some(r.clone()));
        }
    }
}

async fn futures_join(
    handles: impl Iterator<Item = tokio::task::JoinHandle<Result<SqliteStore, StoreError>>>,
) -> Vec<SqliteStore> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap().expect("every concurrent open succeeds"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_version_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    drop(SqliteStore::open(&path).await.unwrap());
    raw(&path)
        .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    match source_of(&err) {
        Some(SqliteError::SchemaTooNew { found, supported }) => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?} from {err}"),
    }
    assert!(err.to_string().contains("sqlite"), "{err}");
}

/// The schema as keyward-sqlite wrote it before its tables took the `keyward_` names
/// (`user_version` 2), copied here so that the test does not depend on the migration list.
const SCHEMA_V2: &str = "
    CREATE TABLE keys (
        id           TEXT    NOT NULL PRIMARY KEY,
        prefix       TEXT    NOT NULL,
        project      TEXT    NOT NULL,
        environment  TEXT    NOT NULL,
        scopes       TEXT    NOT NULL,
        name         TEXT    NOT NULL,
        metadata     TEXT,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER,
        last_used_at INTEGER,
        secret_hash  TEXT    NOT NULL,
        rotated_from TEXT,
        limits       TEXT    NOT NULL DEFAULT '{}'
    ) WITHOUT ROWID;
    CREATE INDEX keys_by_project ON keys (project, environment, created_at, id);
    CREATE INDEX keys_by_created ON keys (created_at, id);
    CREATE TABLE changes (
        revision INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id   TEXT NOT NULL
    );
    CREATE TABLE usage (
        counter      TEXT    NOT NULL,
        period_start INTEGER NOT NULL,
        used         INTEGER NOT NULL,
        PRIMARY KEY (counter, period_start)
    ) WITHOUT ROWID;
    CREATE TABLE settings (
        name  TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    PRAGMA user_version = 2;";

/// Inserts a record as keyward-sqlite wrote it at `user_version` 2 (no `rotated_to`).
fn insert_v2(conn: &rusqlite::Connection, r: &KeyRecord) {
    conn.execute(
        "INSERT INTO keys (id, prefix, project, environment, scopes, name, metadata,
             created_at, expires_at, revoked_at, last_used_at, secret_hash, rotated_from,
             limits)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        rusqlite::params![
            r.id.as_str(),
            r.prefix.as_str(),
            r.project.as_str(),
            r.environment.as_str(),
            r.scopes.to_string(),
            r.name,
            r.metadata.as_ref().map(|m| m.to_string()),
            r.created_at.unix_millis(),
            r.expires_at.map(Timestamp::unix_millis),
            r.revoked_at.map(Timestamp::unix_millis),
            r.last_used_at.map(Timestamp::unix_millis),
            r.secret_hash.as_str(),
            r.rotated_from.map(|id| id.to_string()),
            serde_json::to_string(&r.limits).unwrap(),
        ],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_the_old_table_names_is_migrated_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let mut r = sample_record(&project("legacy"), env("prd"), t(1));
    r.rotated_to = None; // no such column before version 4
    let bucket = UsageBucket {
        counter: "project:legacy:events".into(),
        period_start: t(0),
    };
    let quota = serde_json::json!({"limit": 1000, "period": "month"});
    {
        // What the old keyward-sqlite wrote: a record, a usage count, a setting, and a change
        // log whose oldest entry was pruned.
        let conn = raw(&path);
        conn.execute_batch(SCHEMA_V2).unwrap();
        insert_v2(&conn, &r);
        conn.execute(
            "INSERT INTO usage (counter, period_start, used) VALUES (?1, ?2, 7)",
            rusqlite::params![bucket.counter, bucket.period_start.unix_millis()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO settings (name, value) VALUES ('quota:project:legacy', ?1)",
            [quota.to_string()],
        )
        .unwrap();
        for _ in 0..3 {
            conn.execute("INSERT INTO changes (key_id) VALUES (?1)", [r.id.as_str()])
                .unwrap();
        }
        conn.execute("DELETE FROM changes WHERE revision <= 1", [])
            .unwrap();
    }

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.get(&r.id).await.unwrap(), Some(r.clone()));
    let listed = store
        .list(&ListQuery {
            project: Some(project("legacy")),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed, vec![r.clone()]);
    assert_eq!(store.usage(&bucket).await.unwrap(), 7);
    // Step 7 gave the old count a `leased` column with nothing leased: a lease counts the 7.
    assert_eq!(
        store.lease(&bucket, 10, 1, 10).await.unwrap(),
        keyward::Lease {
            granted: 3,
            used: 7,
            leased: 3
        }
    );
    assert_eq!(store.usage(&bucket).await.unwrap(), 7);
    assert_eq!(
        store.get_setting("quota:project:legacy").await.unwrap(),
        Some(quota)
    );
    let changes = store.changes_since(1).await.unwrap();
    assert_eq!(
        (changes.revision, changes.resync, changes.ids),
        (3, false, vec![r.id, r.id])
    );
    assert!(store.changes_since(0).await.unwrap().resync);
    // Revisions go on from the old counter.
    let rename = KeyChange {
        name: Some("renamed".into()),
        ..KeyChange::default()
    };
    // The audit trail (step 6) works on the migrated database, in the change's transaction.
    let entry = keyward::AuditEntry::new(
        t(2),
        keyward::Actor::system(),
        keyward::AuditAction::Updated,
        r.project.clone(),
    )
    .key(r.id);
    store
        .update(&r.id, &rename, &[entry])
        .await
        .unwrap()
        .unwrap();
    let next = store.changes_since(3).await.unwrap();
    assert_eq!((next.revision, next.ids), (4, vec![r.id]));
    let trail = keyward::AuditStore::audit(&store, &keyward::AuditQuery::new(r.project.clone()))
        .await
        .unwrap();
    assert_eq!((trail.len(), trail[0].key_id), (1, Some(r.id)));

    let conn = raw(&path);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let names = |kind: &str| -> Vec<String> {
        conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = ?1 AND name NOT LIKE 'sqlite_%'
             ORDER BY name",
        )
        .unwrap()
        .query_map([kind], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert_eq!(
        names("table"),
        [
            "keyward_audit",
            "keyward_changes",
            "keyward_keys",
            "keyward_rate",
            "keyward_settings",
            "keyward_usage"
        ]
    );
    assert_eq!(
        names("index"),
        [
            "keyward_audit_at",
            "keyward_audit_key",
            "keyward_audit_project",
            "keyward_keys_created",
            "keyward_keys_project_created",
            "keyward_keys_project_environment_created"
        ]
    );
    let sequence: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'keyward_changes'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(sequence, 4);
}

/// Inserts a record, then overwrites one column by hand.
async fn corrupted(
    column: &str,
    value: rusqlite::types::Value,
) -> (TempDir, SqliteStore, KeyRecord) {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    let r = sample_record(&project("corrupt"), env("dev"), t(1));
    store.insert(&r, &[]).await.unwrap();
    raw(&path)
        .execute(
            &format!("UPDATE keyward_keys SET {column} = ?1 WHERE id = ?2"),
            rusqlite::params![value, r.id.as_str()],
        )
        .unwrap();
    (dir, store, r)
}

fn assert_corrupt(result: Result<impl std::fmt::Debug, StoreError>, column: &str) {
    match result {
        Err(StoreError::Corrupt { store, message }) => {
            assert_eq!(store, "sqlite");
            assert!(message.contains(column), "{message}");
        }
        other => panic!("expected Corrupt for {column}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_edited_to_hold_garbage_is_corrupt_not_a_panic() {
    use rusqlite::types::Value::{Blob, Integer, Text};
    let cases = [
        ("scopes", Text("read BAD SCOPE!".into())),
        ("metadata", Text("{not json".into())),
        ("limits", Text("{\"credits\": -1}".into())),
        ("limits", Text("{\"unknown\": 1}".into())),
        ("created_at", Text("yesterday".into())),
        ("expires_at", Text("soon".into())),
        ("secret_hash", Text("plain-password".into())),
        ("project", Text("Not A Project".into())),
        ("environment", Integer(7)),
        ("prefix", Text("".into())),
        ("rotated_from", Text("short".into())),
        ("rotated_to", Text("short".into())),
        ("name", Blob(vec![0xff, 0xfe])),
    ];
    for (column, value) in cases {
        let (_dir, store, r) = corrupted(column, value).await;
        assert_corrupt(store.get(&r.id).await, column);
        assert_corrupt(
            // Each case has its own database: list everything.
            store.list(&ListQuery::default()).await,
            column,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_takes_effect_even_when_another_column_is_corrupt() {
    let (dir, store, r) = corrupted("metadata", rusqlite::types::Value::Text("{".into())).await;
    let revoke = KeyChange {
        revoke_at: Some(t(50)),
        ..KeyChange::default()
    };
    assert_corrupt(store.update(&r.id, &revoke, &[]).await, "metadata");
    let revoked_at: Option<i64> = raw(&db_in(&dir))
        .query_row(
            "SELECT revoked_at FROM keyward_keys WHERE id = ?1",
            [r.id.as_str()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(revoked_at, Some(t(50).unix_millis()));
    // Repairing the bad column through the store makes the row readable again.
    let repair = KeyChange {
        metadata: Some(None),
        ..KeyChange::default()
    };
    let fixed = store.update(&r.id, &repair, &[]).await.unwrap().unwrap();
    assert_eq!(fixed.revoked_at, Some(t(50)));
    assert_eq!(fixed.metadata, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_url_accepts_the_documented_forms_and_rejects_other_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let b = dir.path().join("b.db");
    let r = sample_record(&project("url"), env("dev"), t(1));

    let store = SqliteStore::open_url(&format!("sqlite:{}", a.display()))
        .await
        .unwrap();
    store.insert(&r, &[]).await.unwrap();
    assert_eq!(store.path(), Some(a.as_path()));
    // `sqlite://` followed by an absolute path: `sqlite:///tmp/…/b.db`.
    let store = SqliteStore::open_url(&format!("sqlite://{}?mode=rwc", b.display()))
        .await
        .unwrap();
    assert_eq!(store.path(), Some(b.as_path()));
    assert!(b.exists());
    let reopened = SqliteStore::open_url(&format!("sqlite://{}", a.display()))
        .await
        .unwrap();
    assert_eq!(reopened.get(&r.id).await.unwrap(), Some(r.clone()));
    let memory = SqliteStore::open_url("sqlite::memory:").await.unwrap();
    assert!(memory.path().is_none());
    memory.insert(&r, &[]).await.unwrap();

    for url in [
        "postgres://keyward:hunter2@localhost/keys",
        "postgresql://localhost/keys",
        "mysql://localhost/keys",
        "keys.db",
    ] {
        let err = SqliteStore::open_url(url).await.unwrap_err();
        assert!(
            matches!(source_of(&err), Some(SqliteError::NotSqliteUrl { .. })),
            "{url}: {err:?}"
        );
        assert!(err.to_string().contains("not a sqlite: URL"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    let err = SqliteStore::open_url("sqlite:x.db?cache=shared")
        .await
        .unwrap_err();
    assert!(matches!(
        source_of(&err),
        Some(SqliteError::UnsupportedUrlParameter)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_is_bounded_and_a_reader_behind_it_must_resync() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::default().change_log_len(3);
    let store = SqliteStore::open_with(db_in(&dir), options).await.unwrap();
    let r = sample_record(&project("log"), env("dev"), t(1));
    store.insert(&r, &[]).await.unwrap();
    let start = store.changes_since(0).await.unwrap();
    assert_eq!(
        (start.revision, start.resync),
        (1, false),
        "the insert is revision 1"
    );
    for i in 0..10 {
        let change = KeyChange {
            name: Some(format!("n{i}")),
            ..KeyChange::default()
        };
        store.update(&r.id, &change, &[]).await.unwrap();
    }
    let behind = store.changes_since(0).await.unwrap();
    assert_eq!(behind.revision, 11);
    assert!(behind.resync);
    let edge = store.changes_since(8).await.unwrap();
    assert!(!edge.resync);
    assert_eq!(edge.ids, vec![r.id; 3]);
    assert!(store.changes_since(7).await.unwrap().resync);
    let rows: i64 = raw(&db_in(&dir))
        .query_row("SELECT COUNT(*) FROM keyward_changes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3);
    let ahead = store.changes_since(u64::MAX).await.unwrap();
    assert_eq!(
        (ahead.revision, ahead.ids.len(), ahead.resync),
        (11, 0, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_share_changes_and_quota() {
    let dir = tempfile::tempdir().unwrap();
    let a = SqliteStore::open(db_in(&dir)).await.unwrap();
    let b = SqliteStore::open(db_in(&dir)).await.unwrap();
    let r = sample_record(&project("shared"), env("dev"), t(1));
    a.insert(&r, &[]).await.unwrap();
    let rev = b.changes_since(0).await.unwrap().revision;
    let revoke = KeyChange {
        revoke_at: Some(t(2)),
        ..KeyChange::default()
    };
    a.update(&r.id, &revoke, &[]).await.unwrap();
    let seen = b.changes_since(rev).await.unwrap();
    assert_eq!(seen.ids, vec![r.id]);
    assert_eq!(b.get(&r.id).await.unwrap().unwrap().revoked_at, Some(t(2)));

    let bucket = UsageBucket {
        counter: "shared-quota".into(),
        period_start: t(0),
    };
    let stores = [a, b];
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = stores[i % 2].clone();
            let bucket = bucket.clone();
            tokio::spawn(async move { store.consume(&bucket, 1, 25).await.unwrap() })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Consumption::Granted { .. }) {
            granted += 1;
        }
    }
    assert_eq!(granted, 25);
    assert_eq!(stores[1].usage(&bucket).await.unwrap(), 25);
}

/// Two stores on one file (each with its own writer connection, as two processes would
/// have): 64 concurrent leases of one unit against a limit of 50 grant exactly 50, and
/// consumes and rate cells taken through either store share the same counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_never_over_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let stores = [
        SqliteStore::open(db_in(&dir)).await.unwrap(),
        SqliteStore::open(db_in(&dir)).await.unwrap(),
    ];
    let bucket = UsageBucket {
        counter: "shared-lease".into(),
        period_start: t(0),
    };
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = stores[i % 2].clone();
            let bucket = bucket.clone();
            tokio::spawn(async move { store.lease(&bucket, 1, 1, 50).await.unwrap() })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap().granted;
    }
    assert_eq!(granted, 50);
    for store in &stores {
        assert_eq!(
            store.lease(&bucket, 0, 0, 50).await.unwrap(),
            keyward::Lease {
                granted: 0,
                used: 0,
                leased: 50
            }
        );
        assert_eq!(
            store.consume(&bucket, 1, 50).await.unwrap(),
            Consumption::Refused { used: 0 }
        );
    }
    stores[0].settle(&bucket, 20, 10).await.unwrap();
    assert_eq!(stores[1].usage(&bucket).await.unwrap(), 20);
    assert_eq!(
        stores[1].consume(&bucket, 10, 50).await.unwrap(),
        Consumption::Granted { used: 30 }
    );

    let cells = keyward::RateCells::new("key:shared:rate", 1_000_000, 10_000, 90_000);
    assert_eq!(stores[0].take_cells(&cells, 6).await.unwrap(), 6);
    assert_eq!(stores[1].take_cells(&cells, 6).await.unwrap(), 4);
    stores[1].return_cells(&cells, 3).await.unwrap();
    assert_eq!(stores[0].take_cells(&cells, 6).await.unwrap(), 3);
}

/// Leases and settlements stop at i64::MAX, SQLite's largest integer: never a wrapped or
/// negative count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_beyond_sqlite_integers_stop_at_i64_max() {
    let store = SqliteStore::in_memory().await.unwrap();
    let bucket = UsageBucket {
        counter: "huge-lease".into(),
        period_start: t(0),
    };
    let max = i64::MAX as u64;
    assert_eq!(
        store.lease(&bucket, u64::MAX, 1, u64::MAX).await.unwrap(),
        keyward::Lease {
            granted: max,
            used: 0,
            leased: max
        }
    );
    assert_eq!(
        store.settle(&bucket, u64::MAX, 0).await.unwrap(),
        keyward::Lease {
            granted: 0,
            used: max,
            leased: 0
        }
    );
    assert_eq!(store.usage(&bucket).await.unwrap(), max);
    assert_eq!(
        store.lease(&bucket, 1, 1, u64::MAX).await.unwrap().granted,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_many_with_a_taken_id_inserts_none_of_the_batch() {
    let store = SqliteStore::in_memory().await.unwrap();
    let p = project("batch");
    let existing = sample_record(&p, env("dev"), t(1));
    store.insert(&existing, &[]).await.unwrap();
    let fresh = sample_record(&p, env("dev"), t(2));
    let batch = [fresh.clone(), existing.clone()];
    assert!(matches!(
        store.insert_many(&batch, &[]).await,
        Err(StoreError::AlreadyExists(id)) if id == existing.id
    ));
    assert_eq!(store.get(&fresh.id).await.unwrap(), None);
    // A batch that repeats an id within itself is refused whole too.
    let twice = [fresh.clone(), fresh.clone()];
    assert!(matches!(
        store.insert_many(&twice, &[]).await,
        Err(StoreError::AlreadyExists(id)) if id == fresh.id
    ));
    assert_eq!(store.get(&fresh.id).await.unwrap(), None);
    store.insert_many(&[], &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_reader_connections_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(db_in(&dir), SqliteOptions::default().readers(0))
        .await
        .unwrap();
    let r = sample_record(&project("noreaders"), env("dev"), t(1));
    store.insert(&r, &[]).await.unwrap();
    assert_eq!(store.get(&r.id).await.unwrap(), Some(r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_beyond_sqlite_integers_is_refused_not_wrapped() {
    let store = SqliteStore::in_memory().await.unwrap();
    let bucket = UsageBucket {
        counter: "huge".into(),
        period_start: t(0),
    };
    assert_eq!(
        store.consume(&bucket, u64::MAX, u64::MAX).await.unwrap(),
        Consumption::Refused { used: 0 }
    );
    let max = i64::MAX as u64;
    assert_eq!(
        store.consume(&bucket, max, u64::MAX).await.unwrap(),
        Consumption::Granted { used: max }
    );
    assert_eq!(store.usage(&bucket).await.unwrap(), max);
}

#[test]
fn the_store_is_cloneable_send_and_sync_for_arc_dyn_keystore() {
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    assert_traits::<SqliteStore>();
    let _: fn(SqliteStore) -> Arc<dyn KeyStore> = |s| Arc::new(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_before_the_rotated_to_column_is_known_as_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let p = project("legacy-rotated");
    let mut old = sample_record(&p, env("prd"), t(1));
    (old.rotated_from, old.rotated_to) = (None, None);
    let successor = |at| KeyRecord {
        id: keyward::KeyId::generate().unwrap(),
        created_at: at,
        rotated_from: Some(old.id),
        ..old.clone()
    };
    // Rotated twice (as an older version allowed), the latest successor last.
    let (first, latest) = (successor(t(2)), successor(t(3)));
    {
        let conn = raw(&path);
        conn.execute_batch(SCHEMA_V2).unwrap();
        for r in [&old, &latest, &first] {
            insert_v2(&conn, r);
        }
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let got = store.get(&old.id).await.unwrap().unwrap();
    assert_eq!(got.rotated_to, Some(latest.id));
    for r in [first, latest] {
        assert_eq!(store.get(&r.id).await.unwrap(), Some(r));
    }
}

/// Every list query (no filter; project; project and environment; each with and without a
/// cursor) reads its page in index order: no full scan and no sort of the matching keys, so a
/// page costs the same in a project of 1,000 or 1,000,000 keys (issue 13, D5).
#[tokio::test]
async fn every_list_query_is_served_by_an_index_without_a_sort() {
    use keyward::store::rows::{Param, Placeholders, list_statement};
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    let records: Vec<KeyRecord> = (0..300)
        .map(|i| {
            sample_record(
                &project(&format!("p{}", i % 3)),
                env(["dev", "prd"][i % 2]),
                t(i as i64),
            )
        })
        .collect();
    store.insert_many(&records, &[]).await.unwrap();
    let conn = raw(&path);
    conn.execute_batch("ANALYZE").unwrap();
    let after = Some((t(5), records[5].id));
    for (project_filter, env_filter) in
        [(None, None), (Some("p1"), None), (Some("p1"), Some("dev"))]
    {
        for after in [None, after] {
            let query = ListQuery {
                project: project_filter.map(project),
                environment: env_filter.map(env),
                after,
                limit: 100,
            };
            let statement = list_statement(&query, Placeholders::Question);
            let params: Vec<rusqlite::types::Value> = statement
                .params
                .iter()
                .map(|p| match p {
                    Param::Text(Some(s)) => rusqlite::types::Value::Text(s.clone()),
                    Param::Integer(Some(n)) => rusqlite::types::Value::Integer(*n),
                    _ => rusqlite::types::Value::Null,
                })
                .collect();
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", statement.sql))
                .unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let text = plan.join(" | ");
            assert!(text.contains("USING INDEX"), "{query:?}: {text}");
            assert!(!text.contains("TEMP B-TREE"), "{query:?} sorts: {text}");
            assert!(
                !text.starts_with("SCAN keyward_keys |") && text != "SCAN keyward_keys",
                "{query:?}: {text}"
            );
        }
    }
}

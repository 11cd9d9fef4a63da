//! Crash safety: a process killed with SIGKILL right after `issue()` or `revoke()` returned
//! loses nothing it acknowledged. The test binary re-invokes itself as a child (the
//! `crash_child` test, active only with `KEYWARD_CRASH_CHILD` set) that works on a SQLite
//! file, prints a line once each operation has returned, and then blocks or keeps going; the
//! parent reads the line, sends SIGKILL (`Child::kill`), reopens the file and checks it.
//!
//! A SIGKILL ends the process without any destructor, flush or checkpoint, so these tests
//! prove that an operation is committed to the database file (WAL) before it returns. Power
//! loss (the OS page cache lost too) is covered by `synchronous = FULL` (see SECURITY.md),
//! which a test cannot simulate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use keyward::{AuthError, Error, HashParams, IssueRequest, KeyId, KeyManager, Requirements};
use keyward_sqlite::SqliteStore;

const CHILD: &str = "KEYWARD_CRASH_CHILD";
const DB: &str = "KEYWARD_CRASH_DB";
const ID: &str = "KEYWARD_CRASH_ID";

fn manager(store: SqliteStore) -> KeyManager {
    KeyManager::builder(store)
        .prefix("av".parse().unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap()
}

fn req() -> IssueRequest {
    IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
        .scopes(["read"])
        .unwrap()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Blocks until killed (exits after two minutes if the parent is gone).
fn block() -> ! {
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3)
}

/// The child side. A no-op in a normal test run.
#[test]
fn crash_child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let db = std::env::var(DB).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = manager(SqliteStore::open(&db).await.unwrap());
        match mode.as_str() {
            "issue" => {
                let issued = m.issue(req()).await.unwrap();
                say(&format!("ISSUED {}", issued.key.expose_secret()));
                block();
            }
            "revoke" => {
                let id: KeyId = std::env::var(ID).unwrap().parse().unwrap();
                m.revoke(&id).await.unwrap();
                say("REVOKED");
                block();
            }
            "churn" => {
                let mut previous: Option<KeyId> = None;
                loop {
                    let issued = m.issue(req()).await.unwrap();
                    say(&format!("ISSUED {}", issued.key.expose_secret()));
                    if let Some(id) = previous.take() {
                        m.revoke(&id).await.unwrap();
                        say(&format!("REVOKED {id}"));
                    } else {
                        previous = Some(issued.record.id);
                    }
                }
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}

fn spawn(mode: &str, db: &Path, id: Option<&KeyId>) -> (Child, BufReader<ChildStdout>) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env(DB, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(id) = id {
        cmd.env(ID, id.as_str());
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

/// What follows `prefix` in the next line that holds it (other lines are the harness's).
fn next_line(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let start = Instant::now();
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "the child ended before printing {prefix}");
        // The harness prints `test crash_child ... ` without a newline, so the child's first
        // line may follow it on the same line.
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].trim().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {prefix} line"
        );
    }
}

/// SIGKILL, and proof that the child died of it.
fn kill_9(mut child: Child) {
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
}

/// `PRAGMA integrity_check` on the file, through a plain connection.
fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_issued_just_before_a_kill_9_is_present_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let (child, mut out) = spawn("issue", &db, None);
    let key = next_line(&mut out, "ISSUED");
    kill_9(child);

    assert_eq!(integrity(&db), "ok");
    let m = manager(SqliteStore::open(&db).await.unwrap());
    let who = m
        .verify(&key, &Requirements::scopes(["read"]).unwrap())
        .await;
    let who = who.unwrap_or_else(|e| panic!("the issued key does not verify after kill -9: {e}"));
    assert_eq!(who.project.as_str(), "web-app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_just_before_a_kill_9_stays_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let (key, id) = {
        let m = manager(SqliteStore::open(&db).await.unwrap());
        let issued = m.issue(req()).await.unwrap();
        let key = issued.key.expose_secret().to_owned();
        m.verify(&key, &Requirements::none()).await.unwrap();
        (key, issued.record.id)
    };
    let (child, mut out) = spawn("revoke", &db, Some(&id));
    next_line(&mut out, "REVOKED");
    kill_9(child);

    assert_eq!(integrity(&db), "ok");
    let m = manager(SqliteStore::open(&db).await.unwrap());
    match m.verify(&key, &Requirements::none()).await {
        Err(Error::Auth(AuthError::Revoked { id: revoked, .. })) => assert_eq!(revoked, id),
        other => panic!("a revocation acknowledged before kill -9 was lost: {other:?}"),
    }
    let info = m.get(&id).await.unwrap().unwrap();
    assert_eq!(info.status, "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_amid_issues_and_revocations_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let (child, mut out) = spawn("churn", &db, None);
    let mut issued: Vec<String> = Vec::new();
    let mut revoked: Vec<String> = Vec::new();
    // Read about 60 acknowledgements, then kill while the child is in the middle of its next
    // operation (it never waits for the parent).
    while issued.len() + revoked.len() < 60 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended");
        let line = line.trim_end();
        if let Some(at) = line.find("ISSUED ") {
            issued.push(line[at + 7..].to_owned());
        } else if let Some(at) = line.find("REVOKED ") {
            revoked.push(line[at + 8..].to_owned());
        }
    }
    kill_9(child);

    assert_eq!(integrity(&db), "ok");
    let m = manager(SqliteStore::open(&db).await.unwrap());
    assert!(!revoked.is_empty());
    for key in &issued {
        let id = keyward::ApiKey::parse(key).unwrap().id().to_string();
        match m.verify(key, &Requirements::none()).await {
            Ok(_) => assert!(
                !revoked.contains(&id),
                "revoked {id} verifies after kill -9"
            ),
            // Revoked after its ISSUED line: acknowledged or not, never lost the other way.
            Err(Error::Auth(AuthError::Revoked { .. })) => {}
            Err(e) => panic!("key {id}, acknowledged as issued, is broken after kill -9: {e}"),
        }
    }
    // Every record in the file, including any written after the last line read, decodes.
    let listed = m.list(&keyward::ListQuery::default()).await.unwrap();
    assert!(listed.len() >= issued.len());
}

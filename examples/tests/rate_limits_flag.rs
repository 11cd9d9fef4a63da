//! `keyward-server --rate-limits per-process|cluster`: the mode reaches the manager (the
//! startup line says which), the store's default applies without the flag, and another word
//! is refused with the accepted ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts the server on a temporary SQLite file with `extra` arguments and answers its
/// startup log line.
fn startup_line(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward-server"))
        .current_dir(dir.path())
        .args(["--db", "sqlite:keys.db", "--addr", "127.0.0.1:0"])
        .args(extra)
        .env("KEYWARD_INSECURE_FAST_HASH", "1")
        .env_remove("KEYWARD_DB")
        .env_remove("KEYWARD_RATE_LIMITS")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let line = stderr
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("keyward-server listening"));
    child.kill().ok();
    child.wait().ok();
    line.expect("a startup line")
}

#[test]
fn the_rate_limit_mode_follows_the_flag_and_defaults_to_the_stores() {
    assert!(startup_line(&[]).contains("rate_limits=per-process"));
    assert!(startup_line(&["--rate-limits", "cluster"]).contains("rate_limits=cluster"));
    assert!(startup_line(&["--rate-limits", "per-process"]).contains("rate_limits=per-process"));
}

#[test]
fn another_rate_limit_mode_is_refused_with_the_accepted_words() {
    let out = Command::new(env!("CARGO_BIN_EXE_keyward-server"))
        .args(["--rate-limits", "global"])
        .env_remove("KEYWARD_RATE_LIMITS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("per-process") && err.contains("cluster"),
        "{err}"
    );
}

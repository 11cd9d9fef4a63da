//! The quickstart runs to completion: every step it explains behaves as explained.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn quickstart_runs_every_step_and_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for expected in [
        "Step 6",
        "shown once",
        "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>",
        "403 Forbidden",
        "401 Unauthorized",
        "was revoked",
        "Every step behaved as explained",
    ] {
        assert!(stdout.contains(expected), "{expected}:\n{stdout}");
    }
    // The full key is printed exactly once; everywhere else it is masked.
    let full_keys: Vec<&str> = stdout
        .split_whitespace()
        .filter(|w| w.starts_with("kw_dev_") && w.len() == 69)
        .collect();
    assert_eq!(full_keys.len(), 1, "{stdout}");
    assert_eq!(stdout.matches(full_keys[0]).count(), 1, "{stdout}");
    assert!(!stderr.contains(full_keys[0]), "{stderr}");
}

//! The `keyward` CLI as the test files run it: one process per call, the insecure fast hash,
//! and none of the caller's `KEYWARD_*` or `RUST_LOG` variables (a test sets what it needs).

// Each test file uses a part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The CLI with the test environment, not yet given arguments.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.env("KEYWARD_INSECURE_FAST_HASH", "1")
        .env_remove("KEYWARD_KEY")
        .env_remove("KEYWARD_DB")
        .env_remove("KEYWARD_PREFIX")
        .env_remove("RUST_LOG");
    cmd
}

/// `keyward --db <db> <args…>`, with `KEYWARD_KEY` set when `key` is given.
pub fn keyward(db: &str, args: &[&str], key: Option<&str>) -> Output {
    let mut cmd = command();
    cmd.arg("--db").arg(db).args(args);
    if let Some(k) = key {
        cmd.env("KEYWARD_KEY", k);
    }
    cmd.output().unwrap()
}

/// The stdout of a run that must have exited 0.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What one run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `keyward <args…>` in `dir`, with extra environment `vars` and `stdin` written to it.
pub fn run(dir: &Path, args: &[&str], vars: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut cmd = command();
    cmd.args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    }
}

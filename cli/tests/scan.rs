//! `keyward scan` against files on disk: real keys are reported masked with file, line and
//! column and exit 1; look-alikes, ignored and hidden files are not; the secret never shows;
//! and docs/gitleaks.toml's rules match issued keys.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

mod common;

use keyward::ApiKey;
use keyward::conformance::assert_keys_hidden;

fn key(prefix: &str, env: &str) -> ApiKey {
    ApiKey::generate(prefix.parse().unwrap(), env.parse().unwrap()).unwrap()
}

/// A key with one character of its secret changed: the right shape, a wrong checksum.
fn look_alike(k: &ApiKey) -> String {
    let mut s = k.expose_secret().to_owned();
    let i = s.len() - 20;
    let c = if &s[i..=i] == "a" { "b" } else { "a" };
    s.replace_range(i..=i, c);
    s
}

#[test]
fn scan_reports_real_keys_masked_with_file_line_and_column_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (key("av", "prd"), key("kw", "dev"));
    fs::create_dir_all(d.join("src/deep")).unwrap();
    fs::write(
        d.join("src/config.rs"),
        format!(
            "// settings\nconst KEY: &str = \"{}\";\n",
            a.expose_secret()
        ),
    )
    .unwrap();
    fs::write(
        d.join("src/deep/.env.example"),
        format!("X={}\n", look_alike(&b)),
    )
    .unwrap();
    fs::write(
        d.join("src/deep/notes.txt"),
        format!("\n\n  {}", b.expose_secret()),
    )
    .unwrap();

    let run = common::run(d, &["scan", "."], &[], None);
    assert_eq!(run.code, 1, "{run:?}");
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec![
            format!("./src/config.rs:2:20: {}", a.masked()),
            format!("./src/deep/notes.txt:3:3: {}", b.masked()),
        ]
    );
    assert!(run.stderr.contains("2 keys found"), "{}", run.stderr);
    let shown = format!("{}{}", run.stdout, run.stderr);
    assert_keys_hidden(
        "scan's output",
        &shown,
        &[a.expose_secret(), b.expose_secret()],
    );

    // --only-prefix keeps the keys of --prefix; --json is one object a key.
    let run = common::run(
        d,
        &["--prefix", "av", "scan", "--only-prefix", "--json", "src"],
        &[],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
    let found: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{}", run.stdout);
    assert_eq!(found[0]["id"], a.id().as_str());
    assert_eq!(found[0]["line"], 2);
    assert_eq!(found[0]["path"], "src/config.rs");
    assert_keys_hidden("scan --json", &run.stdout, &[a.expose_secret()]);
}

#[test]
fn scan_finds_nothing_in_look_alikes_ignored_or_hidden_files_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = key("av", "prd");
    fs::create_dir_all(d.join("target")).unwrap();
    fs::create_dir_all(d.join(".git")).unwrap();
    fs::write(d.join(".gitignore"), "target/\n").unwrap();
    fs::write(d.join("target/out.log"), k.expose_secret()).unwrap();
    fs::write(d.join(".hidden"), k.expose_secret()).unwrap();
    fs::write(d.join(".git/config"), k.expose_secret()).unwrap();
    fs::write(d.join("ok.txt"), format!("{}\n", look_alike(&k))).unwrap();
    // .gitignore applies inside a git repository only; make the directory one.
    fs::write(d.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();

    let run = common::run(d, &["scan", "."], &[], None);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");

    // Asked to, it walks ignored and hidden files (never .git).
    let run = common::run(d, &["scan", "--hidden", "--no-ignore", "."], &[], None);
    assert_eq!(run.code, 1, "{run:?}");
    let mut files: Vec<&str> = run
        .stdout
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    files.sort_unstable();
    assert_eq!(files, ["./.hidden", "./target/out.log"]);
}

#[test]
fn scan_of_an_unreadable_path_exits_2_and_still_scans_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = key("kw", "stg");
    fs::write(d.join("a.txt"), "nothing here\n").unwrap();
    let run = common::run(d, &["scan", "missing.txt", "a.txt"], &[], None);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("missing.txt"), "{}", run.stderr);

    fs::write(d.join("b.txt"), k.expose_secret()).unwrap();
    let run = common::run(d, &["scan", "missing.txt", "b.txt"], &[], None);
    assert_eq!(
        run.code, 1,
        "a found key wins over an unreadable path: {run:?}"
    );
}

#[test]
fn scan_streams_a_large_file_of_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = key("kw", "prd");
    let pad = "A".repeat(3 * 1024 * 1024);
    fs::write(
        d.join("big.min.js"),
        format!("{pad}{}{pad}", k.expose_secret()),
    )
    .unwrap();
    let run = common::run(d, &["scan", "big.min.js"], &[], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stdout.trim(),
        format!("big.min.js:1:{}: {}", pad.len() + 1, k.masked())
    );
}

#[test]
fn the_published_gitleaks_rules_match_issued_keys_and_the_documented_regex() {
    let rules: toml::Value = toml::from_str(include_str!("../../docs/gitleaks.toml")).unwrap();
    let rules = rules["rules"].as_array().unwrap();
    let regex = |id: &str| {
        let rule = rules.iter().find(|r| r["id"].as_str() == Some(id)).unwrap();
        regex::Regex::new(rule["regex"].as_str().unwrap()).unwrap()
    };
    let kw = regex("keyward-api-key");
    let any = regex("keyward-api-key-any-prefix");
    assert_eq!(
        any.as_str().replace(['(', ')'], ""),
        keyward::SCANNER_REGEX,
        "the any-prefix rule is SCANNER_REGEX with a capture group"
    );
    for _ in 0..50 {
        let k = key("kw", "prd");
        let text = format!("token = \"{}\"", k.expose_secret());
        assert_eq!(&kw.captures(&text).unwrap()[1], k.expose_secret());
        assert_eq!(&any.captures(&text).unwrap()[1], k.expose_secret());
    }
    let other = key("av", "dev");
    assert!(!kw.is_match(other.expose_secret()));
    assert!(any.is_match(other.expose_secret()));
}

//! The environment-variable loader names each wiring mistake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward::client::{Diagnosis, KeyExpectation, diagnose, load_key};
use keyward::{ApiKey, MalformedKey};

fn expect() -> KeyExpectation {
    KeyExpectation::new("av".parse().unwrap(), "prd".parse().unwrap())
}

fn key(env: &str) -> String {
    ApiKey::generate("av".parse().unwrap(), env.parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned()
}

#[test]
fn each_wiring_mistake_gets_its_own_diagnosis() {
    let k = key("prd");
    let masked = ApiKey::parse(&k).unwrap().masked().to_string();
    assert_eq!(diagnose(None, &expect()), Diagnosis::Unset);
    assert_eq!(diagnose(Some(""), &expect()), Diagnosis::Empty);
    assert_eq!(diagnose(Some(" \n"), &expect()), Diagnosis::Empty);
    assert_eq!(
        diagnose(Some(&k), &expect()),
        Diagnosis::Ok {
            masked: masked.clone()
        }
    );
    assert_eq!(
        diagnose(Some(&format!("{k}\n")), &expect()),
        Diagnosis::SurroundingWhitespace {
            len: k.len() + 1,
            masked: masked.clone()
        }
    );
    assert_eq!(
        diagnose(Some(&format!("\"{k}\"")), &expect()),
        Diagnosis::Quoted {
            len: k.len() + 2,
            masked: masked.clone()
        }
    );
    assert_eq!(
        diagnose(Some(&format!("'{k}'")), &expect()),
        Diagnosis::Quoted {
            len: k.len() + 2,
            masked
        }
    );
    let dev = key("dev");
    assert!(matches!(
        diagnose(Some(&dev), &expect()),
        Diagnosis::WrongEnvironment { .. }
    ));
    let tl = ApiKey::generate("tl".parse().unwrap(), "prd".parse().unwrap()).unwrap();
    assert!(matches!(
        diagnose(Some(tl.expose_secret()), &expect()),
        Diagnosis::WrongPrefix { .. }
    ));
    assert_eq!(
        diagnose(Some("sk-proj-abcdef"), &expect()),
        Diagnosis::Malformed {
            len: 14,
            reason: MalformedKey::OtherProvider {
                provider: "an OpenAI"
            }
        }
    );
    assert!(matches!(
        diagnose(Some(&k[..k.len() - 3]), &expect()),
        Diagnosis::Malformed {
            reason: MalformedKey::Truncated { .. },
            ..
        }
    ));
    let mut typo = k.clone();
    typo.replace_range(25..26, if &k[25..26] == "x" { "y" } else { "x" });
    assert!(matches!(
        diagnose(Some(&typo), &expect()),
        Diagnosis::Malformed {
            reason: MalformedKey::BadChecksum,
            ..
        }
    ));
}

#[test]
fn messages_tell_what_to_do() {
    let dev = key("dev");
    let d = diagnose(Some(&dev), &expect()).to_string();
    assert!(
        d.contains("another environment") && d.contains("'prd'"),
        "{d}"
    );
    let q = diagnose(Some(&format!("\"{}\"", key("prd"))), &expect()).to_string();
    assert!(q.contains("remove the quotes"), "{q}");
    assert!(diagnose(None, &expect()).to_string().contains("not set"));
}

#[test]
fn load_key_reads_the_variable_and_refuses_with_the_diagnosis() {
    // Each test uses its own variable name: tests run in parallel in one process.
    let k = key("prd");
    // `std::env::set_var` is unsafe in edition 2024 (and this crate forbids unsafe code), so
    // the loader runs in a child process with the variables set.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "load_key_child", "--nocapture"])
        .env("KEYWARD_TEST_CHILD", "1")
        .env("KEYWARD_TEST_KEY", &k)
        .env("KEYWARD_TEST_QUOTED", format!("\"{k}\""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

#[test]
fn load_key_child() {
    if std::env::var("KEYWARD_TEST_CHILD").is_err() {
        return;
    }
    let loaded = load_key("KEYWARD_TEST_KEY", &expect()).unwrap();
    assert_eq!(
        loaded.expose_secret(),
        std::env::var("KEYWARD_TEST_KEY").unwrap()
    );
    let e = load_key("KEYWARD_TEST_QUOTED", &expect()).unwrap_err();
    assert!(matches!(e.diagnosis, Diagnosis::Quoted { .. }));
    assert!(e.to_string().starts_with("$KEYWARD_TEST_QUOTED: "));
    let e = load_key("KEYWARD_TEST_UNSET_VARIABLE", &expect()).unwrap_err();
    assert_eq!(e.diagnosis, Diagnosis::Unset);
}

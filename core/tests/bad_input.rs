//! Bad input: every case gives a typed error with a helpful message, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward::{ApiKey, CharDescription, MalformedKey};

fn good() -> String {
    ApiKey::generate("av".parse().unwrap(), "prd".parse().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned()
}

fn err(input: &str) -> (MalformedKey, String) {
    let e = ApiKey::parse(input).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn empty_input_says_empty() {
    let (e, msg) = err("");
    assert_eq!(e, MalformedKey::Empty);
    assert_eq!(msg, "the API key is empty");
}

#[test]
fn one_megabyte_is_rejected_by_length_first() {
    let big = "a".repeat(1 << 20);
    let (e, msg) = err(&big);
    assert_eq!(e, MalformedKey::TooLong { len: 1 << 20 });
    assert!(msg.contains("1048576 bytes"), "{msg}");
}

#[test]
fn nul_bytes_are_named() {
    let mut k = good();
    k.insert(10, '\0');
    let (e, msg) = err(&k);
    assert_eq!(
        e,
        MalformedKey::InvalidCharacter {
            position: 10,
            what: CharDescription::Nul
        }
    );
    assert!(msg.contains("a NUL byte at position 10"), "{msg}");
}

#[test]
fn non_ascii_and_fullwidth_underscore_are_named_as_look_alikes() {
    let k = good().replacen('_', "＿", 1);
    let (e, msg) = err(&k);
    assert!(
        matches!(
            e,
            MalformedKey::InvalidCharacter {
                position: 2,
                what: CharDescription::NonAscii
            }
        ),
        "{e:?}"
    );
    assert!(msg.contains("fullwidth"), "{msg}");
    let (e, _) = err("ключ");
    assert!(matches!(
        e,
        MalformedKey::InvalidCharacter {
            position: 0,
            what: CharDescription::NonAscii
        }
    ));
}

#[test]
fn two_keys_joined_are_detected() {
    let joined = format!("{}{}", good(), good());
    let (e, msg) = err(&joined);
    assert!(matches!(e, MalformedKey::WrongShape { parts: 7 }), "{e:?}");
    assert!(msg.contains("4 (prefix_env_id_secret)"), "{msg}");
    let spaced = format!("{} {}", good(), good());
    assert!(matches!(
        err(&spaced).0,
        MalformedKey::InvalidCharacter {
            what: CharDescription::Whitespace,
            ..
        }
    ));
    let comma = format!("{},{}", good(), good());
    assert!(matches!(
        err(&comma).0,
        MalformedKey::InvalidCharacter {
            what: CharDescription::Punctuation(','),
            ..
        }
    ));
}

#[test]
fn other_providers_keys_are_recognised() {
    for (input, who) in [
        (
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
            "an OpenAI",
        ),
        (
            "sk_live_51H8abcdefghijklmnopqrstuvwxyz0123456789",
            "a Stripe",
        ),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "a GitHub"),
        ("AKIAIOSFODNN7EXAMPLE", "an AWS access"),
    ] {
        let (e, msg) = err(input);
        assert_eq!(e, MalformedKey::OtherProvider { provider: who }, "{input}");
        assert!(
            msg.starts_with(&format!("this looks like {who} key")),
            "{msg}"
        );
    }
}

#[test]
fn quotes_and_whitespace_around_a_key_are_named() {
    let k = good();
    assert_eq!(err(&format!("\"{k}\"")).0, MalformedKey::Quoted);
    assert_eq!(err(&format!("'{k}'")).0, MalformedKey::Quoted);
    assert_eq!(
        err(&format!("{k}\n")).0,
        MalformedKey::SurroundingWhitespace { where_: "after it" }
    );
    assert_eq!(
        err(&format!(" {k}")).0,
        MalformedKey::SurroundingWhitespace {
            where_: "before it"
        }
    );
    assert_eq!(
        err(&format!("\t{k} ")).0,
        MalformedKey::SurroundingWhitespace {
            where_: "before and after it"
        }
    );
    assert!(err(&format!("{k}\n")).1.contains(".env"));
}

#[test]
fn truncated_and_overlong_keys_say_so() {
    let k = good();
    let (e, msg) = err(&k[..k.len() - 5]);
    assert_eq!(e, MalformedKey::Truncated { len: 44 });
    assert!(msg.contains("truncated"), "{msg}");
    assert_eq!(err(&format!("{k}x")).0, MalformedKey::Overlong { len: 50 });
    assert!(matches!(
        err("av_prd_short_x").0,
        MalformedKey::BadId { len: 5 }
    ));
    assert!(matches!(
        err("AV_prd_abcdefghijkl_x").0,
        MalformedKey::BadPrefix
    ));
    assert!(matches!(
        err("av_P_abcdefghijkl_x").0,
        MalformedKey::BadEnvironment
    ));
}

#[test]
fn no_error_message_repeats_the_input() {
    let k = good();
    let secret = &k[k.len() - 49..k.len() - 6];
    let mut inputs = vec![
        format!("\"{k}\""),
        format!("{k}\n"),
        format!("{k}{k}"),
        k[..k.len() - 1].to_owned(),
        format!("{k}z"),
        k.replacen('_', "-", 1),
    ];
    let mut typo = k.clone();
    typo.replace_range(20..21, if &k[20..21] == "a" { "b" } else { "a" });
    inputs.push(typo);
    for input in inputs {
        let e = ApiKey::parse(&input).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains(&secret[..12]), "{shown}");
    }
}

//! Secrets never reach Debug, Display, errors or HTTP answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward::Clock;
use keyward::client::{KeyExpectation, diagnose};
use keyward::conformance::{KeyForms, fix_checksum, with_wrong_secret};
use keyward::{
    ApiKey, Error, HashParams, IssueRequest, KeyManager, ManualClock, Requirements, Timestamp,
};

#[test]
fn debug_and_display_of_a_key_hide_the_secret() {
    let key = ApiKey::generate("av".parse().unwrap(), "prd".parse().unwrap()).unwrap();
    let forms = KeyForms::of(key.expose_secret());
    for shown in [
        format!("{key}"),
        format!("{key:?}"),
        format!("{key:#?}"),
        key.masked().to_string(),
        format!("{:?}", key.masked()),
    ] {
        forms.assert_hidden_in("a key's Debug or Display", &shown);
    }
    assert!(format!("{key:?}").contains("[REDACTED]"));
    assert_eq!(key.to_string(), format!("av_prd_{}_…", key.id()));
}

#[tokio::test]
async fn issued_keys_records_identities_and_every_verify_error_hide_the_secret() {
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_800_000_000_000));
    let m = KeyManager::builder(keyward_memory::MemoryStore::new())
        .prefix("av".parse().unwrap())
        .serve("dev".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap();
    let issued = m
        .issue(
            IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
                .scopes(["read"])
                .unwrap()
                .expires_in(std::time::Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let text = issued.key.expose_secret().to_owned();
    let forms = KeyForms::of(&text);
    forms.assert_hidden_in("an issued key's Debug", &format!("{issued:?}"));
    forms.assert_hidden_in("a record's Debug", &format!("{:?}", issued.record));
    let who = m.verify(&text, &Requirements::none()).await.unwrap();
    forms.assert_hidden_in(
        "an identity's Debug and JSON",
        &format!("{who:?} {}", serde_json::to_string(&who).unwrap()),
    );

    let prd = KeyManager::builder_arc(m.store().clone())
        .prefix("av".parse().unwrap())
        .serve("prd".parse().unwrap())
        .hash_params(HashParams::INSECURE_TEST_ONLY)
        .build()
        .unwrap();
    let wrong_secret = with_wrong_secret(&text, 10);
    let mut errors: Vec<Error> = vec![
        m.verify(&text, &Requirements::scopes(["admin"]).unwrap())
            .await
            .unwrap_err(),
        m.verify(
            &text,
            &Requirements::none().with_project("other".parse().unwrap()),
        )
        .await
        .unwrap_err(),
        prd.verify(&text, &Requirements::none()).await.unwrap_err(),
        m.verify(&wrong_secret, &Requirements::none())
            .await
            .unwrap_err(),
        m.verify(&format!("{text} "), &Requirements::none())
            .await
            .unwrap_err(),
        m.verify(&text[..text.len() - 3], &Requirements::none())
            .await
            .unwrap_err(),
    ];
    clock.advance(std::time::Duration::from_secs(61));
    errors.push(m.verify(&text, &Requirements::none()).await.unwrap_err());
    m.revoke(&issued.record.id).await.unwrap();
    errors.push(m.verify(&text, &Requirements::none()).await.unwrap_err());
    for e in &errors {
        forms.assert_hidden_in("an error", &format!("{e} {e:?}"));
        let r = keyward::http::rejection(e, "api", clock.now());
        let headers = format!("{:?}", r.headers);
        forms.assert_hidden_in("an HTTP answer", &format!("{} {headers}", r.body));
    }
}

#[test]
fn diagnoses_show_length_and_masked_form_only() {
    let key = ApiKey::generate("av".parse().unwrap(), "dev".parse().unwrap()).unwrap();
    let text = key.expose_secret();
    let forms = KeyForms::of(text);
    let expect = KeyExpectation::new("av".parse().unwrap(), "prd".parse().unwrap());
    for value in [
        text.to_owned(),
        format!("\"{text}\""),
        format!("{text}\n"),
        text[..60].to_owned(),
        fix_checksum(&text.replace("av_dev_", "tl_dev_")),
    ] {
        let d = diagnose(Some(&value), &expect);
        forms.assert_hidden_in("a diagnosis", &format!("{d} {d:?}"));
    }
}

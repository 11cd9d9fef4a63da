//! A refused rotation over HTTP: 409 Conflict, with the reason in the body.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use keyward::http::rejection;
use keyward::{Error, KeyId, RotationConflict, Timestamp};

#[test]
fn a_refused_rotation_is_409_conflict_naming_the_reason() {
    let id: KeyId = "7Kq2mZ9xA1bC".parse().unwrap();
    let successor: KeyId = "5Yy4xX3wW2vV".parse().unwrap();
    let now = Timestamp::from_unix_millis(1_800_000_000_000);
    for (conflict, says) in [
        (RotationConflict::Revoked { at: now }, "revoked"),
        (RotationConflict::Expired { at: now }, "expired"),
        (
            RotationConflict::AlreadyRotated { successor },
            "5Yy4xX3wW2vV",
        ),
    ] {
        let r = rejection(&Error::RotationConflict { id, conflict }, "api", now);
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.headers.is_empty(), "{:?}", r.headers);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "conflict");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("7Kq2mZ9xA1bC"), "{message}");
        assert!(message.contains(says), "{message}");
        assert!(message.contains("force"), "{message}");
    }
}

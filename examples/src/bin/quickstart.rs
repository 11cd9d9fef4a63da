//! The Keyward quickstart: a guided tour of an API key's life, on a fresh SQLite file.
//!
//! Run it with `cargo run -p keyward-examples --bin quickstart`. It issues a key, verifies
//! it, shows the two kinds of rejection (a missing scope, a wrong environment), revokes the
//! key and shows it rejected, explaining each step. It checks every outcome it describes and
//! exits non-zero if one does not behave as explained.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use keyward::{
    AuthError, Error, IssueRequest, KeyManager, KeyStore, Requirements, http::auth_rejection,
};
use keyward_sqlite::SqliteStore;

type BoxError = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quickstart failed: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => {
            println!();
            println!("Every step behaved as explained. Next: the admin CLI, `keyward --help`.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nquickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(n: u32, title: &str) {
    println!();
    println!("── Step {n}: {title}");
}

/// Fails the quickstart when an outcome differs from what the text says.
fn ensure(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok {
        Ok(())
    } else {
        Err(format!("expectation not met: {what}").into())
    }
}

/// Expects a rejection that `matches` accepts and that HTTP maps to `status`; prints both.
fn expect_rejection(
    outcome: Result<keyward::Identity, Error>,
    matches: impl Fn(&AuthError) -> bool,
    status: u16,
    manager: &KeyManager,
) -> Result<(), BoxError> {
    let err = match outcome {
        Ok(who) => {
            return Err(format!("key {} was accepted, but should be rejected", who.id).into());
        }
        Err(Error::Auth(err)) => err,
        Err(other) => return Err(format!("unexpected failure: {other}").into()),
    };
    ensure(matches(&err), &format!("a different rejection: {err}"))?;
    let rejection = auth_rejection(&err, "quickstart", manager.now());
    ensure(
        rejection.status.as_u16() == status,
        &format!("HTTP {status}, got {}", rejection.status),
    )?;
    println!("   Rejected: {err}");
    println!("   An HTTP service answers {}.", rejection.status);
    Ok(())
}

async fn run() -> Result<(), BoxError> {
    println!("Keyward quickstart: the life of one API key.");

    step(1, "open a key store");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("keyward.db");
    let store: Arc<dyn KeyStore> = Arc::new(SqliteStore::open(&path).await?);
    println!(
        "   Keys are kept in a store. Here: a fresh SQLite file, {}",
        path.display()
    );
    println!("   (deleted when the quickstart ends). PostgreSQL works the same way.");

    // A verifier for the `dev` environment. The default hash parameters are OWASP's
    // minimum for Argon2id: each hash takes a few tens of milliseconds, on purpose.
    let dev = KeyManager::builder_arc(Arc::clone(&store))
        .prefix("kw".parse()?)
        .serve("dev".parse()?)
        .build()?;

    step(
        2,
        "issue a key for project 'web-app', environment 'dev', scope 'write'",
    );
    let issued = dev
        .issue(
            IssueRequest::new("web-app".parse()?, "dev".parse()?)
                .scopes(["write"])?
                .name("quickstart"),
        )
        .await?;
    let key = issued.key;
    let id = key.id();
    println!("   The full key (shown once: copy it now, it cannot be shown again):");
    println!();
    println!("       {}", key.expose_secret());
    println!();
    println!("   It is one word: four parts joined by '_' (a double-click selects it all):");
    let (prefix, env) = (key.prefix(), key.environment());
    let parts = [
        (
            prefix.as_str(),
            "prefix: whose key this is, for people and secret scanners",
        ),
        (
            env.as_str(),
            "environment: where it works (a dev key fails on prd)",
        ),
        (
            id.as_str(),
            "id: public, the lookup key, shown in lists and logs",
        ),
        (
            "(49 chars)",
            "the secret (43 random characters, about 256 bits), then a",
        ),
        (
            "",
            "6-character checksum that catches typos before any database work",
        ),
    ];
    for (part, meaning) in parts {
        println!("     {part:<14}{meaning}");
    }
    println!(
        "   Everywhere else the key is shown masked: {}",
        key.masked()
    );

    let stored = store
        .get(&id)
        .await?
        .ok_or("the issued key is not in the store")?;
    let phc = stored.secret_hash.as_str();
    let header: Vec<&str> = phc.split('$').take(4).collect();
    ensure(
        !phc.contains(key.expose_secret()) && !phc.contains(&key.expose_secret()[21..]),
        "the store must not hold the secret",
    )?;
    println!("   The store keeps no secret, only its Argon2id hash:");
    println!("       {}$<salt>$<hash>", header.join("$"));
    println!(
        "   That is why the key is shown once: nobody, not even the server, can read it back."
    );

    step(
        3,
        "verify the key, as an endpoint that requires the 'write' scope",
    );
    let who = dev
        .verify(key.expose_secret(), &Requirements::scopes(["write"])?)
        .await?;
    ensure(who.id == id, "the verified id is the issued one")?;
    ensure(
        who.project.as_str() == "web-app",
        "the key belongs to web-app",
    )?;
    ensure(who.environment.as_str() == "dev", "the key is a dev key")?;
    println!("   Accepted. The service learns who is calling, not just \"some valid key\":");
    println!(
        "     id {}, project '{}', environment '{}', scopes: {}",
        who.id, who.project, who.environment, who.scopes
    );
    println!("   A service stores data under that project, so one key cannot reach another's.");

    step(4, "call an endpoint that requires the 'read' scope");
    println!("   The key is genuine, but it was only granted 'write'. Being valid (who you are)");
    println!("   is not being allowed (what you may do): that is 403 Forbidden, not 401.");
    expect_rejection(
        dev.verify(key.expose_secret(), &Requirements::scopes(["read"])?)
            .await,
        |e| {
            matches!(e, AuthError::InsufficientScope { missing, .. }
                if missing.iter().any(|s| s.as_str() == "read"))
        },
        403,
        &dev,
    )?;

    step(5, "send the dev key to a production ('prd') service");
    let prd = KeyManager::builder_arc(Arc::clone(&store))
        .prefix("kw".parse()?)
        .serve("prd".parse()?)
        .build()?;
    println!("   A service serving 'prd' reads the environment written in the key itself and");
    println!("   rejects it before touching the database or hashing anything. The message says");
    println!("   why, so a misconfigured deployment is fixed in minutes. The credential is not");
    println!("   valid here at all: 401 Unauthorized.");
    expect_rejection(
        prd.verify(key.expose_secret(), &Requirements::none()).await,
        |e| matches!(e, AuthError::WrongEnvironment { found, .. } if found.as_str() == "dev"),
        401,
        &prd,
    )?;

    step(6, "revoke the key, then try it again");
    let info = dev.revoke(&id).await?;
    ensure(info.status == "revoked", "the key is listed as revoked")?;
    println!("   Revoking (say, after the key leaked in a log) takes effect at once. Only the");
    println!(
        "   record changes: the id stays visible in lists, with status '{}'.",
        info.status
    );
    expect_rejection(
        dev.verify(key.expose_secret(), &Requirements::scopes(["write"])?)
            .await,
        |e| matches!(e, AuthError::Revoked { id: rid, .. } if *rid == id),
        401,
        &dev,
    )?;
    println!("   The rejection names the revocation only because the secret was proven first:");
    println!("   a guessed or unknown key gets the same \"not valid\" answer whatever the id.");
    Ok(())
}

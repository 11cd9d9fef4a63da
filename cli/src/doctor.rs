//! `doctor`: diagnose the key held in an environment variable (core's
//! [`keyward::client::diagnose`]), and with a store, whether the store accepts it. Never
//! prints the secret.

use std::process::ExitCode;

use keyward::client::diagnose;
use keyward::{ApiKey, Environment, Error, KeyExpectation, Prefix, Project, Requirements};
use zeroize::Zeroizing;

use crate::failure::{EXIT_REJECTED, EXIT_STORE_REFUSES, Failure};
use crate::keys::manager;

/// Diagnoses the key in `$var` from its text; with `db`, also asks the store whether it
/// accepts the key (unknown, revoked, expired, another project). Never prints the secret.
pub(crate) async fn doctor(
    var: &str,
    prefix: Prefix,
    env: Option<Environment>,
    project: Option<Project>,
    db: Option<&str>,
) -> Result<ExitCode, Failure> {
    let expect = match env {
        Some(env) => KeyExpectation::new(prefix, env),
        None => KeyExpectation::any_environment(prefix),
    };
    let value = std::env::var_os(var).map(|v| Zeroizing::new(v.to_string_lossy().into_owned()));
    let diagnosis = diagnose(value.as_ref().map(|v| v.as_str()), &expect);
    println!("${var}: {diagnosis}");
    if !diagnosis.is_ok() {
        return Ok(ExitCode::from(EXIT_REJECTED));
    }
    let (Some(db), Some(value)) = (db, value) else {
        println!(
            "the key store was not asked: pass --db (or set KEYWARD_DB) to check that it knows this key and accepts it"
        );
        return Ok(ExitCode::SUCCESS);
    };
    let key = ApiKey::parse(&value).map_err(|e| Failure::usage(e.to_string()))?;
    let manager = manager(db, prefix, &[key.environment()], None).await?;
    let mut req = Requirements::none();
    if let Some(p) = project {
        req = req.with_project(p);
    }
    let outcome = manager.verify_key(&key, &req).await;
    manager.shutdown().await?;
    match outcome {
        Ok(who) => {
            println!(
                "the key store accepts {}: project '{}', environment '{}', scopes: {}",
                key.masked(),
                who.project,
                who.environment,
                who.scopes
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Auth(reason)) => {
            println!("the key store refuses {}: {reason}", key.masked());
            Ok(ExitCode::from(EXIT_STORE_REFUSES))
        }
        Err(e) => Err(e.into()),
    }
}

//! Issuing and administering keys: `issue`, `revoke`, `rotate`, and the manager they share.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;

use keyward::{
    ApiKey, Credits, Environment, Error, HashParams, IssueRequest, KeyId, KeyLimits, KeyManager,
    KeyStore, Prefix, Quota, RateLimit, RotateOptions, ValueKind,
};
use keyward_cli::{hash_params_from_env, open_store};

use crate::args::IssueArgs;
use crate::failure::Failure;
use crate::output::format_time;

/// Opens the store and builds a manager whose changes are attributed to
/// [`cli_actor`](keyward_cli::cli_actor) (`cli:<user>@<host>`) in the audit trail. Commands
/// that never hash pass `None` for the parameters, so the insecure-hash warning only appears
/// where it matters.
pub(crate) async fn manager(
    db: &str,
    prefix: Prefix,
    serve: &[Environment],
    params: Option<HashParams>,
) -> Result<KeyManager, Failure> {
    Ok(builder(db, prefix, serve, params)
        .await?
        .build()?
        .acting_as(keyward_cli::cli_actor()))
}

/// The builder [`manager`] builds, for commands that change a setting first.
pub(crate) async fn builder(
    db: &str,
    prefix: Prefix,
    serve: &[Environment],
    params: Option<HashParams>,
) -> Result<keyward::KeyManagerBuilder, Failure> {
    let store: Arc<dyn KeyStore> = open_store(db).await?;
    let mut builder = KeyManager::builder_arc(store)
        .prefix(prefix)
        .hash_params(params.unwrap_or_default());
    for env in serve {
        builder = builder.serve(*env);
    }
    Ok(builder)
}

/// Prints the full key alone on stdout, so `KEY=$(keyward issue …)` captures exactly it.
fn print_key_once(key: &ApiKey) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", key.expose_secret())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::usage(format!("cannot write the key to stdout: {e}")))
}

pub(crate) async fn issue(db: &str, prefix: Prefix, args: IssueArgs) -> Result<ExitCode, Failure> {
    let manager = manager(db, prefix, &[], Some(hash_params_from_env())).await?;
    let mut req = IssueRequest::new(args.project, args.env);
    req.scopes = args.scopes.into_iter().collect();
    if let Some(name) = args.name {
        req = req.name(name);
    }
    if let Some(d) = args.expires_in {
        req = req.expires_in(d);
    }
    if let Some(metadata) = args.metadata {
        req = req.metadata(serde_json::Value::Object(metadata));
    }
    req = req.limits(KeyLimits {
        credits: args.credits.map(|amount| Credits {
            amount,
            refill: args.refill,
        }),
        quota: args.quota.as_deref().map(parse_quota).transpose()?,
        rate_limit: args.rate_limit.as_deref().map(parse_rate).transpose()?,
    });
    let issued = match manager.issue(req).await {
        // Core's limit on metadata (its size), named after the flag that set it.
        Err(Error::Invalid(e)) if e.kind == ValueKind::Metadata => {
            return Err(Failure::usage(format!("--metadata: {e}")));
        }
        other => other?,
    };
    let r = &issued.record;
    print_key_once(&issued.key)?;
    eprintln!(
        "issued key {} ({}) for project '{}', environment '{}', scopes: {}",
        r.id,
        issued.key.masked(),
        r.project,
        r.environment,
        r.scopes
    );
    if let Some(at) = r.expires_at {
        eprintln!("it expires at {}", format_time(at));
    }
    eprintln!("the full key is shown once, on stdout: store it now; only its hash is kept");
    Ok(ExitCode::SUCCESS)
}

/// `LIMIT` or `LIMIT/PERIOD` (period default: month).
fn parse_quota(s: &str) -> Result<Quota, Failure> {
    let (limit, period) = s.split_once('/').unwrap_or((s, "month"));
    Ok(Quota {
        limit: limit
            .parse()
            .map_err(|_| Failure::usage("--quota is LIMIT or LIMIT/PERIOD, e.g. 1000/day"))?,
        period: period.parse()?,
    })
}

/// `REQUESTS/SECONDS`.
fn parse_rate(s: &str) -> Result<RateLimit, Failure> {
    let bad = || Failure::usage("--rate-limit is REQUESTS/SECONDS, e.g. 100/60");
    let (requests, per) = s.split_once('/').ok_or_else(bad)?;
    let limit = RateLimit {
        requests: requests.parse().map_err(|_| bad())?,
        per_seconds: per.parse().map_err(|_| bad())?,
    };
    if limit.requests == 0 || limit.per_seconds == 0 {
        return Err(bad());
    }
    Ok(limit)
}

/// Reads a key id. A whole key is accepted too (its id is used), with a warning: a key typed
/// on a command line ends up in the shell's history. The argument is never echoed.
fn parse_id(arg: &str) -> Result<KeyId, Failure> {
    match KeyId::new(arg) {
        Ok(id) => Ok(id),
        Err(e) => match ApiKey::parse(arg) {
            Ok(key) => {
                eprintln!(
                    "warning: that is a whole key, not an id; using its id {}. Pass only the id: \
                     a full key on a command line is kept in the shell's history",
                    key.id()
                );
                Ok(key.id())
            }
            Err(_) => Err(Failure::usage(e.to_string())),
        },
    }
}

pub(crate) async fn revoke(db: &str, prefix: Prefix, id: &str) -> Result<ExitCode, Failure> {
    let id = parse_id(id)?;
    let manager = manager(db, prefix, &[], None).await?;
    let info = manager.revoke(&id).await?;
    let at = info.revoked_at.map_or_else(|| "-".to_owned(), format_time);
    println!("revoked key {} ({}) at {at}", info.id, info.masked);
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn rotate(
    db: &str,
    prefix: Prefix,
    id: &str,
    options: RotateOptions,
) -> Result<ExitCode, Failure> {
    let id = parse_id(id)?;
    let manager = manager(db, prefix, &[], Some(hash_params_from_env())).await?;
    let rotated = match manager.rotate_with(&id, options).await {
        Err(e @ Error::RotationConflict { .. }) => {
            return Err(Failure::usage(format!(
                "{e} (run again with --force to rotate it anyway)"
            )));
        }
        other => other?,
    };
    print_key_once(&rotated.key)?;
    eprintln!(
        "rotated key {id}: the new key is {} ({})",
        rotated.record.id,
        rotated.key.masked()
    );
    match rotated.expires_at() {
        Some(end) => eprintln!("the new key expires at {}", format_time(end)),
        None => eprintln!("the new key does not expire"),
    }
    eprintln!(
        "the old key {id} keeps working until {} (grace end), then expires",
        format_time(rotated.grace_end)
    );
    eprintln!("the full new key is shown once, on stdout: store it now; only its hash is kept");
    Ok(ExitCode::SUCCESS)
}

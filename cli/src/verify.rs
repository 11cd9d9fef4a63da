//! `verify`: check a key as a service would, reading it from `$KEYWARD_KEY` or stdin, never
//! from the command line.

use std::io::{self, BufRead, IsTerminal};
use std::process::ExitCode;

use keyward::{Error, Prefix, Requirements};
use keyward_cli::hash_params_from_env;
use zeroize::Zeroizing;

use crate::args::{KEY_VAR, VerifyArgs};
use crate::failure::{EXIT_REJECTED, Failure};
use crate::keys::builder;
use crate::output::format_time;

/// The key to verify: `$KEYWARD_KEY` if set and non-empty, else one line of stdin (its line
/// ending removed, nothing else, so stray spaces are diagnosed rather than hidden).
fn read_presented_key() -> Result<Zeroizing<String>, Failure> {
    if let Some(v) = std::env::var_os(KEY_VAR)
        && !v.is_empty()
    {
        return Ok(Zeroizing::new(v.to_string_lossy().into_owned()));
    }
    let stdin = io::stdin();
    if stdin.is_terminal() {
        eprint!("${KEY_VAR} is not set; paste the API key and press Enter: ");
    }
    let mut line = Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::usage(format!("cannot read the key from stdin: {e}")))?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// A key typed as a command-line argument lands in the shell's history and in process
/// lists; clap would also echo an unexpected argument in its error. Refuse it, without
/// repeating it.
pub(crate) fn refuse_misplaced_key(arg: Option<&str>, instead: &str) -> Result<(), Failure> {
    match arg {
        None => Ok(()),
        Some(_) => Err(Failure::usage(format!(
            "unexpected argument: do not pass a key on the command line (it is kept in the \
             shell's history and visible to other users); {instead} instead"
        ))),
    }
}

pub(crate) async fn verify(
    db: &str,
    prefix: Prefix,
    args: VerifyArgs,
) -> Result<ExitCode, Failure> {
    refuse_misplaced_key(
        args.misplaced_key.as_deref(),
        &format!("set ${KEY_VAR} or pipe the key on stdin"),
    )?;
    let presented = read_presented_key()?;
    let mut builder = builder(db, prefix, &args.envs, Some(hash_params_from_env())).await?;
    if let Some(mode) = args.rate_limits {
        builder = builder.rate_limits(mode);
    }
    let manager = builder.build()?.acting_as(keyward_cli::cli_actor());
    let req = Requirements {
        scopes: args.scopes.into_iter().collect(),
        project: args.project,
    };
    match manager.verify(&presented, &req).await {
        Ok(who) => {
            // The manager batches last-used times; write this one before the process exits.
            if let Err(e) = manager.shutdown().await {
                tracing::warn!(key.id = %who.id, error = %e, "could not record the key's use");
            }
            println!("ok: the key is valid");
            println!("id:          {}", who.id);
            println!("project:     {}", who.project);
            println!("environment: {}", who.environment);
            println!("scopes:      {}", who.scopes);
            if !who.name.is_empty() {
                println!("name:        {}", who.name);
            }
            if let Some(at) = who.expires_at {
                println!("expires:     {}", format_time(at));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Auth(e)) => {
            let status = keyward::http::auth_rejection(&e, "keyward", manager.now()).status;
            eprintln!("rejected (a server answers HTTP {}): {e}", status.as_u16());
            Ok(ExitCode::from(EXIT_REJECTED))
        }
        Err(e) => Err(e.into()),
    }
}

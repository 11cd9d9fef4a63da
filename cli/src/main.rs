//! `keyward`: the admin CLI. Issues, verifies, lists, revokes and rotates API keys in a store,
//! and diagnoses a key held in an environment variable.
//!
//! Exit codes: 0 success; 1 the key was rejected (`verify`), is not usable (`doctor`) or a
//! key was found (`scan`);
//! 2 a usage error (bad arguments, unknown id) or an infrastructure error (the store failed);
//! 3 (`doctor --db`) a well-formed key the store refuses.
//!
//! One concern a module: the command line ([`args`]), failures and exit codes ([`failure`]),
//! issuing and administering keys ([`keys`]), verifying ([`verify`]), listing ([`list`] with
//! [`output`]), quotas and usage ([`usage`]), the audit trail ([`audit`]), finding keys in
//! files ([`scan`]) and the diagnosis of a key variable ([`doctor`]). Every change is
//! attributed to `cli:<user>@<host>` in the audit trail.

#![forbid(unsafe_code)]

mod args;
mod audit;
mod doctor;
mod failure;
mod keys;
mod list;
mod output;
mod scan;
mod usage;
mod verify;

use std::process::ExitCode;

use clap::Parser as _;
use keyward::RotateOptions;
use keyward_cli::DEFAULT_DB_URL;

use crate::args::{Cli, Command};
use crate::failure::{EXIT_USAGE, Failure};

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 on a usage error, 0 for --help/--version
    keyward_cli::init_logging("warn");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let asked_db = cli.db.as_deref();
    let db = asked_db.unwrap_or(DEFAULT_DB_URL);
    match cli.command {
        Command::Issue(args) => keys::issue(db, cli.prefix, args).await,
        Command::Verify(args) => verify::verify(db, cli.prefix, args).await,
        Command::List(args) => list::list(db, cli.prefix, args).await,
        Command::Revoke { id } => keys::revoke(db, cli.prefix, &id).await,
        Command::Rotate { id, grace, force } => {
            let mut options = RotateOptions::grace(grace);
            if force {
                options = options.force();
            }
            keys::rotate(db, cli.prefix, &id, options).await
        }
        Command::Quota(cmd) => usage::quota(db, cli.prefix, cmd).await,
        Command::Usage { project, json } => usage::usage(db, cli.prefix, &project, json).await,
        Command::Scan(args) => scan::scan(cli.prefix, &args),
        Command::Audit(args) => audit::audit(db, cli.prefix, args).await,
        Command::Doctor {
            var,
            env,
            project,
            misplaced_key,
        } => {
            verify::refuse_misplaced_key(misplaced_key.as_deref(), &format!("set ${var}"))?;
            doctor::doctor(&var, cli.prefix, env, project, asked_db).await
        }
    }
}

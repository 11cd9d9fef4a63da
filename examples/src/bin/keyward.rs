//! `keyward`: the admin CLI. Issues, verifies, lists, revokes and rotates API keys in a store,
//! and diagnoses a key held in an environment variable.
//!
//! Exit codes: 0 success; 1 the key was rejected (`verify`) or is not usable (`doctor`);
//! 2 a usage error (bad arguments, unknown id) or an infrastructure error (the store failed).

#![forbid(unsafe_code)]

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keyward::KeyExpectation;
use keyward::client::diagnose;
use keyward::{
    ApiKey, Credits, Environment, Error, HashParams, IssueRequest, KeyId, KeyLimits, KeyManager,
    KeyStore, ListQuery, Period, Prefix, Project, Quota, QuotaUsage, RateLimit, Refill,
    Requirements, RotateOptions, Scope, parse_duration,
};
use keyward_examples::{
    DEFAULT_DB_URL, OpenStoreError, Table, for_each_page, format_time, hash_params_from_env,
    open_store,
};
use zeroize::Zeroizing;

/// The variable `verify` reads the key from (and `doctor` diagnoses by default).
const KEY_VAR: &str = "KEYWARD_KEY";

/// Keys fetched per store call by `list`.
const LIST_PAGE: u32 = 500;

const EXIT_REJECTED: u8 = 1;
const EXIT_USAGE: u8 = 2;
/// `doctor --db`: the key is well-formed, but the store does not accept it.
const EXIT_STORE_REFUSES: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "Issue, verify, list, revoke and rotate API keys",
    after_help = "Exit codes: 0 success, 1 key rejected (verify) or unusable (doctor), \
                  2 usage or store error, 3 (doctor --db) a well-formed key the store refuses.\n\
                  Set KEYWARD_INSECURE_FAST_HASH=1 only in tests: it hashes with weak parameters."
)]
struct Cli {
    /// The key store: sqlite:PATH, sqlite://PATH, sqlite::memory:, a file path (SQLite), or
    /// postgres://… (PostgreSQL) [default: sqlite:keyward.db]. `doctor` asks the store only
    /// when this (or KEYWARD_DB) is given.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "KEYWARD_DB",
        hide_env_values = true
    )]
    db: Option<String>,

    /// The key prefix this deployment issues and accepts (2-10 of a-z, 0-9).
    #[arg(long, global = true, env = "KEYWARD_PREFIX", default_value = "kw")]
    prefix: Prefix,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Issue a key; prints the full key alone on stdout (it is shown once).
    Issue(IssueArgs),
    /// Verify a key read from $KEYWARD_KEY, or else one line of stdin.
    Verify(VerifyArgs),
    /// List keys (masked; never a secret).
    List(ListArgs),
    /// Revoke a key at once.
    Revoke {
        /// The key's id (the 12 characters after `<prefix>_<env>_`).
        id: String,
    },
    /// Issue a replacement key; the old one keeps working during the grace period. A key
    /// that is revoked, expired or already rotated is refused unless --force is given.
    Rotate {
        /// The id of the key to replace.
        id: String,
        /// How long the old key keeps working (90s, 15m, 24h, 30d; at most 100 years).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        grace: Duration,
        /// Rotate even a revoked, expired or already rotated key (a second replacement).
        #[arg(long)]
        force: bool,
    },
    /// Set, remove or show a project's monthly (or daily, or custom) event quota.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Show a project's usage in the current period: its quota and its keys' quotas and credits.
    Usage {
        /// The project.
        #[arg(long)]
        project: Project,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Diagnose the key held in an environment variable, without printing it.
    Doctor {
        /// The variable to look at.
        #[arg(long, value_name = "NAME", default_value = KEY_VAR)]
        var: String,
        /// The environment the key should be for (any, if not given).
        #[arg(long)]
        env: Option<Environment>,
        /// With --db: the project the key should belong to.
        #[arg(long)]
        project: Option<Project>,
        /// Caught so that a key given as an argument is refused without being echoed.
        #[arg(hide = true)]
        misplaced_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum QuotaCommand {
    /// Set a project's event quota, shared by all its keys and every server instance.
    Set {
        /// The project.
        #[arg(long)]
        project: Project,
        /// Events allowed per period.
        #[arg(long)]
        limit: u64,
        /// The period: month (UTC calendar month), day, or a duration such as 1h or 7d.
        #[arg(long, default_value = "month")]
        period: Period,
    },
    /// Remove a project's event quota.
    Remove {
        /// The project.
        #[arg(long)]
        project: Project,
    },
    /// Show a project's event quota and its use in the current period.
    Show {
        /// The project.
        #[arg(long)]
        project: Project,
    },
}

#[derive(Debug, Args)]
struct IssueArgs {
    /// The project the key is bound to.
    #[arg(long)]
    project: Project,
    /// The environment the key is bound to (dev, stg, prd…).
    #[arg(long)]
    env: Environment,
    /// A scope to grant; repeat the option or separate with commas (at most 64).
    #[arg(long = "scope", required = true, value_delimiter = ',')]
    scopes: Vec<Scope>,
    /// A human-readable name (at most 128 bytes, no control or invisible characters).
    #[arg(long)]
    name: Option<String>,
    /// Expire the key after this long (90s, 15m, 24h, 30d, 2w; more than zero, at most 100
    /// years).
    #[arg(long, value_parser = parse_duration)]
    expires_in: Option<Duration>,
    /// Uses granted to the key (one per successful verify); when used up the key gets 429.
    #[arg(long)]
    credits: Option<u64>,
    /// Refill the credits each period to an amount: monthly:N, daily:N, or 1h:N.
    #[arg(long, requires = "credits")]
    refill: Option<Refill>,
    /// The key's own event quota per period, as LIMIT or LIMIT/PERIOD (e.g. 1000/day).
    #[arg(long)]
    quota: Option<String>,
    /// A rate limit enforced per server process, as REQUESTS/SECONDS (e.g. 100/60).
    #[arg(long)]
    rate_limit: Option<String>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The environment the verifying service serves; repeat to accept several.
    #[arg(long = "env", required = true)]
    envs: Vec<Environment>,
    /// Require the key to belong to this project.
    #[arg(long)]
    project: Option<Project>,
    /// A scope the key must hold; repeat the option or separate with commas.
    #[arg(long = "scope", value_delimiter = ',')]
    scopes: Vec<Scope>,
    /// Caught so that a key given as an argument is refused without being echoed.
    #[arg(hide = true)]
    misplaced_key: Option<String>,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only keys of this project.
    #[arg(long)]
    project: Option<Project>,
    /// Only keys of this environment.
    #[arg(long)]
    env: Option<Environment>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

/// A failure that ends the command with a message on stderr and an exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = if e.as_auth().is_some() {
            EXIT_REJECTED
        } else {
            EXIT_USAGE
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

impl From<OpenStoreError> for Failure {
    fn from(e: OpenStoreError) -> Self {
        Failure::usage(e.to_string())
    }
}

impl From<keyward::InvalidValue> for Failure {
    fn from(e: keyward::InvalidValue) -> Self {
        Failure::usage(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 on a usage error, 0 for --help/--version
    keyward_examples::init_logging("warn");
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
        Command::Issue(args) => issue(db, cli.prefix, args).await,
        Command::Verify(args) => verify(db, cli.prefix, args).await,
        Command::List(args) => list(db, cli.prefix, args).await,
        Command::Revoke { id } => revoke(db, cli.prefix, &id).await,
        Command::Rotate { id, grace, force } => {
            let mut options = RotateOptions::grace(grace);
            if force {
                options = options.force();
            }
            rotate(db, cli.prefix, &id, options).await
        }
        Command::Quota(cmd) => quota(db, cli.prefix, cmd).await,
        Command::Usage { project, json } => usage(db, cli.prefix, &project, json).await,
        Command::Doctor {
            var,
            env,
            project,
            misplaced_key,
        } => {
            refuse_misplaced_key(misplaced_key.as_deref(), &format!("set ${var}"))?;
            doctor(&var, cli.prefix, env, project, asked_db).await
        }
    }
}

/// Opens the store and builds a manager. Commands that never hash pass `None` for the
/// parameters, so the insecure-hash warning only appears where it matters.
async fn manager(
    db: &str,
    prefix: Prefix,
    serve: &[Environment],
    params: Option<HashParams>,
) -> Result<KeyManager, Failure> {
    let store: Arc<dyn KeyStore> = open_store(db).await?;
    let mut builder = KeyManager::builder_arc(store)
        .prefix(prefix)
        .hash_params(params.unwrap_or_default());
    for env in serve {
        builder = builder.serve(*env);
    }
    Ok(builder.build()?)
}

/// Prints the full key alone on stdout, so `KEY=$(keyward issue …)` captures exactly it.
fn print_key_once(key: &ApiKey) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", key.expose_secret())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::usage(format!("cannot write the key to stdout: {e}")))
}

async fn issue(db: &str, prefix: Prefix, args: IssueArgs) -> Result<ExitCode, Failure> {
    let manager = manager(db, prefix, &[], Some(hash_params_from_env())).await?;
    let mut req = IssueRequest::new(args.project, args.env);
    req.scopes = args.scopes.into_iter().collect();
    if let Some(name) = args.name {
        req = req.name(name);
    }
    if let Some(d) = args.expires_in {
        req = req.expires_in(d);
    }
    req = req.limits(KeyLimits {
        credits: args.credits.map(|amount| Credits {
            amount,
            refill: args.refill,
        }),
        quota: args.quota.as_deref().map(parse_quota).transpose()?,
        rate_limit: args.rate_limit.as_deref().map(parse_rate).transpose()?,
    });
    let issued = manager.issue(req).await?;
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

fn describe_usage(u: &QuotaUsage) -> String {
    let resets = u.resets_at.map_or_else(
        || "never resets".to_owned(),
        |t| format!("resets {}", format_time(t)),
    );
    format!(
        "{} of {} used, {} left (since {}, {resets})",
        u.used,
        u.limit,
        u.remaining,
        format_time(u.period_start)
    )
}

async fn quota(db: &str, prefix: Prefix, cmd: QuotaCommand) -> Result<ExitCode, Failure> {
    let manager = manager(db, prefix, &[], None).await?;
    match cmd {
        QuotaCommand::Set {
            project,
            limit,
            period,
        } => {
            manager
                .set_project_quota(&project, Some(Quota { limit, period }))
                .await?;
            eprintln!("project '{project}' may now send {limit} events per {period}");
        }
        QuotaCommand::Remove { project } => {
            manager.set_project_quota(&project, None).await?;
            eprintln!("project '{project}' has no event quota now");
        }
        QuotaCommand::Show { project } => match manager.usage(&project).await?.project_quota {
            Some(u) => {
                let q = manager.project_quota(&project).await?;
                let period = q.map_or_else(String::new, |q| format!(" per {}", q.period));
                println!(
                    "project '{project}': {} events{period}; {}",
                    u.limit,
                    describe_usage(&u)
                );
            }
            None => println!("project '{project}' has no event quota"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

async fn usage(
    db: &str,
    prefix: Prefix,
    project: &Project,
    json: bool,
) -> Result<ExitCode, Failure> {
    let manager = manager(db, prefix, &[], None).await?;
    let write_err = |e: io::Error| Failure::usage(format!("cannot write to stdout: {e}"));
    let mut out = io::stdout().lock();
    let project_quota = manager.project_usage(project).await?;
    if json {
        let head = format!(
            "{{\"project\":{},\"project_quota\":{},\"keys\":[",
            encode(project)?,
            encode(&project_quota)?
        );
        out.write_all(head.as_bytes()).map_err(write_err)?;
    } else {
        match &project_quota {
            Some(u) => writeln!(out, "project '{project}' events: {}", describe_usage(u)),
            None => writeln!(out, "project '{project}' has no event quota"),
        }
        .map_err(write_err)?;
    }
    // One page of keys at a time: memory stays bounded however many keys the project has.
    let mut query = ListQuery {
        project: Some(project.clone()),
        limit: LIST_PAGE,
        ..ListQuery::default()
    };
    let mut first = true;
    loop {
        let page = manager.key_usage(&query).await?;
        for k in &page.keys {
            if json {
                let sep = if first { "" } else { "," };
                write!(out, "{sep}{}", encode(k)?).map_err(write_err)?;
                first = false;
                continue;
            }
            if let Some(u) = &k.quota {
                writeln!(out, "key {} events: {}", k.id, describe_usage(u)).map_err(write_err)?;
            }
            if let Some(u) = &k.credits {
                writeln!(out, "key {} credits: {}", k.id, describe_usage(u)).map_err(write_err)?;
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    if json {
        out.write_all(b"]}\n").map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    Ok(ExitCode::SUCCESS)
}

/// A value as JSON text, for the streamed `usage --json` report.
fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value)
        .map_err(|e| Failure::usage(format!("cannot encode the report: {e}")))
}

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
fn refuse_misplaced_key(arg: Option<&str>, instead: &str) -> Result<(), Failure> {
    match arg {
        None => Ok(()),
        Some(_) => Err(Failure::usage(format!(
            "unexpected argument: do not pass a key on the command line (it is kept in the \
             shell's history and visible to other users); {instead} instead"
        ))),
    }
}

async fn verify(db: &str, prefix: Prefix, args: VerifyArgs) -> Result<ExitCode, Failure> {
    refuse_misplaced_key(
        args.misplaced_key.as_deref(),
        &format!("set ${KEY_VAR} or pipe the key on stdin"),
    )?;
    let presented = read_presented_key()?;
    let manager = manager(db, prefix, &args.envs, Some(hash_params_from_env())).await?;
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

/// Lists keys page by page, writing each page before fetching the next, so memory stays at
/// one page however many keys match (a JSON array is written element by element).
async fn list(db: &str, prefix: Prefix, args: ListArgs) -> Result<ExitCode, Failure> {
    let manager = manager(db, prefix, &[], None).await?;
    let query = ListQuery {
        project: args.project,
        environment: args.env,
        limit: LIST_PAGE,
        ..ListQuery::default()
    };
    let write_err = |e: io::Error| Failure::usage(format!("cannot write to stdout: {e}"));
    let mut out = io::stdout().lock();
    let mut table = Table::default();
    let mut count = 0usize;
    if args.json {
        out.write_all(b"[").map_err(write_err)?;
    } else {
        out.write_all(table.header().as_bytes())
            .map_err(write_err)?;
    }
    for_each_page(&manager, query, |page| {
        let text =
            if args.json {
                let mut text = String::new();
                for key in &page {
                    text.push_str(if count == 0 { "\n  " } else { ",\n  " });
                    text.push_str(&serde_json::to_string(key).map_err(|e| {
                        Failure::usage(format!("cannot encode the list as JSON: {e}"))
                    })?);
                    count += 1;
                }
                text
            } else {
                count += page.len();
                table.rows(&page)
            };
        out.write_all(text.as_bytes()).map_err(write_err)
    })
    .await?;
    if args.json {
        out.write_all(if count == 0 { b"]\n" } else { b"\n]\n" })
            .map_err(write_err)?;
    } else if count == 0 {
        eprintln!("no keys match");
    }
    out.flush().map_err(write_err)?;
    Ok(ExitCode::SUCCESS)
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

async fn revoke(db: &str, prefix: Prefix, id: &str) -> Result<ExitCode, Failure> {
    let id = parse_id(id)?;
    let manager = manager(db, prefix, &[], None).await?;
    let info = manager.revoke(&id).await?;
    let at = info.revoked_at.map_or_else(|| "-".to_owned(), format_time);
    println!("revoked key {} ({}) at {at}", info.id, info.masked);
    Ok(ExitCode::SUCCESS)
}

async fn rotate(
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

/// Diagnoses the key in `$var` from its text; with `db`, also asks the store whether it
/// accepts the key (unknown, revoked, expired, another project). Never prints the secret.
async fn doctor(
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

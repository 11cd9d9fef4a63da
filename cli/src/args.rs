//! The command line: every command, option and its help text.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keyward::{Environment, KeyId, Period, Prefix, Project, Refill, Scope, parse_duration};
use keyward_cli::{DEFAULT_DB_URL, STORE_URLS};

/// The variable `verify` reads the key from (and `doctor` diagnoses by default).
pub(crate) const KEY_VAR: &str = "KEYWARD_KEY";

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "Issue, verify, list, revoke and rotate API keys",
    after_help = "Exit codes: 0 success, 1 key rejected (verify), unusable (doctor) or found (scan), \
                  2 usage or store error, 3 (doctor --db) a well-formed key the store refuses.\n\
                  Set KEYWARD_INSECURE_FAST_HASH=1 only in tests: it hashes with weak parameters."
)]
pub(crate) struct Cli {
    /// The key store (see `db_help` for the forms accepted).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "KEYWARD_DB",
        hide_env_values = true,
        help = db_help()
    )]
    pub db: Option<String>,

    /// The key prefix this deployment issues and accepts (2-10 of a-z, 0-9).
    #[arg(long, global = true, env = "KEYWARD_PREFIX", default_value = "kw")]
    pub prefix: Prefix,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Find Keyward keys in files (checksum-checked), print them masked with file and line,
    /// and exit 1 if any is found: usable as a pre-commit hook.
    Scan(ScanArgs),
    /// Show a project's audit trail, newest first: who issued, changed, rotated or revoked
    /// which key, and quota changes (never a secret).
    Audit(AuditArgs),
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

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Files and directories to scan (directories are walked, honouring .gitignore).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,
    /// Report only keys of this deployment's --prefix (by default, keys of any prefix).
    #[arg(long)]
    pub only_prefix: bool,
    /// Print one JSON object per key instead of `path:line:column: key`.
    #[arg(long)]
    pub json: bool,
    /// Walk hidden files and directories too (.git is always skipped).
    #[arg(long)]
    pub hidden: bool,
    /// Walk files that .gitignore, .ignore or git's excludes would skip.
    #[arg(long)]
    pub no_ignore: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QuotaCommand {
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
pub(crate) struct IssueArgs {
    /// The project the key is bound to.
    #[arg(long)]
    pub project: Project,
    /// The environment the key is bound to (dev, stg, prd…).
    #[arg(long)]
    pub env: Environment,
    /// A scope to grant; repeat the option or separate with commas (at most 64).
    #[arg(long = "scope", required = true, value_delimiter = ',')]
    pub scopes: Vec<Scope>,
    /// A human-readable name (at most 128 characters, no control or invisible characters).
    #[arg(long)]
    pub name: Option<String>,
    /// Expire the key after this long (90s, 15m, 24h, 30d, 2w; more than zero, at most 100
    /// years).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, allow_hyphen_values = true)]
    pub expires_in: Option<Duration>,
    /// Free-form metadata kept with the key: a JSON object, e.g. '{"team":"obs"}' (at most
    /// 16 KiB).
    #[arg(long, value_name = "JSON", value_parser = json_object)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Uses granted to the key (one per successful verify); when used up the key gets 429.
    #[arg(long)]
    pub credits: Option<u64>,
    /// Refill the credits each period to an amount: monthly:N, daily:N, or 1h:N.
    #[arg(long, requires = "credits")]
    pub refill: Option<Refill>,
    /// The key's own event quota per period, as LIMIT or LIMIT/PERIOD (e.g. 1000/day).
    #[arg(long)]
    pub quota: Option<String>,
    /// The key's rate limit, as REQUESTS/SECONDS (e.g. 100/60); its burst is REQUESTS. It holds
    /// across every instance on PostgreSQL (cluster mode), per process on SQLite.
    #[arg(long)]
    pub rate_limit: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The environment the verifying service serves; repeat to accept several.
    #[arg(long = "env", required = true)]
    pub envs: Vec<Environment>,
    /// Require the key to belong to this project.
    #[arg(long)]
    pub project: Option<Project>,
    /// A scope the key must hold; repeat the option or separate with commas.
    #[arg(long = "scope", value_delimiter = ',')]
    pub scopes: Vec<Scope>,
    /// Where the key's rate limit holds: `cluster` (shared with every instance on the store;
    /// the default on PostgreSQL) or `per-process` (this command alone; the default on
    /// SQLite).
    #[arg(long, value_name = "MODE", env = "KEYWARD_RATE_LIMITS")]
    pub rate_limits: Option<keyward::RateLimitMode>,
    /// Caught so that a key given as an argument is refused without being echoed.
    #[arg(hide = true)]
    pub misplaced_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only keys of this project.
    #[arg(long)]
    pub project: Option<Project>,
    /// Only keys of this environment.
    #[arg(long)]
    pub env: Option<Environment>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The project.
    #[arg(long)]
    pub project: Project,
    /// Only this key's entries (its id).
    #[arg(long, value_name = "ID")]
    pub key: Option<KeyId>,
    /// Print one JSON object a line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// At most this many entries.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    /// Only entries older than this one (its SEQ): the next page after a listing.
    #[arg(long, value_name = "SEQ")]
    pub before: Option<u64>,
}

/// The `--db` help: every URL form [`keyward_cli::open_store`] accepts, from the one constant
/// its error message names too.
fn db_help() -> String {
    format!(
        "The key store: {STORE_URLS} [default: {DEFAULT_DB_URL}]. `doctor` asks the store only \
         when this (or KEYWARD_DB) is given"
    )
}

/// What `--expires-in` refuses, before the store is opened.
const EXPIRES_IN_RULE: &str = "--expires-in must be positive: a whole number of seconds, \
     minutes, hours, days or weeks above zero (90s, 15m, 24h, 30d, 2w), at most 100 years";

/// `--expires-in`: a duration above zero. `0`, `0s`, an empty value and a negative one are
/// refused with [`EXPIRES_IN_RULE`]; other malformed values with the duration grammar.
pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let number = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if t.is_empty() || t.starts_with('-') || number.parse::<u64>() == Ok(0) {
        return Err(EXPIRES_IN_RULE.to_owned());
    }
    match parse_duration(t) {
        Ok(d) if d.is_zero() => Err(EXPIRES_IN_RULE.to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("--expires-in: {e}")),
    }
}

/// `--metadata`: a JSON object. A parse error or another JSON value (an array, a string…) is
/// refused naming the flag; the size limit is core's (checked when the key is issued).
pub(crate) fn json_object(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let value: serde_json::Value = serde_json::from_str(s).map_err(|e| {
        format!("--metadata must be a JSON object such as '{{\"team\":\"obs\"}}': {e}")
    })?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(format!(
            "--metadata must be a JSON object such as '{{\"team\":\"obs\"}}', not {}",
            match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn expires_in_refuses_zero_empty_and_negative_durations() {
        for bad in ["0", "0s", "00m", "0d", "", " ", "-1h", "-0s"] {
            let err = positive_duration(bad).err().unwrap_or_default();
            assert!(
                err.starts_with("--expires-in must be positive"),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(positive_duration("90s"), Ok(Duration::from_secs(90)));
        let err = positive_duration("3 fortnights").err().unwrap_or_default();
        assert!(err.starts_with("--expires-in: invalid duration"), "{err}");
    }

    #[test]
    fn metadata_must_be_a_json_object() {
        assert!(json_object(r#"{"team":"obs","n":1}"#).is_ok_and(|m| m.len() == 2));
        for (bad, says) in [
            ("{team: obs}", "--metadata must be a JSON object"),
            ("", "--metadata must be a JSON object"),
            ("[1,2]", "not an array"),
            ("\"obs\"", "not a string"),
            ("42", "not a number"),
            ("null", "not null"),
        ] {
            let err = json_object(bad).err().unwrap_or_default();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_db_help_names_every_store_url_form() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains(STORE_URLS), "{help}");
    }
}

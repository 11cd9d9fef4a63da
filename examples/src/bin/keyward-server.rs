//! `keyward-server`: the example ingestion server. A trace-ingestion API protected by API keys,
//! with self-service key management; see `keyward_examples::server` for the routes.
//!
//! ```text
//! keyward-server [--db sqlite:keyward.db] [--addr 127.0.0.1:8080] [--env dev]… [--prefix kw]
//!                [--secure-cookies] [--webhook-url http://…] [--rate-limits per-process|cluster]
//!                [--secret-scanning-public-key FILE [--secret-scanning-key-id ID] [--secret-scanning-flag-only]]
//! ```
//!
//! Serves Keyward's metrics at `GET /metrics` in Prometheus text format, without
//! authentication (the default address is loopback; see `keyward_examples::server::metrics`).
//!
//! Stops gracefully on SIGINT or SIGTERM: requests in flight finish, then the pending
//! last-used times are written to the store.

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use keyward::{Environment, KeyManager, Prefix};
use keyward_cli::{DEFAULT_DB_URL, STORE_URLS, hash_params_from_env, open_store};
use keyward_examples::server;

#[derive(Debug, Parser)]
#[command(
    name = "keyward-server",
    version,
    about = "Example ingestion server protected by Keyward API keys",
    after_help = "Issue the first admin key with the CLI on the same database:\n  \
                  keyward --db sqlite:keyward.db issue --project web-app --env dev --scope admin\n\
                  then sign in with it at http://<addr>/login to manage keys in the browser.\n\
                  Set KEYWARD_INSECURE_FAST_HASH=1 only in tests: it hashes with weak parameters."
)]
struct Args {
    /// The key store (the forms `keyward_cli::open_store` accepts).
    #[arg(long, value_name = "URL", env = "KEYWARD_DB", default_value = DEFAULT_DB_URL,
          hide_env_values = true, help = format!("The key store: {STORE_URLS}"))]
    db: String,

    /// The address to listen on.
    #[arg(long, env = "KEYWARD_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,

    /// An environment whose keys this server accepts; repeat to accept several.
    #[arg(long = "env", default_value = "dev")]
    envs: Vec<Environment>,

    /// The key prefix this deployment issues and accepts (2-10 of a-z, 0-9).
    #[arg(long, env = "KEYWARD_PREFIX", default_value = "kw")]
    prefix: Prefix,

    /// Mark the sign-in session cookie `Secure` (named `__Host-keyward_session`): set it
    /// whenever browsers reach the server over HTTPS (directly or through a TLS proxy).
    #[arg(long, env = "KEYWARD_SECURE_COOKIES")]
    secure_cookies: bool,

    /// POST every key event (issued, revoked, rotated, expiring, quota threshold, credits
    /// low) as JSON to this http:// URL, retried with backoff; events are logged either way.
    #[arg(
        long,
        value_name = "URL",
        env = "KEYWARD_WEBHOOK_URL",
        hide_env_values = true
    )]
    webhook_url: Option<reqwest::Url>,

    /// GitHub's secret-scanning public key (PEM): mounts the partner endpoint at
    /// /api/v1/secret-scanning/, where signed leak reports revoke the reported keys.
    #[arg(long, value_name = "FILE")]
    secret_scanning_public_key: Option<std::path::PathBuf>,

    /// The identifier of that key (default: the SHA-256 of the PEM file in hex, as GitHub
    /// names its keys).
    #[arg(long, value_name = "ID", requires = "secret_scanning_public_key")]
    secret_scanning_key_id: Option<String>,

    /// Only log leaked keys reported by GitHub; do not revoke them.
    #[arg(long, requires = "secret_scanning_public_key")]
    secret_scanning_flag_only: bool,

    /// Where keys' rate limits hold: `cluster` (across every instance sharing the store; the
    /// default on PostgreSQL) or `per-process` (each instance admits a key's whole rate; the
    /// default on SQLite).
    #[arg(long, value_name = "MODE", env = "KEYWARD_RATE_LIMITS")]
    rate_limits: Option<keyward::RateLimitMode>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keyward_cli::init_logging("info");
    if let Err(e) = keyward_cli::disable_core_dumps() {
        tracing::warn!(error = %e, "could not disable core dumps; a crash may write keys held in memory to disk");
    }
    keyward_cli::run_main(run(args))
}

async fn run(args: Args) -> Result<(), String> {
    // Before the manager is built: it takes its metric handles from this recorder.
    let metrics = server::metrics::install()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    tokio::spawn(server::metrics::upkeep(metrics.clone()));
    let store = open_store(&args.db)
        .await
        .map_err(|e| format!("cannot open the key store: {e}"))?;
    let mut builder = KeyManager::builder_arc(store)
        .prefix(args.prefix)
        .hash_params(hash_params_from_env());
    for env in &args.envs {
        builder = builder.serve(*env);
    }
    if let Some(mode) = args.rate_limits {
        builder = builder.rate_limits(mode);
    }
    let builder = server::webhook::with_event_sinks(builder, args.webhook_url.clone())?;
    let manager = builder.build().map_err(|e| e.to_string())?;
    let secret_scanning = match &args.secret_scanning_public_key {
        Some(pem) => Some(server::secret_scanning::config_from_file(
            pem,
            args.secret_scanning_key_id.clone(),
            args.secret_scanning_flag_only,
        )?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let envs: Vec<String> = args.envs.iter().map(ToString::to_string).collect();
    tracing::info!(
        %addr,
        prefix = %args.prefix,
        environments = %envs.join(","),
        rate_limits = %manager.rate_limit_mode(),
        "keyward-server listening"
    );
    // One line on stdout, for scripts: the address actually bound (useful with port 0).
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "listening on http://{addr}").and_then(|()| out.flush());
    drop(out);
    let sessions = server::SessionOptions {
        secure: args.secure_cookies,
        ..server::SessionOptions::default()
    };
    let mut app =
        server::router_with(manager.clone(), &sessions).merge(server::metrics::router(metrics));
    if let Some(config) = secret_scanning {
        app = server::secret_scanning::mount(app, manager.clone(), config);
    }
    server::serve_app(listener, app, manager, server::shutdown_signal())
        .await
        .map_err(|e| format!("the server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

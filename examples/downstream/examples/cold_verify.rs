//! How long a cold verify takes in this crate's build: issues one key with the default
//! (OWASP) hash parameters and verifies it on a fresh manager, so the verify is cold.
//!
//! `cargo run --example cold_verify` (with the `[profile.dev.package.argon2]` lines), and
//! `cargo run --example cold_verify --config 'profile.dev.package.argon2.opt-level=0' --config
//! 'profile.dev.package.blake2.opt-level=0'` (as a service without them).

use std::time::Instant;

use keyward::{IssueRequest, KeyManager, Requirements};
use keyward_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::in_memory().await?;
    let issuer = KeyManager::builder(store.clone())
        .serve("dev".parse()?)
        .build()?;
    let request = IssueRequest::new("shop".parse()?, "dev".parse()?).scopes(["read"])?;
    let issued = issuer.issue(request).await?;
    let requirements = Requirements::scopes(["read"])?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let cold = KeyManager::builder(store.clone())
            .serve("dev".parse()?)
            .build()?;
        let start = Instant::now();
        cold.verify(issued.key.expose_secret(), &requirements)
            .await?;
        times.push(start.elapsed());
    }
    times.sort();
    println!("cold verify, median of 5: {:?}", times[2]);
    Ok(())
}

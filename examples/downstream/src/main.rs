//! Serves the routes of `keyward_downstream::app` on 127.0.0.1:3000 with keys in `keys.db`.

use keyward_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open("keys.db").await?;
    let keys = keyward::KeyManager::builder(store)
        .serve("dev".parse()?)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, keyward_downstream::app(keys)).await?;
    Ok(())
}

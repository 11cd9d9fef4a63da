//! A tiny connection pool: connections are leased to `spawn_blocking` closures so that no
//! SQLite call runs on an async executor thread.

use std::sync::{Arc, Mutex, PoisonError};

use keyward::StoreError;
use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::STORE;
use crate::error::SqliteError;

/// A fixed set of connections. A caller first takes a permit (asynchronously), then a
/// connection; the permit count equals the number of connections, so one is always idle.
pub(crate) struct Pool {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    size: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.size)
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(conns: Vec<Connection>) -> Arc<Self> {
        let size = conns.len();
        Arc::new(Self {
            idle: Mutex::new(conns),
            permits: Arc::new(Semaphore::new(size)),
            size,
        })
    }

    /// Runs `f` with a connection on tokio's blocking thread pool.
    ///
    /// The connection goes back to the pool when `f` returns or panics, even if the caller's
    /// future was dropped meanwhile (the lease lives inside the blocking task).
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| StoreError::backend(STORE, e))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .ok_or_else(|| StoreError::backend(STORE, SqliteError::PoolExhausted))?;
            let mut lease = Lease {
                pool,
                conn: Some(conn),
                _permit: permit,
            };
            match lease.conn.as_mut() {
                Some(conn) => f(conn),
                None => Err(StoreError::backend(STORE, SqliteError::PoolExhausted)),
            }
        })
        .await
        .map_err(|e| StoreError::backend(STORE, e))?
    }
}

/// A leased connection; returns it to the pool on drop (before the permit is released).
struct Lease {
    pool: Arc<Pool>,
    conn: Option<Connection>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.is_autocommit() {
                // Only after a panic inside a transaction: never hand out a connection that
                // is still inside one.
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    tracing::warn!(error = %e, "keyward-sqlite: rollback of an abandoned transaction failed");
                }
            }
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}

/// Begins a write transaction that takes the database's write lock before its first read
/// (`BEGIN IMMEDIATE`): no other connection or process changes what it reads before it
/// commits.
pub(crate) fn begin_immediate(
    conn: &mut Connection,
) -> Result<rusqlite::Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(crate::row::backend)
}

//! [`SqliteOptions`]: the change-log length, the reader pool and the busy timeout.

use keyward::DEFAULT_CHANGE_LOG_LEN;
use std::time::Duration;

/// Settings for [`SqliteStore::open_with`](crate::SqliteStore::open_with).
///
/// ```
/// use std::time::Duration;
/// let options = keyward_sqlite::SqliteOptions::default()
///     .change_log_len(10_000)
///     .readers(2)
///     .busy_timeout(Duration::from_secs(10));
/// assert_eq!(options.get_change_log_len(), 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    pub(crate) change_log_len: u64,
    pub(crate) readers: usize,
    pub(crate) busy_timeout: Duration,
}

impl Default for SqliteOptions {
    /// [`DEFAULT_CHANGE_LOG_LEN`] (100 000) change-log entries, 4 reader connections, a 5 s
    /// busy timeout.
    fn default() -> Self {
        Self {
            change_log_len: DEFAULT_CHANGE_LOG_LEN,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteOptions {
    /// How many change-log entries are kept (at least 1). A cache further behind than this is
    /// told to resync (drop everything) by [`RecordStore::changes_since`](keyward::RecordStore::changes_since).
    pub fn change_log_len(mut self, n: u64) -> Self {
        self.change_log_len = n.max(1);
        self
    }

    /// How many read-only connections serve `get`, `list`, `usage` and `changes_since`
    /// beside the single writer connection. Zero sends reads through the writer.
    pub fn readers(mut self, n: usize) -> Self {
        self.readers = n;
        self
    }

    /// How long a connection waits for another connection's (or process's) lock before
    /// failing with "database is locked".
    pub fn busy_timeout(mut self, d: Duration) -> Self {
        self.busy_timeout = d;
        self
    }

    /// The change-log length.
    pub fn get_change_log_len(&self) -> u64 {
        self.change_log_len
    }

    /// The number of reader connections.
    pub fn get_readers(&self) -> usize {
        self.readers
    }

    /// The busy timeout.
    pub fn get_busy_timeout(&self) -> Duration {
        self.busy_timeout
    }
}

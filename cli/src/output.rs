//! Output helpers of the listing commands: paging through keys ([`for_each_page`]), the
//! timestamp format and the text table.

use std::fmt::Write as _;

use keyward::{Error, KeyInfo, KeyManager, ListQuery, Timestamp};

/// Hands every key that `query`'s filters select to `each`, one page of `query.limit` keys at
/// a time (each page starting after the last key of the one before), from `query.after` on. A
/// page shorter than the limit is the last one. Memory stays at one page, however many keys
/// there are.
///
/// # Errors
/// The first error [`KeyManager::list`] or `each` returns.
pub(crate) async fn for_each_page<E: From<Error>>(
    manager: &KeyManager,
    mut query: ListQuery,
    mut each: impl FnMut(Vec<KeyInfo>) -> Result<(), E>,
) -> Result<(), E> {
    loop {
        let page = manager.list(&query).await?;
        let full = page.len() >= query.limit as usize;
        query.after = page.last().map(|k| (k.created_at, k.id));
        let last = !full || query.after.is_none();
        each(page)?;
        if last {
            return Ok(());
        }
    }
}

/// Every key that `query`'s filters select, fetched with [`for_each_page`]. For small sets
/// only: the whole list is held in memory.
///
/// # Errors
/// The first error [`KeyManager::list`] returns (the keys already fetched are dropped).
#[cfg(test)]
pub(crate) async fn list_all(
    manager: &KeyManager,
    query: ListQuery,
) -> Result<Vec<KeyInfo>, Error> {
    let mut keys: Vec<KeyInfo> = Vec::new();
    for_each_page(manager, query, |page| {
        keys.extend(page);
        Ok::<(), Error>(())
    })
    .await?;
    Ok(keys)
}

/// A timestamp to the second, RFC 3339: `2026-11-23T10:00:00Z`.
pub(crate) fn format_time(t: Timestamp) -> String {
    let t = t.to_offset_date_time();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

const COLUMNS: [&str; 9] = [
    "ID",
    "KEY",
    "PROJECT",
    "ENV",
    "SCOPES",
    "STATUS",
    "CREATED",
    "EXPIRES",
    "LAST USED",
];

/// Keys as an aligned text table (id, masked key, project, environment, scopes, status,
/// created, expires, last used), holding no secret ([`KeyInfo`] has none). Written a page at
/// a time, for listings too long to hold in memory: column
/// widths are those of the header and of the rows seen so far, so they only grow (a later,
/// wider row shifts the columns after it).
#[derive(Debug, Clone)]
pub(crate) struct Table {
    widths: [usize; 9],
}

impl Default for Table {
    fn default() -> Self {
        Self {
            widths: COLUMNS.map(|c| c.chars().count()),
        }
    }
}

impl Table {
    /// The header line.
    pub(crate) fn header(&mut self) -> String {
        self.lines(&[COLUMNS.map(str::to_owned)])
    }

    /// One line per key.
    pub(crate) fn rows(&mut self, keys: &[KeyInfo]) -> String {
        let opt_time = |t: Option<Timestamp>| t.map_or_else(|| "-".to_owned(), format_time);
        let rows: Vec<[String; 9]> = keys
            .iter()
            .map(|k| {
                [
                    k.id.to_string(),
                    k.masked.clone(),
                    k.project.to_string(),
                    k.environment.to_string(),
                    if k.scopes.is_empty() {
                        "-".to_owned()
                    } else {
                        k.scopes.to_string()
                    },
                    k.status.to_string(),
                    format_time(k.created_at),
                    opt_time(k.expires_at),
                    opt_time(k.last_used_at),
                ]
            })
            .collect();
        for row in &rows {
            for (w, cell) in self.widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        self.lines(&rows)
    }

    fn lines(&self, rows: &[[String; 9]]) -> String {
        let mut out = String::new();
        for row in rows {
            let mut text = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = self.widths[i].saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
            let _ = writeln!(out, "{}", text.trim_end());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use keyward::{HashParams, IssueRequest};

    use super::*;

    #[test]
    fn a_table_of_no_keys_is_its_header() {
        let mut table = Table::default();
        let text = table.header() + &table.rows(&[]);
        assert_eq!(text.lines().count(), 1);
    }

    #[tokio::test]
    async fn list_all_fetches_every_page_including_after_an_exactly_full_one() {
        let store = keyward_cli::open_store("sqlite::memory:").await.unwrap();
        let manager = KeyManager::builder_arc(store)
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .build()
            .unwrap();
        for env in ["dev", "dev", "dev", "dev", "prd"] {
            let req = IssueRequest::new("web-app".parse().unwrap(), env.parse().unwrap())
                .scopes(["read"])
                .unwrap();
            manager.issue(req).await.unwrap();
        }
        let dev = Some("dev".parse().unwrap());
        for limit in [1, 2, 3, 4, 100] {
            let query = ListQuery {
                environment: dev,
                limit,
                ..ListQuery::default()
            };
            let keys = list_all(&manager, query).await.unwrap();
            let order: Vec<_> = keys.iter().map(|k| (k.created_at, k.id)).collect();
            let mut sorted = order.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(order, sorted, "limit {limit}: in order, no repeats");
            assert_eq!(keys.len(), 4, "limit {limit}");
        }
    }

    #[test]
    fn format_time_drops_milliseconds() {
        assert_eq!(
            format_time(Timestamp::from_unix_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20Z"
        );
    }
}

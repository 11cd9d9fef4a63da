//! `list`: keys page by page, as a table or a JSON array.

use std::io::{self, Write};
use std::process::ExitCode;

use keyward::{ListQuery, Prefix};

use crate::args::ListArgs;
use crate::failure::Failure;
use crate::keys::manager;
use crate::output::{Table, for_each_page};

/// Keys fetched per store call by `list` and `usage`.
pub(crate) const LIST_PAGE: u32 = 500;

/// Lists keys page by page, writing each page before fetching the next, so memory stays at
/// one page however many keys match (a JSON array is written element by element).
pub(crate) async fn list(db: &str, prefix: Prefix, args: ListArgs) -> Result<ExitCode, Failure> {
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

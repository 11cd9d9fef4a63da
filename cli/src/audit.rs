//! `audit`: a project's audit trail, newest first, as a table or JSON lines.

use std::io::{self, Write};
use std::process::ExitCode;

use keyward::{AuditEntry, AuditQuery, MAX_AUDIT_PAGE, Prefix};

use crate::args::AuditArgs;
use crate::failure::Failure;
use crate::keys::manager;
use crate::output::format_time;

const COLUMNS: [&str; 7] = ["SEQ", "AT", "ACTOR", "ACTION", "ENV", "KEY", "SUMMARY"];

/// Prints up to `--limit` entries of the project's trail, newest first, fetched in pages of
/// at most [`MAX_AUDIT_PAGE`]; when more may follow, says on stderr how to ask for them.
pub(crate) async fn audit(db: &str, prefix: Prefix, args: AuditArgs) -> Result<ExitCode, Failure> {
    let manager = manager(db, prefix, &[], None).await?;
    let mut query = AuditQuery {
        project: args.project.clone(),
        environment: None,
        key_id: args.key,
        before: args.before,
        limit: MAX_AUDIT_PAGE,
    };
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut more = false;
    while entries.len() < args.limit as usize {
        let want = (args.limit as usize - entries.len()).min(MAX_AUDIT_PAGE as usize);
        query.limit = u32::try_from(want).unwrap_or(MAX_AUDIT_PAGE);
        let page = manager.audit(&query).await?;
        let full = page.len() >= want;
        query.before = page.last().map(|e| e.seq);
        entries.extend(page);
        more = full && query.before.is_some();
        if !full {
            break;
        }
    }
    let write_err = |e: io::Error| Failure::usage(format!("cannot write to stdout: {e}"));
    let text = if args.json {
        let mut text = String::new();
        for e in &entries {
            let line = serde_json::to_string(e)
                .map_err(|e| Failure::usage(format!("cannot encode an entry as JSON: {e}")))?;
            text.push_str(&line);
            text.push('\n');
        }
        text
    } else {
        table(&entries)
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(write_err)?;
    out.flush().map_err(write_err)?;
    if entries.is_empty() {
        eprintln!("no audit entries match");
    } else if more && let Some(last) = entries.last() {
        eprintln!("more entries may follow: add --before {}", last.seq);
    }
    Ok(ExitCode::SUCCESS)
}

/// The entries as an aligned text table, the summary as compact JSON.
fn table(entries: &[AuditEntry]) -> String {
    let dash = |s: Option<String>| s.unwrap_or_else(|| "-".to_owned());
    let rows: Vec<[String; 7]> = std::iter::once(COLUMNS.map(str::to_owned))
        .chain(entries.iter().map(|e| {
            [
                e.seq.to_string(),
                format_time(e.at),
                e.actor.to_string(),
                e.action.to_string(),
                dash(e.environment.map(|v| v.to_string())),
                dash(e.key_id.map(|v| v.to_string())),
                e.summary.to_string(),
            ]
        }))
        .collect();
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(
                ' ',
                widths[i].saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use keyward::{Actor, AuditAction, Timestamp};

    use super::*;

    #[test]
    fn the_table_has_a_header_and_a_line_per_entry_with_dashes_for_none() {
        let e = AuditEntry::new(
            Timestamp::from_unix_millis(1_700_000_000_000),
            Actor::new("cli:alice@host").unwrap(),
            AuditAction::QuotaChanged,
            "web-app".parse().unwrap(),
        )
        .summary(serde_json::json!({"quota": null}));
        let text = table(&[AuditEntry { seq: 7, ..e }]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("SEQ"));
        assert!(lines[1].starts_with("7  "), "{}", lines[1]);
        assert!(lines[1].contains("cli:alice@host"));
        assert!(lines[1].contains("quota_changed  -    -"), "{}", lines[1]);
        assert!(lines[1].ends_with(r#"{"quota":null}"#));
    }
}

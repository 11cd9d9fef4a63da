//! Event quotas and usage reports: `quota set|remove|show` and `usage`.

use std::io::{self, Write};
use std::process::ExitCode;

use keyward::{ListQuery, Prefix, Project, Quota, QuotaUsage};

use crate::args::QuotaCommand;
use crate::failure::Failure;
use crate::keys::manager;
use crate::list::LIST_PAGE;
use crate::output::format_time;

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

pub(crate) async fn quota(
    db: &str,
    prefix: Prefix,
    cmd: QuotaCommand,
) -> Result<ExitCode, Failure> {
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

pub(crate) async fn usage(
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

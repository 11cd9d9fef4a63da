//! `keyward scan`: finds Keyward keys in files and prints them masked, for pre-commit hooks and
//! CI. Only keys whose checksum holds are reported (a random look-alike is not), each as
//! `path:line:column: <masked key>`; the secret is never printed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use keyward::{FoundKey, KeyScanner, Prefix};

use crate::args::ScanArgs;
use crate::failure::{EXIT_REJECTED, EXIT_USAGE, Failure};

/// How much of a file is read at a time.
const CHUNK: usize = 64 * 1024;

/// Scans every path (a directory is walked, skipping what `.gitignore` and hidden-file rules
/// skip unless asked), prints each key found, and exits 1 when one was found, 2 when a path
/// could not be read and none was found, 0 otherwise.
pub(crate) fn scan(prefix: Prefix, args: &ScanArgs) -> Result<ExitCode, Failure> {
    let only = args.only_prefix.then_some(prefix);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut found = 0u64;
    let mut unreadable = 0u64;
    for path in &args.paths {
        for file in files(path, args) {
            let file = match file {
                Ok(file) => file,
                Err(message) => {
                    eprintln!("error: {message}");
                    unreadable += 1;
                    continue;
                }
            };
            match scan_file(&file, only, &mut |hit| {
                found += 1;
                report(&mut out, &file, &hit, args.json)
            }) {
                Ok(()) => {}
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", file.display());
                    unreadable += 1;
                }
            }
        }
    }
    out.flush()
        .map_err(|e| Failure::usage(format!("cannot write the report: {e}")))?;
    if found > 0 {
        eprintln!(
            "{found} key{} found: revoke each (`keyward revoke <id>`) and remove it from the files \
             and their history",
            if found == 1 { "" } else { "s" }
        );
        Ok(ExitCode::from(EXIT_REJECTED))
    } else if unreadable > 0 {
        Ok(ExitCode::from(EXIT_USAGE))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// The files to scan under `path`: itself if it is a file, else the walk of the directory.
fn files(path: &Path, args: &ScanArgs) -> Vec<Result<PathBuf, String>> {
    if !path.is_dir() {
        return vec![Ok(path.to_path_buf())];
    }
    ignore::WalkBuilder::new(path)
        .hidden(!args.hidden)
        .git_ignore(!args.no_ignore)
        .git_global(!args.no_ignore)
        .git_exclude(!args.no_ignore)
        .ignore(!args.no_ignore)
        .parents(!args.no_ignore)
        .filter_entry(|e| e.file_name() != ".git")
        .build()
        .filter_map(|entry| match entry {
            Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => Some(Ok(e.into_path())),
            Ok(_) => None,
            Err(e) => Some(Err(e.to_string())),
        })
        .collect()
}

/// Streams one file through the scanner.
fn scan_file(
    path: &Path,
    only: Option<Prefix>,
    hit: &mut impl FnMut(FoundKey) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut scanner = KeyScanner::new();
    let mut buf = zeroize::Zeroizing::new(vec![0u8; CHUNK]);
    let mut result = Ok(());
    let mut each = |k: FoundKey| {
        if result.is_ok() && only.is_none_or(|p| k.key.prefix() == p) {
            result = hit(k);
        }
    };
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        scanner.feed(&buf[..n], &mut each);
    }
    scanner.finish(&mut each);
    result
}

/// One line of the report: text or a JSON object, the key masked.
fn report(out: &mut impl Write, path: &Path, hit: &FoundKey, json: bool) -> io::Result<()> {
    let masked = hit.key.masked();
    if json {
        let line = serde_json::json!({
            "path": path.display().to_string(),
            "line": hit.line,
            "column": hit.column,
            "key": masked.to_string(),
            "id": masked.id.as_str(),
            "prefix": masked.prefix.as_str(),
            "environment": masked.environment.as_str(),
        });
        writeln!(out, "{line}")
    } else {
        writeln!(
            out,
            "{}:{}:{}: {masked}",
            path.display(),
            hit.line,
            hit.column
        )
    }
}

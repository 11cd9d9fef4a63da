//! Processing a verified report: distinct tokens once each, parse and checksum (no store
//! access), then [`KeyManager::report_leak`] a few at a time, in the report's order.

use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};

use crate::key::{ApiKey, KeyId};
use crate::manager::{KeyManager, LeakAction, LeakReport};

use super::batch::Match;
use super::error::ScanError;
use super::feedback::{Feedback, Label, TokenEcho};

/// The most distinct secrets checked for one key id in one report. A leaked key appears
/// once; more secrets under one id are look-alikes, answered `false_positive` without a
/// store read or Argon2, so a report full of forgeries of one known id costs at most this
/// many hashes for it.
pub const MAX_SECRETS_PER_ID: usize = 4;

/// What is known of a match before the store is asked.
enum Check {
    /// Not a key of the Keyward format (or a bad checksum).
    Malformed,
    /// Over [`MAX_SECRETS_PER_ID`] for its id.
    Skipped,
    /// A well-formed key: ask the manager.
    Key(ApiKey),
}

/// The counts of one processed report (logged, and returned to the caller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Matches in the report.
    pub reported: usize,
    /// Distinct tokens answered.
    pub distinct: usize,
    /// Tokens proven to be keys of this service.
    pub true_positives: usize,
}

/// Answers every distinct token of `matches` in order, applying `action` to the keys proven.
pub(crate) async fn process(
    manager: &KeyManager,
    matches: Vec<Match>,
    action: LeakAction,
    echo: TokenEcho,
    concurrency: usize,
) -> Result<(Vec<Feedback>, ScanSummary), ScanError> {
    let reported = matches.len();
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(matches.len());
        matches
            .iter()
            .map(|m| seen.insert(m.token.expose_secret()))
            .collect()
    };
    let mut per_id: HashMap<KeyId, usize> = HashMap::new();
    let items: Vec<(Match, Check)> = matches
        .into_iter()
        .zip(keep)
        .filter_map(|(m, keep)| keep.then_some(m))
        .map(|m| {
            let check = match ApiKey::parse(m.token.expose_secret()) {
                Err(_) => Check::Malformed,
                Ok(key) => {
                    let n = per_id.entry(key.id()).or_insert(0);
                    *n += 1;
                    if *n > MAX_SECRETS_PER_ID {
                        Check::Skipped
                    } else {
                        Check::Key(key)
                    }
                }
            };
            (m, check)
        })
        .collect();
    let distinct = items.len();
    let feedback: Vec<Feedback> = stream::iter(items)
        .map(|(m, check)| async move {
            let label = match check {
                Check::Malformed | Check::Skipped => Label::FalsePositive,
                Check::Key(key) => {
                    let report = LeakReport {
                        url: m.url.filter(|u| !u.is_empty()),
                        source: m.source.filter(|s| !s.is_empty()),
                    };
                    match manager.report_leak(&key, &report, action).await {
                        Ok(Some(_)) => Label::TruePositive,
                        Ok(None) => Label::FalsePositive,
                        Err(e) => return Err(ScanError::Keys(e)),
                    }
                }
            };
            Ok(Feedback::new(m.token, m.kind, label, echo))
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    let true_positives = feedback
        .iter()
        .filter(|f| f.label == Label::TruePositive)
        .count();
    Ok((
        feedback,
        ScanSummary {
            reported,
            distinct,
            true_positives,
        },
    ))
}

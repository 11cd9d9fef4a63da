//! Processing a verified report: distinct tokens once each, parse and checksum (no store
//! access), then [`KeyManager::report_leak`] for the well-formed ones in a task of their
//! own, at most `concurrency` at a time across all reports (one semaphore per
//! [`SecretScanning`](super::SecretScanning)). The answer waits for them until the deadline;
//! what is not decided by then is left out of it and finished in the background.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt as _};
use tokio::sync::{Semaphore, mpsc};

use crate::error::Error;
use crate::key::{ApiKey, KeyId};
use crate::manager::{KeyInfo, KeyManager, LeakAction, LeakReport};

use super::batch::Match;
use super::error::ScanError;
use super::feedback::{Feedback, Label, TokenEcho};

/// The most distinct secrets checked for one key id in one report. A leaked key appears
/// once; more secrets under one id are look-alikes, answered `false_positive` without a
/// store read or Argon2, so a report full of forgeries of one known id costs at most this
/// many hashes for it.
pub const MAX_SECRETS_PER_ID: usize = 4;

/// The counts of one processed report (logged, and returned to the caller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanSummary {
    /// Matches in the report.
    pub reported: usize,
    /// Distinct tokens.
    pub distinct: usize,
    /// Tokens proven to be keys of this service by the time of the answer.
    pub true_positives: usize,
    /// Tokens still being checked when the deadline came: left out of the answer and
    /// finished in the background (revoked if proven).
    pub pending: usize,
}

/// How the tokens of reports are checked.
pub(crate) struct Processor {
    pub(crate) manager: KeyManager,
    pub(crate) action: LeakAction,
    pub(crate) echo: TokenEcho,
    /// Shared by every report: at most this many tokens are checked at once.
    pub(crate) limiter: Arc<Semaphore>,
    pub(crate) concurrency: usize,
    pub(crate) deadline: Duration,
}

/// A well-formed token to check: its index in the answer, the key, where it was found.
type Job = (usize, ApiKey, LeakReport);

impl Processor {
    /// Answers the distinct tokens of `matches` in order, applying the action to the keys
    /// proven; tokens not decided within the deadline are left out of the answer.
    pub(crate) async fn process(
        &self,
        matches: Vec<Match>,
    ) -> Result<(Vec<Feedback>, ScanSummary), ScanError> {
        let reported = matches.len();
        let (mut feedback, jobs) = self.prepare(matches);
        let distinct = feedback.len();
        let mut decided: Vec<bool> = vec![true; distinct];
        for (i, _, _) in &jobs {
            decided[*i] = false;
        }
        let mut pending = jobs.len();
        let mut results = self.spawn(jobs);
        let deadline = tokio::time::Instant::now() + self.deadline;
        while pending > 0 {
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some((i, outcome))) => {
                    pending -= 1;
                    decided[i] = true;
                    feedback[i].label = match outcome.map_err(ScanError::Keys)? {
                        Some(_) => Label::TruePositive,
                        None => Label::FalsePositive,
                    };
                }
                // The task ended early: it stopped at an error it could not send.
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        pending,
                        "secret-scanning report past its deadline: answering what is decided, finishing the rest in the background"
                    );
                    break;
                }
            }
        }
        let feedback: Vec<Feedback> = feedback
            .into_iter()
            .zip(decided)
            .filter_map(|(f, decided)| decided.then_some(f))
            .collect();
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
                pending,
            },
        ))
    }

    /// One answer element per distinct token (labelled `false_positive` until proven), and
    /// the jobs for the well-formed ones within [`MAX_SECRETS_PER_ID`].
    fn prepare(&self, matches: Vec<Match>) -> (Vec<Feedback>, Vec<Job>) {
        let keep: Vec<bool> = {
            let mut seen = HashSet::with_capacity(matches.len());
            matches
                .iter()
                .map(|m| seen.insert(m.token.expose_secret()))
                .collect()
        };
        let mut per_id: HashMap<KeyId, usize> = HashMap::new();
        let mut feedback = Vec::new();
        let mut jobs = Vec::new();
        for m in matches
            .into_iter()
            .zip(keep)
            .filter_map(|(m, keep)| keep.then_some(m))
        {
            if let Ok(key) = ApiKey::parse(m.token.expose_secret()) {
                let n = per_id.entry(key.id()).or_insert(0);
                *n += 1;
                if *n <= MAX_SECRETS_PER_ID {
                    let report = LeakReport {
                        url: m.url.filter(|u| !u.is_empty()),
                        source: m.source.filter(|s| !s.is_empty()),
                    };
                    jobs.push((feedback.len(), key, report));
                }
            }
            feedback.push(Feedback::new(
                m.token,
                m.kind,
                Label::FalsePositive,
                self.echo,
            ));
        }
        (feedback, jobs)
    }

    /// Checks `jobs` in a task of their own, which goes on after the answer if need be;
    /// each outcome is sent to the receiver while it listens. The task stops at the first
    /// error (the store or the hasher failing): the report is answered 503 and sent again.
    fn spawn(
        &self,
        jobs: Vec<Job>,
    ) -> mpsc::UnboundedReceiver<(usize, Result<Option<KeyInfo>, Error>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let manager = self.manager.clone();
        let limiter = self.limiter.clone();
        let (action, concurrency) = (self.action, self.concurrency.max(1));
        let total = jobs.len();
        tokio::spawn(async move {
            let mut outcomes = stream::iter(jobs)
                .map(|(i, key, report)| {
                    let (manager, limiter) = (manager.clone(), limiter.clone());
                    async move {
                        // Never closed; without a permit the check still runs.
                        let _permit = limiter.acquire_owned().await.ok();
                        (i, manager.report_leak(&key, &report, action).await)
                    }
                })
                .buffer_unordered(concurrency);
            let (mut late, mut late_true) = (0usize, 0usize);
            let mut done = 0usize;
            while let Some((i, outcome)) = outcomes.next().await {
                done += 1;
                let failed = outcome.as_ref().err().map(ToString::to_string);
                let proven = matches!(outcome, Ok(Some(_)));
                if tx.send((i, outcome)).is_err() {
                    late += 1;
                    late_true += usize::from(proven);
                    if let Some(error) = failed {
                        tracing::error!(
                            %error,
                            unchecked = total - done,
                            "a secret-scanning report failed after its answer; its remaining tokens are not checked"
                        );
                        return;
                    }
                } else if failed.is_some() {
                    return;
                }
            }
            if late > 0 {
                tracing::info!(
                    checked = late,
                    true_positives = late_true,
                    "finished a secret-scanning report after its answer"
                );
            }
        });
        rx
    }
}

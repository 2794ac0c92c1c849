//! Retention: how long finished runs are kept, and pruning the older ones.
//!
//! This module turns a [`Retention`] into cutoffs for [`Store::prune`](crate::store::Store::prune).
//! It decides nothing about which records a run has; the store deletes a run whole.

use super::{Error, Flow};
use crate::store::{now_ms, PruneRequest, Pruned, RunStatus};
use std::time::Duration;

/// How long finished runs are kept after their last change, per finished status; `None` keeps
/// runs of that status forever. Unfinished runs (queued, running, sleeping, needs-attention,
/// paused) are always kept.
///
/// The default keeps everything: a finished run is the record that makes starting its id again
/// return the stored outcome instead of executing the workflow again, so only the operator
/// decides when that record may go.
///
/// ```
/// use flow_runtime::Retention;
/// use std::time::Duration;
/// let week = Duration::from_secs(7 * 24 * 3600);
/// let keep = Retention { failed: Some(4 * week), ..Retention::all(week) };
/// assert_eq!(keep.succeeded, Some(week));
/// assert!(Retention::default().keeps_everything());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// How long succeeded runs are kept.
    pub succeeded: Option<Duration>,
    /// How long failed runs are kept.
    pub failed: Option<Duration>,
    /// How long cancelled runs are kept.
    pub cancelled: Option<Duration>,
}

impl Retention {
    /// Keeps every run forever (the default).
    pub const FOREVER: Retention = Retention {
        succeeded: None,
        failed: None,
        cancelled: None,
    };

    /// Keeps finished runs of every status for `keep`.
    pub fn all(keep: Duration) -> Retention {
        Retention {
            succeeded: Some(keep),
            failed: Some(keep),
            cancelled: Some(keep),
        }
    }

    /// Keeps runs of `status` for `keep` and every other run forever; `None` for an unfinished
    /// status, which is never pruned.
    pub fn only(status: RunStatus, keep: Duration) -> Option<Retention> {
        let mut retention = Retention::FOREVER;
        *retention.slot(status)? = Some(keep);
        Some(retention)
    }

    /// How long runs of `status` are kept; `None` is forever.
    pub fn of(&self, status: RunStatus) -> Option<Duration> {
        match status {
            RunStatus::Succeeded => self.succeeded,
            RunStatus::Failed => self.failed,
            RunStatus::Cancelled => self.cancelled,
            _ => None,
        }
    }

    fn slot(&mut self, status: RunStatus) -> Option<&mut Option<Duration>> {
        match status {
            RunStatus::Succeeded => Some(&mut self.succeeded),
            RunStatus::Failed => Some(&mut self.failed),
            RunStatus::Cancelled => Some(&mut self.cancelled),
            _ => None,
        }
    }

    /// Whether nothing is ever pruned.
    pub fn keeps_everything(&self) -> bool {
        *self == Retention::FOREVER
    }

    /// The store request that selects the runs older than this retention at `now_ms`.
    fn request(&self, now_ms: u64, dry_run: bool) -> PruneRequest {
        let updated_until_ms = [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .filter_map(|status| {
            let keep = self.of(status)?;
            let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
            Some((status, now_ms.saturating_sub(keep_ms)))
        })
        .collect::<Vec<_>>();
        // Alerts are the record of failures: they are kept as long as failed runs are
        let alerts_until_ms = updated_until_ms
            .iter()
            .find(|(status, _)| *status == RunStatus::Failed)
            .map(|(_, until)| *until);
        PruneRequest {
            updated_until_ms,
            alerts_until_ms,
            dry_run,
        }
    }
}

impl Flow {
    /// Deletes the finished runs that `retention` no longer keeps: each run whose last change
    /// is at least its status's retention ago, with its steps and everything else stored of it.
    /// Unfinished runs are never deleted, and a run resumed meanwhile is kept. Alerts go with
    /// the failed runs' retention: an alert whose every notice is done, that nothing will
    /// resolve any more (resolved, or its run deleted) and that last changed longer ago than
    /// failed runs are kept is deleted too. The deletion
    /// goes in batches of at most a thousand runs per store transaction, so runs execute on
    /// between them.
    ///
    /// Starting a pruned run id again executes the workflow anew: the stored outcome that
    /// would have been returned is gone.
    ///
    /// A worker calls this periodically with the settings' `flow.retention`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), flow_runtime::Error> {
    /// use flow_runtime::{Flow, Retention};
    /// use std::time::Duration;
    /// let flow = Flow::open("flow.redb")?;
    /// let pruned = flow.prune(&Retention::all(Duration::from_secs(30 * 24 * 3600))).await?;
    /// println!("deleted {} runs and {} steps", pruned.runs, pruned.steps);
    /// # Ok(()) }
    /// ```
    pub async fn prune(&self, retention: &Retention) -> Result<Pruned, Error> {
        self.prune_request(retention, false).await
    }

    /// Counts what [`Flow::prune`] would delete now, deleting nothing.
    pub async fn prune_dry_run(&self, retention: &Retention) -> Result<Pruned, Error> {
        self.prune_request(retention, true).await
    }

    async fn prune_request(&self, retention: &Retention, dry_run: bool) -> Result<Pruned, Error> {
        if retention.keeps_everything() {
            return Ok(Pruned::default());
        }
        let request = retention.request(now_ms(), dry_run);
        Ok(self.store().prune(&request).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_becomes_cutoffs_for_the_finished_statuses_it_limits() {
        let day = Duration::from_secs(24 * 3600);
        let retention = Retention {
            failed: Some(3 * day),
            ..Retention::only(RunStatus::Succeeded, day).expect("finished")
        };
        let now = 10 * 86_400_000;
        let request = retention.request(now, false);
        assert_eq!(
            request.updated_until_ms,
            vec![
                (RunStatus::Succeeded, now - 86_400_000),
                (RunStatus::Failed, now - 3 * 86_400_000)
            ]
        );
        assert_eq!(request.cutoff(RunStatus::Cancelled), None);
        assert_eq!(Retention::only(RunStatus::Running, day), None);
        // A retention longer than the epoch's age selects nothing rather than wrapping around
        let long = Retention::all(Duration::from_secs(u64::MAX)).request(now, true);
        assert!(long.updated_until_ms.iter().all(|(_, before)| *before == 0));
    }
}

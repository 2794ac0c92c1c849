//! Checkpointed sources of non-determinism: time, ids, randomness and durable sleep.
//!
//! Inside a run each call is recorded like a step, so a replay sees the same value and a resumed
//! sleep waits only for what is left. Outside a run they are the plain operations. This module
//! owns only these helpers; step execution lives in `step`.

use crate::engine::context::{self, Abort, Frame, PlannedStep, RunCtx};
use crate::store::{now_ms, RunStatus, StepId, StepRecord, StepStatus, StoreError, Write};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The run, and the key these helpers' records take (the unit's, inside a unit).
fn live_run() -> Option<(Arc<RunCtx>, String)> {
    match context::current()? {
        Frame::Run(run) => Some((run, String::new())),
        Frame::Unit(run, unit) => Some((run, unit.to_string())),
        // Inside a step body the step itself is the checkpoint.
        Frame::Step(_) => None,
    }
}

fn record(run: &RunCtx, id: StepId, status: StepStatus) -> StepRecord {
    let now = now_ms();
    StepRecord {
        run_id: run.run_id.clone(),
        id,
        status,
        attempt: 1,
        next_attempt_at_ms: None,
        output: None,
        error: None,
        error_class: None,
        started_at_ms: now,
        finished_at_ms: (status == StepStatus::Succeeded).then_some(now),
        args: None,
        failure: None,
    }
}

async fn checkpointed<T: Serialize + DeserializeOwned>(
    name: &'static str,
    compute: impl FnOnce() -> T,
) -> T {
    let Some((run, key)) = live_run() else {
        return compute();
    };
    if run.must_stop() {
        return run.abort(Abort::Cancelled).await;
    }
    let id = run.next_step_id(name, key);
    if let Some(done) = run
        .take_checkpoint(&id)
        .filter(|r| r.status == StepStatus::Succeeded)
    {
        let stored = done.output.unwrap_or(serde_json::Value::Null);
        return match serde_json::from_value(stored) {
            Ok(value) => value,
            Err(e) => {
                let reason = StoreError::Encoding(format!("checkpoint of {id}: {e}"));
                run.abort(Abort::Store(reason)).await
            }
        };
    }
    let value = compute();
    let mut done = record(&run, id, StepStatus::Succeeded);
    done.output = serde_json::to_value(&value).ok();
    run.persist_deferred(vec![Write::PutStep(done)]).await;
    value
}

/// The current time; inside a run, the time recorded the first time this call ran.
pub async fn now() -> SystemTime {
    let ms = checkpointed("flow::now", now_ms).await;
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A new random UUID (v4); inside a run, the one recorded the first time this call ran.
pub async fn uuid() -> uuid::Uuid {
    checkpointed("flow::uuid", uuid::Uuid::new_v4).await
}

/// A random `u64`; inside a run, the one recorded the first time this call ran.
pub async fn random() -> u64 {
    checkpointed("flow::random", || fastrand::u64(..)).await
}

/// Sleeps for `duration`. Inside a run the sleep is durable: the wake-up time is recorded, the
/// run shows as sleeping, and after a restart the run waits only for what is left. A dry run
/// does not wait.
pub async fn sleep(duration: Duration) {
    let Some((run, unit)) = live_run() else {
        tokio::time::sleep(duration).await;
        return;
    };
    if run.must_stop() {
        return run.abort(Abort::Cancelled).await;
    }
    let key = match unit.as_str() {
        "" => duration.as_millis().to_string(),
        unit => format!("{unit}/{}", duration.as_millis()),
    };
    let id = run.next_step_id("flow::sleep", key);
    if run.is_dry() {
        run.plan(PlannedStep {
            step: id.name.clone(),
            key: id.key.clone(),
            args: serde_json::json!({ "ms": duration.as_millis() as u64 }),
            action: format!("would sleep {duration:?}"),
        });
        return;
    }
    let wake_at = match run.take_checkpoint(&id) {
        Some(r) if r.status == StepStatus::Succeeded => return,
        Some(r) => r.next_attempt_at_ms.unwrap_or_else(now_ms),
        None => {
            let wake_at = now_ms() + duration.as_millis() as u64;
            let mut started = record(&run, id.clone(), StepStatus::Started);
            started.next_attempt_at_ms = Some(wake_at);
            let mut writes = vec![Write::PutStep(started)];
            writes.extend(run.set_status(RunStatus::Sleeping).map(Write::PutRun));
            run.persist_deferred(writes).await;
            wake_at
        }
    };
    // Never longer than the sleep asked for: a wake-up time recorded by a clock that was ahead
    // of this one (or a clock set back since) must not stretch the sleep by the skew.
    let left = Duration::from_millis(wake_at.saturating_sub(now_ms())).min(duration);
    // A worker's run outside a fan-out gives its worker back for a long sleep: the run is
    // stored as sleeping until `wake_at`, and the worker's timer resumes it then.
    if unit.is_empty() && run.options.suspend_after.is_some_and(|after| left >= after) {
        tracing::info!(
            wake_in_ms = left.as_millis() as u64,
            "sleeping; the worker is released"
        );
        return run
            .abort(Abort::Suspend(now_ms() + left.as_millis() as u64))
            .await;
    }
    tracing::info!(wake_in_ms = left.as_millis() as u64, "sleeping");
    if let Err(reason) = run.sleep_unless_cancelled(left).await {
        return run.abort(reason).await;
    }
    let mut done = record(&run, id, StepStatus::Succeeded);
    done.next_attempt_at_ms = Some(wake_at);
    let mut writes = vec![Write::PutStep(done)];
    writes.extend(run.set_status(RunStatus::Running).map(Write::PutRun));
    run.persist_deferred(writes).await;
}

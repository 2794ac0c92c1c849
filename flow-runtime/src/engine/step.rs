//! Step execution: replay a checkpoint, or run the body with retries, timeouts and durable
//! attempt bookkeeping.
//!
//! This module decides what one step call does. It persists only through the run's store and
//! never touches the run record, which belongs to the engine.

use crate::engine::classify::{ErrorClass, StepTimeout};
use crate::engine::context::{self, Abort, Frame, PlannedStep, RunCtx, StepFrame};
use crate::engine::registry::{RepeatSafety, StepMeta};
use crate::engine::retry::RetryPolicy;
use crate::store::{now_ms, Attention, StepId, StepRecord, StepStatus, StoreError, Write};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// What generated code tells the executor about one call of a step.
pub struct StepSpec<E: 'static> {
    /// The step's declaration.
    pub meta: &'static StepMeta,
    /// The `idempotency_key` value, if the step has one.
    pub key: Option<String>,
    /// How to classify an error; `None` when the step is not retried.
    #[allow(clippy::type_complexity)]
    // a plain fn pointer generated code fills in; an alias would hide its shape
    pub classify: Option<fn(&E) -> (ErrorClass, Option<Duration>)>,
    /// How to turn a timeout into `E`; `None` when the step has no `timeout`.
    pub on_timeout: Option<fn(StepTimeout) -> E>,
    /// How to record the step's error so that a resumed run gets it back without executing the
    /// step again; `None` when the error type is not serde.
    pub replay: Option<ErrorReplay<E>>,
}

/// Records and rebuilds a step's error (for error types that are `Serialize` and
/// `Deserialize`).
pub struct ErrorReplay<E> {
    /// The error as JSON, if it encodes.
    pub encode: fn(&E) -> Option<serde_json::Value>,
    /// The error back from its JSON, if it decodes.
    pub decode: fn(&serde_json::Value) -> Option<E>,
}

/// The key of a step call without `idempotency_key`: SHA-256 over the arguments' canonical
/// JSON ([`canonical_json`]), cut to 128 bits and written as 32 lowercase hex digits.
///
/// Part of the store format (schema version 2): changing it would orphan every stored
/// checkpoint. The same arguments give the same key in every process, on every platform and
/// in every later version, whatever the order of a map's entries or of a struct's fields.
pub(crate) fn args_key(args: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let mut canonical = Vec::with_capacity(128);
    canonical_json(args, &mut canonical);
    let digest = Sha256::digest(&canonical);
    // Hex without the formatter: this runs once per step call
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(32);
    for b in &digest[..16] {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    key
}

/// Writes `value` as compact JSON with every object's keys in sorted order (by their UTF-8
/// bytes), so a map's iteration order and a struct's field order never reach the key. Strings
/// and numbers are written by serde_json (integers as integers, floats by the shortest
/// round-tripping form), which is deterministic; see docs/DESIGN.md for why this is not full
/// RFC 8785.
fn canonical_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here, not by trusting `Map`: with serde_json's `preserve_order` feature
            // (which any crate in a build may turn on) it keeps insertion order
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // A key is written as a JSON string, as a string value would be
                let _ = serde_json::to_writer(&mut *out, key.as_str());
                out.push(b':');
                canonical_json(item, out);
            }
            out.push(b'}');
        }
        scalar => scalar_json(scalar, out),
    }
}

fn scalar_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    // Writing a scalar `Value` into a `Vec` cannot fail (no I/O, no non-string map keys)
    let _ = serde_json::to_writer(out, value);
}

fn policy_of(run: &RunCtx, meta: &StepMeta, retried: bool) -> RetryPolicy {
    if !retried || meta.repeat == RepeatSafety::AtMostOnce {
        return RetryPolicy::NONE;
    }
    run.policies.resolve(&meta.retry)
}

fn encoding(what: &str, step: &StepId, e: serde_json::Error) -> Abort {
    Abort::Store(StoreError::Encoding(format!("{what} of step {step}: {e}")))
}

/// Runs one call of a step: checkpointed inside a run, a plain call outside one (and inside
/// another step's body).
pub async fn run_step<A, T, E, B, BF, D, DF>(
    spec: StepSpec<E>,
    args: &A,
    mut body: B,
    dry_run: D,
) -> Result<T, E>
where
    A: Serialize + ?Sized,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display + Send + 'static,
    B: FnMut() -> BF + Send,
    BF: Future<Output = Result<T, E>> + Send,
    D: FnOnce() -> DF + Send,
    DF: Future<Output = Result<T, E>> + Send,
{
    let (run, unit) = match context::current() {
        Some(Frame::Run(run)) => (run, None),
        Some(Frame::Unit(run, unit)) => (run, Some(unit)),
        _ => return body().await,
    };
    let StepSpec {
        meta,
        key,
        classify,
        on_timeout,
        replay,
    } = spec;

    if run.must_stop() {
        return run.abort(Abort::Cancelled).await;
    }

    // The arguments are encoded only when something reads them: the key hash, a dry-run plan,
    // or the intent of an `at_most_once` step (so an operator can tell which call is in doubt).
    let at_most_once = meta.repeat == RepeatSafety::AtMostOnce;
    let args_json = if key.is_none() || run.is_dry() || at_most_once {
        match serde_json::to_value(args) {
            Ok(json) => json,
            Err(e) => {
                let reason = StoreError::Encoding(format!("arguments of step {}: {e}", meta.name));
                return run.abort(Abort::Store(reason)).await;
            }
        }
    } else {
        serde_json::Value::Null
    };
    let declared_key = key.unwrap_or_else(|| args_key(&args_json));
    // Inside a unit of a fan-out, steps are stored under the unit (a step keyed like its unit is
    // stored under the unit's key alone); the body always sees the declared key.
    let top_level = unit.is_none();
    let key = match unit {
        Some(unit) if *unit == *declared_key => declared_key.clone(),
        Some(unit) => format!("{unit}/{declared_key}"),
        None => declared_key.clone(),
    };
    let id = run.next_step_id(meta.name, key);

    let args = || args_json.clone();
    if run.is_dry() && !meta.read_only {
        let args = args();
        run.plan(PlannedStep {
            step: meta.name.to_owned(),
            key: id.key.clone(),
            args,
            action: format!("would call {} key={}", meta.fn_name, id.key),
        });
        tracing::info!(step = meta.name, key = %id.key, "dry run: skipped");
        return dry_run().await;
    }

    let policy = policy_of(&run, meta, classify.is_some());
    let mut first_attempt = 1;
    let mut not_before = None;
    let mut started_at_ms = now_ms();
    if let Some(record) = run.take_checkpoint(&id) {
        match record.status {
            StepStatus::Succeeded => {
                let output = record.output.unwrap_or(serde_json::Value::Null);
                return match serde_json::from_value(output) {
                    Ok(value) => {
                        tracing::debug!(step = meta.name, key = %id.key, "replayed from checkpoint");
                        Ok(value)
                    }
                    Err(e) => run.abort(encoding("the checkpointed output", &id, e)).await,
                };
            }
            StepStatus::Started if at_most_once => {
                let args = record.args.clone().unwrap_or_else(args);
                let attention = Attention {
                    reason: format!(
                        "the at_most_once step {id} with arguments {args} started but did not finish (the process stopped during it); its effect may or may not have happened"
                    ),
                    step: id,
                    args: Some(args),
                };
                return run.abort(Abort::NeedsAttention(attention)).await;
            }
            StepStatus::Backoff => {
                first_attempt = record.attempt + 1;
                // Recorded by an earlier process, with its clock: bounded by the policy.
                not_before = record
                    .next_attempt_at_ms
                    .map(|at| backoff_wait(at, now_ms(), &policy, &id));
                started_at_ms = record.started_at_ms;
            }
            // A failure the workflow already received replays like a success: a declined card
            // is not charged again because the process crashed later. Only an operator's
            // retry of a failed run executes it again.
            StepStatus::Failed if !run.options.retry_failed => {
                let replayed = replay
                    .as_ref()
                    .zip(record.failure.as_ref())
                    .and_then(|(replay, value)| (replay.decode)(value));
                if let Some(error) = replayed {
                    tracing::debug!(step = meta.name, key = %id.key, "replayed the recorded failure");
                    return Err(error);
                }
            }
            StepStatus::Started | StepStatus::Failed => {}
        }
    }

    let timeout = meta.timeout_ms.map(Duration::from_millis);
    let mut attempt = first_attempt;
    loop {
        if let Some(wait) = not_before.take() {
            // A worker's run outside a fan-out gives its worker back for a long backoff; the
            // worker's timer resumes it, and the recorded backoff brings it here again.
            if top_level && run.options.suspend_after.is_some_and(|after| wait >= after) {
                return run
                    .abort(Abort::Suspend(now_ms() + wait.as_millis() as u64))
                    .await;
            }
            if let Err(reason) = run.sleep_unless_cancelled(wait).await {
                return run.abort(reason).await;
            }
        }
        // The attempt counts as in flight from here to its checkpoint: a cancel or a stop of
        // the run waits for it, so an effect that happened is never left without its record.
        // Every abort below leaves the count first (`drop(in_flight)`): the run waits for the
        // attempts in flight, and one that aborts never finishes.
        let Some(in_flight) = run.begin_attempt() else {
            return run.abort(Abort::Cancelled).await;
        };
        if run.cancel_requested() {
            drop(in_flight);
            return run.abort(Abort::Cancelled).await;
        }
        let record = |status, attempt, id| StepRecord {
            run_id: run.run_id.clone(),
            id,
            status,
            attempt,
            next_attempt_at_ms: None,
            output: None,
            error: None,
            error_class: None,
            started_at_ms,
            finished_at_ms: None,
            args: None,
            failure: None,
        };
        if at_most_once {
            // The intent is durable before the body runs: after a crash we know the outcome is
            // unknown instead of silently running the effect twice. It keeps the arguments, so
            // the operator can tell which call to look up.
            let mut intent = record(StepStatus::Started, attempt, id.clone());
            intent.args = Some(args());
            if let Err(reason) = run.try_persist(vec![Write::PutStep(intent)]).await {
                drop(in_flight);
                return run.abort(reason).await;
            }
        }

        // The field is `step`, not `name`: JSON logs put the span's own name under `name`
        // Exported as OpenTelemetry spans named after the step, children of the run's span;
        // a failed attempt records its error class (and the delay before the next one)
        let span = tracing::info_span!(
            "step",
            step = meta.name,
            key = %id.key,
            attempt,
            error_class = tracing::field::Empty,
            retry_delay_ms = tracing::field::Empty,
            otel.name = tracing::field::Empty,
        );
        if let Some(trace) = run.trace() {
            if crate::trace::exporting() {
                span.record("otel.name", meta.name);
            }
            trace.adopt(&span);
        }
        let frame = Frame::Step(Arc::new(StepFrame {
            run: run.clone(),
            key: declared_key.clone(),
            attempt,
        }));
        let attempt_fut = context::scope(frame, body());
        let (result, timed_out) = match timeout {
            None => (attempt_fut.instrument(span.clone()).await, false),
            Some(limit) => match tokio::time::timeout(limit, attempt_fut)
                .instrument(span.clone())
                .await
            {
                Ok(result) => (result, false),
                Err(_) => match on_timeout {
                    Some(convert) => (Err(convert(StepTimeout { after: limit })), true),
                    None => {
                        drop(in_flight);
                        return unreachable_timeout(&run, meta).await;
                    }
                },
            },
        };
        let _enter = span.enter();

        match result {
            Ok(value) => {
                let output = match serde_json::to_value(&value) {
                    Ok(output) => output,
                    Err(e) => {
                        drop(_enter);
                        drop(in_flight);
                        return run.abort(encoding("the output", &id, e)).await;
                    }
                };
                // The call's last record: it takes the step's id, not a copy
                let mut done = record(StepStatus::Succeeded, attempt, id);
                done.output = Some(output);
                done.finished_at_ms = Some(now_ms());
                drop(_enter);
                // A step that may run again needs its checkpoint durable only within the window;
                // an at_most_once step's outcome is durable before the workflow sees it
                let persisted = if at_most_once {
                    run.try_persist(vec![Write::PutStep(done)]).await
                } else {
                    run.try_persist_deferred(vec![Write::PutStep(done)]).await
                };
                if let Err(reason) = persisted {
                    drop(in_flight);
                    return run.abort(reason).await;
                }
                // Measured past the checkpoint, as a failure's duration is
                crate::metrics::step_succeeded(meta.name, now_ms().saturating_sub(started_at_ms));
                return Ok(value);
            }
            Err(error) => {
                // `None`: the step is not retried (no `Classify`), so its error is not classified.
                let (class, retry_after) = match (timed_out, classify) {
                    // A timeout is transient whatever the error type says of the variant
                    // holding it.
                    (true, _) => (Some(ErrorClass::Transient), None),
                    (false, Some(classify)) => {
                        let (class, after) = classify(&error);
                        (Some(class), after)
                    }
                    (false, None) => (None, None),
                };
                let class_name = class.map_or("unclassified".to_owned(), |c| c.to_string());
                let message = error.to_string();
                span.record("error_class", class_name.as_str());
                crate::trace::attempt_failed(&span, &message);
                if class == Some(ErrorClass::Transient) && attempt < policy.attempts {
                    let delay = policy.delay(attempt, retry_after);
                    span.record("retry_delay_ms", delay.as_millis() as u64);
                    tracing::warn!(
                        error = %message,
                        class = %class_name,
                        delay_ms = delay.as_millis() as u64,
                        next_attempt = attempt + 1,
                        "attempt failed; retrying after the delay"
                    );
                    let next_at = now_ms() + delay.as_millis() as u64;
                    let mut backoff = record(StepStatus::Backoff, attempt, id.clone());
                    backoff.next_attempt_at_ms = Some(next_at);
                    backoff.error = Some(message);
                    backoff.error_class = class;
                    drop(_enter);
                    if let Err(reason) = run
                        .try_persist_deferred(vec![Write::PutStep(backoff)])
                        .await
                    {
                        drop(in_flight);
                        return run.abort(reason).await;
                    }
                    crate::metrics::step_attempt(meta.name, &class_name);
                    crate::metrics::step_retried(meta.name, &class_name);
                    not_before = Some(delay);
                    attempt += 1;
                    continue;
                }
                // The error goes back to the workflow code, which may handle it (the run then
                // succeeds) or return it (the run's end is logged at ERROR). So this is a WARN
                // that says what happened and what the operator may need to do, not an ERROR.
                match (class.is_none(), meta.repeat == RepeatSafety::AtMostOnce) {
                    (true, true) => tracing::warn!(
                        error = %message,
                        attempts = attempt,
                        "at_most_once step failed and was not retried (at_most_once steps never are: \
                         its effect may have happened); the workflow got the error: if the run \
                         fails, `runs show` has the step; if the run succeeds, the workflow carried \
                         on without this step, so check whether its effect took place and redo it \
                         by hand if it must"
                    ),
                    (true, false) => tracing::warn!(
                        error = %message,
                        attempts = attempt,
                        "step failed and was not retried (retry = \"none\"); the workflow got the \
                         error and decides whether the run fails"
                    ),
                    (false, _) => tracing::warn!(
                        error = %message,
                        class = %class_name,
                        attempts = attempt,
                        "step failed: {}; the workflow got the error and decides whether the run fails",
                        if class_name == "permanent" {
                            "the error is permanent, so it was not retried"
                        } else {
                            "the retry policy's attempts are used up"
                        }
                    ),
                }
                // The call's last record too
                let mut failed = record(StepStatus::Failed, attempt, id);
                failed.failure = replay.as_ref().and_then(|replay| (replay.encode)(&error));
                failed.error = Some(message);
                failed.error_class = class;
                failed.finished_at_ms = Some(now_ms());
                drop(_enter);
                let persisted = if at_most_once {
                    run.try_persist(vec![Write::PutStep(failed)]).await
                } else {
                    run.try_persist_deferred(vec![Write::PutStep(failed)]).await
                };
                if let Err(reason) = persisted {
                    drop(in_flight);
                    return run.abort(reason).await;
                }
                crate::metrics::step_attempt(meta.name, &class_name);
                crate::metrics::step_finished(
                    meta.name,
                    "failed",
                    now_ms().saturating_sub(started_at_ms),
                );
                return Err(error);
            }
        }
    }
}

/// How long to wait for an attempt due at `due_ms`. The due time was computed with the clock of
/// the process that recorded it; if this clock is behind (or that one was ahead), waiting for it
/// could take as long as the skew. No wait is longer than the policy's longest delay from now.
fn backoff_wait(due_ms: u64, now_ms: u64, policy: &RetryPolicy, id: &StepId) -> Duration {
    let wait = Duration::from_millis(due_ms.saturating_sub(now_ms));
    if wait > policy.max {
        tracing::warn!(
            step = %id,
            recorded_wait_ms = wait.as_millis() as u64,
            max_delay_ms = policy.max.as_millis() as u64,
            "the recorded retry time is further away than the policy's longest delay (a clock changed); waiting the longest delay instead"
        );
        return policy.max;
    }
    wait
}

async fn unreachable_timeout<T>(run: &RunCtx, meta: &StepMeta) -> T {
    // The macro always passes `on_timeout` with a `timeout`; a hand-written spec might not.
    let reason = StoreError::Backend(format!(
        "step {} has a timeout but no way to report it",
        meta.name
    ));
    run.abort(Abort::Store(reason)).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::args_key;
    use serde_json::json;

    #[test]
    fn args_key_is_stable() {
        // Part of the store format (schema version 2): these values must never change.
        assert_eq!(args_key(&json!(null)), "74234e98afe7498fb5daf1f36ac2d78a");
        assert_eq!(args_key(&json!(["42"])), args_key(&json!(["42"])));
        assert_ne!(args_key(&json!(["42"])), args_key(&json!(["43"])));
        assert_eq!(args_key(&json!(["42"])).len(), 32);
    }

    #[test]
    fn args_key_ignores_object_key_order_but_not_array_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"[{"b":1,"a":{"y":[1,2],"x":"é"}}]"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"[{"a":{"x":"é","y":[1,2]},"b":1}]"#).unwrap();
        assert_eq!(args_key(&a), args_key(&b));
        assert_ne!(args_key(&json!([[1, 2]])), args_key(&json!([[2, 1]])));
    }

    #[test]
    fn canonical_json_is_compact_json_with_sorted_keys() {
        let mut out = Vec::new();
        super::canonical_json(
            &json!({"z": [1.5, -0, "q\"\n"], "a": {"c": null, "b": true}}),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":{"b":true,"c":null},"z":[1.5,0,"q\"\n"]}"#
        );
    }
}

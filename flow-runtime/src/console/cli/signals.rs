//! SIGINT and SIGTERM for the commands that execute workflows: the first signal stops the runs
//! of this process gracefully (no new step, steps in flight finish and are checkpointed, for up
//! to the grace period), the second stops the process at once. Either way every run stays
//! resumable. This module owns the signal handlers and the wait; the engine does the stopping.

use super::{AppInfo, Exit};
use crate::engine::{Flow, RunError, RunHandle};
use crate::store::RunId;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A stop signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal number, as shells report a process a signal stopped.
    pub(crate) fn exit(self) -> Exit {
        match self {
            Signal::Interrupt => Exit::Interrupted,
            Signal::Terminate => Exit::Terminated,
        }
    }
}

static RECEIVED: OnceLock<watch::Receiver<Option<Signal>>> = OnceLock::new();
static GRACE: OnceLock<Duration> = OnceLock::new();

/// Installs the handlers (once per process), with the grace period the steps in flight get.
/// Until then the signals keep their default action, which stops the process at once; commands
/// that execute no workflow never install them.
pub(super) fn install(grace: Duration) {
    let _ = GRACE.set(grace);
    RECEIVED.get_or_init(|| {
        let (tx, rx) = watch::channel(None);
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::spawn(async move {
                    let mut seen = 0;
                    loop {
                        let got = tokio::select! {
                            _ = int.recv() => Signal::Interrupt,
                            _ = term.recv() => Signal::Terminate,
                        };
                        seen += 1;
                        if seen > 1 {
                            eprintln!(
                                "{}: second stop signal, stopping at once; every run stays resumable",
                                got.name()
                            );
                            std::process::exit(got.exit() as i32);
                        }
                        let _ = tx.send(Some(got));
                    }
                });
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "could not install the SIGINT/SIGTERM handlers; a signal stops the process at once");
            }
        }
        rx
    });
}

/// The first stop signal, once one arrived; pending forever without handlers.
pub(super) async fn first_signal() -> Signal {
    let Some(rx) = RECEIVED.get() else {
        return std::future::pending().await;
    };
    let mut rx = rx.clone();
    loop {
        if let Some(signal) = *rx.borrow_and_update() {
            return signal;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// How waiting for a run ended.
pub(super) enum Waited<T> {
    /// The run ended by itself (or reached a final state while stopping).
    Ended(T),
    /// A signal stopped this process's runs; the run is resumable.
    Stopped {
        signal: Signal,
        /// Whether the steps in flight finished within the grace period.
        in_grace: bool,
    },
}

/// Waits for `handle`'s outcome; on a stop signal, stops `flow`'s runs and waits up to the grace
/// period for the steps in flight.
pub(super) async fn outcome<T, E>(
    flow: &Flow,
    handle: RunHandle<T, E>,
) -> Waited<Result<T, RunError<E>>> {
    let grace = GRACE.get().copied().unwrap_or(Duration::from_secs(10));
    let outcome = handle.outcome();
    tokio::pin!(outcome);
    let signal = tokio::select! {
        result = &mut outcome => return Waited::Ended(result),
        signal = first_signal() => signal,
    };
    let stopped = flow.shutdown(&format!("the process received {}", signal.name()));
    tracing::warn!(
        signal = signal.name(),
        runs = stopped.len(),
        grace_ms = grace.as_millis() as u64,
        "stop signal: no new step starts; waiting for the steps in flight"
    );
    match tokio::time::timeout(grace, &mut outcome).await {
        // A run that stopped because of the signal is interrupted; one that ended anyway is
        // reported as it ended.
        Ok(Err(RunError::Engine(crate::engine::Error::Interrupted { .. }))) => Waited::Stopped {
            signal,
            in_grace: true,
        },
        Ok(result) => Waited::Ended(result),
        Err(_) => Waited::Stopped {
            signal,
            in_grace: false,
        },
    }
}

/// The one line that says what a signal interrupted and how to continue; the exit code.
pub(super) fn report_stopped(app: &AppInfo, id: &RunId, signal: Signal, in_grace: bool) -> Exit {
    let how = if in_grace {
        "after its steps in flight finished and were checkpointed"
    } else {
        "when the grace period ran out, with steps still in flight (an at_most_once step among them will need a decision)"
    };
    tracing::warn!(signal = signal.name(), run_id = %id, "run interrupted by a stop signal; it can be resumed");
    eprintln!(
        "{}: run {} stopped {how}; continue it with: {} runs resume {}",
        signal.name(),
        super::output::escape(id.as_str()),
        app.name,
        super::output::shell_quote(id.as_str())
    );
    signal.exit()
}

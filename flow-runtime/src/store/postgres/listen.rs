//! `LISTEN/NOTIFY`: idle workers wake when another process enqueues a run or sets a run's
//! wake-up time, instead of at their next poll.
//!
//! Every transaction that writes a queued run, or a run waiting for a time, sends
//! `pg_notify(<schema>, payload)` (delivered when it commits; the channel is the schema's name,
//! so stores in other schemas are not woken): an empty payload for a queued run, the earliest
//! wake-up time (ms since the epoch) otherwise. A store whose worker asked for the signal keeps
//! one connection outside the pool `LISTEN`ing on the channel; a queued run wakes the worker at
//! once, a wake-up time when it comes. Polling stays the fallback: a notification lost with
//! the connection is covered by a wake-up after every reconnect, and by the poll interval.

use super::Shared;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::AsyncMessage;

/// The `NOTIFY` payload of a queued run.
pub(super) const QUEUED: &str = "";

/// The most wake-up times one listener keeps.
const MAX_TIMERS: usize = 4096;

/// Listens until the store is dropped (the task is aborted then), reconnecting with a growing
/// pause when the connection fails.
pub(super) async fn run(shared: Weak<Shared>, signal: Arc<Notify>) {
    let mut pause = Duration::from_millis(50);
    loop {
        let Some(store) = shared.upgrade() else {
            return;
        };
        let (config, tls, target, channel) = (
            store.config.clone(),
            store.tls.clone(),
            store.target.clone(),
            store.schema.clone(),
        );
        drop(store);
        match listen(&config, tls, &channel, &signal, &mut pause).await {
            Ok(()) => tracing::warn!(%target, "the LISTEN connection closed; reconnecting"),
            Err(err) => {
                tracing::warn!(%target, error = %err, "the LISTEN connection failed; reconnecting")
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One `LISTEN` connection, until it ends: wakes the worker for each queued run at once and
/// for each wake-up time when it comes.
async fn listen(
    config: &tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    channel: &str,
    signal: &Notify,
    pause: &mut Duration,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls).await?;
    let (tx, mut payloads) = mpsc::unbounded_channel();
    let driver = async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(n) = message? {
                let _ = tx.send(n.payload().to_owned());
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    };
    let driver = tokio::spawn(driver);
    let listening = client.batch_execute(&format!("LISTEN \"{channel}\"")).await;
    if let Err(err) = listening {
        driver.abort();
        return Err(err);
    }
    *pause = Duration::from_millis(50);
    // Whatever was notified while this connection was down is looked at now
    signal.notify_one();
    let mut timers: BTreeSet<u64> = BTreeSet::new();
    loop {
        let now = crate::store::now_ms();
        while timers.first().is_some_and(|at| *at <= now) {
            timers.pop_first();
            signal.notify_one();
        }
        let wait = timers.first().map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(at - now)
        });
        tokio::select! {
            payload = payloads.recv() => match payload {
                Some(payload) if payload == QUEUED => signal.notify_one(),
                Some(payload) => match payload.parse::<u64>() {
                    Ok(at) => {
                        timers.insert(at);
                        // Bounded: the latest ones are found by polling
                        if timers.len() > MAX_TIMERS {
                            timers.pop_last();
                        }
                    }
                    Err(_) => signal.notify_one(),
                },
                None => break,
            },
            () = tokio::time::sleep(wait) => {}
        }
    }
    drop(client);
    driver.await.unwrap_or(Ok(()))
}

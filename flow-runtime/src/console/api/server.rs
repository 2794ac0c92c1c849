//! The owner's side: the process that holds the store serves the operator API on a Unix socket
//! beside the store file, so other commands work while it executes runs.
//!
//! The socket is created with mode 0600 before anyone can connect to it (bound inside a fresh
//! directory of mode 0700, then moved into place), so only the store's owner may use it. Runs
//! started for clients execute here; when the server shuts down they are stopped gracefully
//! (interrupted, resumable), and the clients that follow them take them over.

use super::client::{Envelope, Reply};
use super::{ApiError, ErrorKind, Operator, Request, Started, PROTOCOL};
use crate::engine::Flow;
use crate::store::RunFilter;
use serde::Serialize;
use serde_json::Value;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

/// The longest path a Unix socket can be bound at (`sun_path` is 108 bytes with its NUL).
pub(crate) const SOCKET_PATH_MAX: usize = 107;

/// A request line may carry a workflow's input: bounded, so a client cannot exhaust memory.
const REQUEST_MAX: u64 = 256 << 20;

/// The running server. Dropping it stops accepting connections and removes the socket file;
/// [`ServeHandle::shutdown`] also stops the runs it started for clients and waits for them.
pub(crate) struct ServeHandle {
    socket: PathBuf,
    flow: Flow,
    accept: tokio::task::JoinHandle<()>,
    runs: Arc<Mutex<JoinSet<()>>>,
}

/// Serves the operator API for `flow` on `socket` until the handle is dropped or shut down.
/// The caller must hold the store exclusively: a file already at `socket` is taken as left
/// behind by a dead owner and replaced.
pub(crate) fn serve(flow: Flow, socket: &Path) -> io::Result<ServeHandle> {
    let listener = bind_private(socket)?;
    let runs = Arc::new(Mutex::new(JoinSet::new()));
    let accept = tokio::spawn(accept_loop(listener, flow.clone(), runs.clone()));
    tracing::debug!(socket = %socket.display(), "serving the operator API");
    Ok(ServeHandle {
        socket: socket.to_path_buf(),
        flow,
        accept,
        runs,
    })
}

impl ServeHandle {
    /// Stops serving, then stops the runs executed for clients (they end interrupted and
    /// resumable: the clients following them resume them) and waits until they have.
    pub(crate) async fn shutdown(self, reason: &str) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.socket);
        let mut runs = std::mem::take(&mut *self.runs.lock().unwrap_or_else(|p| p.into_inner()));
        if !runs.is_empty() {
            let stopped = self.flow.shutdown(reason);
            tracing::info!(
                runs = stopped.len(),
                "stopping the runs executed for other commands; they take them over"
            );
        }
        while runs.join_next().await.is_some() {}
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn too_long(socket: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the operator socket {} would be {} bytes long, and a Unix socket path is limited to {SOCKET_PATH_MAX}; choose a shorter store path (flow.store), or set flow.sharing = \"shared\"",
            socket.display(),
            socket.as_os_str().len()
        ),
    )
}

/// Binds `socket` with mode 0600 so that no other user can connect, even for a moment.
fn bind_private(socket: &Path) -> io::Result<UnixListener> {
    if socket.as_os_str().len() > SOCKET_PATH_MAX {
        return Err(too_long(socket));
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(socket)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; flow puts the store's operator socket there: move that file away",
                    socket.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Bound inside a directory only we may enter, made private, then moved into place: a
    // rename keeps the socket's inode, so connecting by the final name reaches the listener.
    let mut staging = socket.as_os_str().to_owned();
    staging.push(format!(".{}", std::process::id()));
    let staging = PathBuf::from(staging);
    let inner = staging.join("s");
    if inner.as_os_str().len() > SOCKET_PATH_MAX {
        return Err(too_long(socket));
    }
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let bound = (|| {
        let listener = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&inner, socket)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

async fn accept_loop(listener: UnixListener, flow: Flow, runs: Arc<Mutex<JoinSet<()>>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, flow.clone(), runs.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the operator socket failed to accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(stream: UnixStream, flow: Flow, runs: Arc<Mutex<JoinSet<()>>>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(REQUEST_MAX));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Envelope<Value>>(&line) {
        Ok(request) if request.v != PROTOCOL => Reply::Error(ApiError::new(
            ErrorKind::Usage,
            format!(
                "the process that owns the store speaks operator protocol version {PROTOCOL}, this command version {}; use the same binary for both",
                request.v
            ),
        )),
        Ok(request) => match serde_json::from_value::<Request>(request.body) {
            Ok(request) => execute(&flow, &runs, request).await,
            Err(e) => Reply::Error(ApiError::new(
                ErrorKind::Usage,
                format!("the process that owns the store cannot read this request: {e}"),
            )),
        },
        Err(e) => Reply::Error(ApiError::new(
            ErrorKind::Usage,
            format!("the process that owns the store cannot read this request: {e}"),
        )),
    };
    let mut bytes = serde_json::to_vec(&Envelope {
        v: PROTOCOL,
        body: reply,
    })
    .unwrap_or_else(|e| {
        format!(r#"{{"v":{PROTOCOL},"error":{{"kind":"store","message":"cannot encode the answer: {e}"}}}}"#)
            .into_bytes()
    });
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
}

fn reply<T: Serialize>(result: Result<T, ApiError>) -> Reply<Value> {
    match result.and_then(|v| {
        serde_json::to_value(v).map_err(|e| ApiError::new(ErrorKind::Store, e.to_string()))
    }) {
        Ok(v) => Reply::Ok(v),
        Err(e) => Reply::Error(e),
    }
}

async fn execute(flow: &Flow, runs: &Arc<Mutex<JoinSet<()>>>, request: Request) -> Reply<Value> {
    let op = Operator::Local(flow.clone());
    let started = match request {
        // What an operator is told is durable: the deferred checkpoints are flushed first
        Request::List { .. }
        | Request::Show { .. }
        | Request::Schedules
        | Request::Stats { .. }
            if flow.store().flush().await.is_err() =>
        {
            return reply::<()>(Err(ApiError::new(
                ErrorKind::Store,
                "the store could not make its latest checkpoints durable; see the owner's log"
                    .to_owned(),
            )));
        }
        Request::List {
            status,
            workflow,
            limit,
        } => {
            let filter = RunFilter {
                status,
                workflow,
                limit,
            };
            return reply(op.list(&filter).await);
        }
        Request::Show { id } => return reply(op.show(&id).await),
        Request::Alerts {
            pending,
            workflow,
            limit,
        } => {
            let filter = crate::store::AlertFilter {
                pending,
                workflow,
                limit,
            };
            return reply(op.alerts(&filter).await);
        }
        Request::Enqueue {
            workflow,
            input,
            options,
        } => {
            let enqueued = op.enqueue(&workflow, input, options).await;
            if enqueued.is_ok() {
                flow.queue_changed().notify_waiters();
            }
            return reply(enqueued);
        }
        Request::Schedules => return reply(op.schedules().await),
        Request::Stats { query } => return reply(op.stats(&query).await),
        Request::Metrics => {
            return reply(crate::metrics::encode(flow).await.map_err(ApiError::from))
        }
        Request::PauseSchedule { name, note } => {
            return reply(op.pause_schedule(&name, true, note).await)
        }
        Request::ResumeSchedule { name } => {
            return reply(op.pause_schedule(&name, false, None).await)
        }
        // The owner's worker hears of the runs these create (`queue_changed`) and takes them
        Request::TriggerSchedule { name, overlap } => {
            return reply(op.trigger_schedule(&name, overlap).await)
        }
        Request::BackfillSchedule {
            name,
            from_ms,
            to_ms,
            overlap,
        } => return reply(op.backfill_schedule(&name, from_ms, to_ms, overlap).await),
        Request::Cancel { id } => return reply(op.cancel(&id).await),
        Request::Resolve { id, step, settle } => {
            return reply(op.resolve(&id, &step, settle).await)
        }
        Request::Start {
            workflow,
            input,
            options,
        } => op.start(&workflow, input, options).await,
        Request::Resume { id, only_units } => op.resume(&id, only_units).await,
        Request::Fork {
            id,
            from_step,
            new_id,
        } => op.fork(&id, &from_step, new_id).await,
    };
    // The run executes here; the client follows it through `show`.
    reply(started.map(|started| match started {
        Started::Here(handle) => {
            let id = handle.run_id().clone();
            runs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .spawn(async move {
                    let _ = handle.outcome().await;
                });
            id
        }
        Started::There(id) => id,
    }))
}

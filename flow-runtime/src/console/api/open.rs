//! Who opens the store: with `flow.sharing = "exclusive"` (the default) the process that
//! executes runs holds the file alone and serves the operator API on `<store>.sock`; every
//! other command goes through that socket while such an owner lives, and opens the file itself
//! when none does. With `"shared"` every process opens the file in redb's multi-process mode.

use super::{serve, ApiError, ErrorKind, Operator, Remote, ServeHandle};
use crate::engine::Flow;
use crate::store::{RedbStore, Sharing, StoreError};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a command waits for a store that another process holds without serving (it is
/// just opening it, or a short command holds it) before it reports who holds it.
const LOCKED_PATIENCE: Duration = Duration::from_secs(5);

/// The operator socket of the store at `store`: its path with `.sock` appended.
pub(crate) fn socket_path(store: &Path) -> PathBuf {
    let mut path = OsString::from(store.as_os_str());
    path.push(".sock");
    PathBuf::from(path)
}

/// What a command does with the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Only reads (`runs list`, `runs show`): the file is opened read-only.
    Read,
    /// Writes records but executes nothing (`runs cancel`, `runs resolve`).
    Write,
    /// Executes workflows (`run`, `runs resume`, ...): becomes the owner when it can.
    Execute,
}

/// The store as a command reaches it.
pub(crate) struct Opened {
    pub operator: Operator,
    /// Set when this process owns the store and serves the socket.
    pub server: Option<ServeHandle>,
}

/// Opens the store at `path` as `access` needs, in the `sharing` mode; `build` turns an opened
/// store into the command's `Flow` (retry policies, app state).
pub(crate) async fn open(
    path: &Path,
    sharing: Sharing,
    access: Access,
    build: &(dyn Fn(RedbStore) -> Flow + Sync),
) -> Result<Opened, ApiError> {
    let local = |store: RedbStore| Opened {
        operator: Operator::Local(build(store)),
        server: None,
    };
    if sharing == Sharing::Shared {
        let store = match access {
            Access::Read => RedbStore::open_read_only(path),
            Access::Write | Access::Execute => RedbStore::open_with(path, Sharing::Shared),
        };
        return store.map(local).map_err(store_error);
    }
    let socket = socket_path(path);
    let deadline = Instant::now() + LOCKED_PATIENCE;
    loop {
        // Any other command prefers the owner: it sees the runs as they execute.
        if access != Access::Execute {
            if let Ok(remote) = Remote::connect(&socket).await {
                return Ok(remote_opened(remote));
            }
        }
        let store = match access {
            Access::Read => RedbStore::open_read_only(path),
            Access::Write | Access::Execute => RedbStore::open_with(path, Sharing::Exclusive),
        };
        match store {
            Ok(store) if access == Access::Execute => {
                let flow = build(store);
                let server = serve(flow.clone(), &socket).map_err(|e| {
                    ApiError::new(
                        ErrorKind::Config,
                        format!("cannot serve the operator API on {}: {e}", socket.display()),
                    )
                })?;
                return Ok(Opened {
                    operator: Operator::Local(flow),
                    server: Some(server),
                });
            }
            Ok(store) => return Ok(local(store)),
            Err(StoreError::Locked { .. }) if access == Access::Execute => {
                if let Ok(remote) = Remote::connect(&socket).await {
                    return Ok(remote_opened(remote));
                }
            }
            Err(StoreError::Locked { .. }) => {}
            Err(e) => return Err(store_error(e)),
        }
        if Instant::now() >= deadline {
            return Err(unserved(path, &socket, sharing));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn remote_opened(remote: Remote) -> Opened {
    Opened {
        operator: Operator::Remote(remote),
        server: None,
    }
}

fn store_error(e: StoreError) -> ApiError {
    let kind = match e {
        StoreError::Missing { .. } => ErrorKind::Usage,
        _ => ErrorKind::Store,
    };
    ApiError::new(kind, e.to_string())
}

/// The store is held by a process that does not answer on the socket.
fn unserved(path: &Path, socket: &Path, sharing: Sharing) -> ApiError {
    let locked = StoreError::Locked {
        path: path.to_path_buf(),
        wanted: sharing,
    };
    let holders = holders(path);
    let who = match holders.as_slice() {
        [] => "another process (not one of this user's)".to_owned(),
        [pid] => format!("process {pid}"),
        pids => format!(
            "processes {}",
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let kill = match holders.as_slice() {
        [pid] => format!("`kill {pid}`"),
        _ => "stop it".to_owned(),
    };
    ApiError::new(
        ErrorKind::Store,
        format!(
            "{locked}\n  {who} holds the store, and no process answers on its operator socket {}{}; if it is a run or worker of this binary whose socket was deleted, wait for it to finish or stop it ({kill}; its runs stay resumable), then run this command again",
            socket.display(),
            if socket.exists() { " (the file is there, but nobody listens)" } else { " (the file is missing)" },
        ),
    )
}

/// The processes of this user that have the file at `path` open (from `/proc/*/fd`), other
/// than this one.
fn holders(path: &Path) -> Vec<u32> {
    let Ok(target) = std::fs::canonicalize(path) else {
        return Vec::new();
    };
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

//! The socket client: each operation is one connection, one request line, one response line.

use super::{ApiError, ErrorKind, Request, PROTOCOL};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A request on the wire.
#[derive(Serialize, Deserialize)]
pub(super) struct Envelope<T> {
    pub v: u32,
    #[serde(flatten)]
    pub body: T,
}

/// A response on the wire: `{"v":1,"ok":...}` or `{"v":1,"error":{"kind":...,"message":...}}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Reply<T> {
    Ok(T),
    Error(ApiError),
}

/// The process that owns the store, reached through its socket.
#[derive(Clone, Debug)]
pub(crate) struct Remote {
    socket: PathBuf,
}

/// Whether a failed connect or exchange means "nobody serves here (any more)".
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

impl Remote {
    /// Connects once to check that an owner serves on `socket`.
    pub(crate) async fn connect(socket: &Path) -> Result<Remote, io::Error> {
        UnixStream::connect(socket).await?;
        Ok(Remote {
            socket: socket.to_path_buf(),
        })
    }

    /// Sends `request` and decodes the answer.
    pub(crate) async fn call<T: DeserializeOwned>(&self, request: &Request) -> Result<T, ApiError> {
        let answer = self.exchange(request).await.map_err(|e| {
            let kind = if gone(&e) {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Store
            };
            ApiError::new(
                kind,
                format!(
                    "cannot talk to the process that owns the store through its socket {}: {e}",
                    self.socket.display()
                ),
            )
        })?;
        let reply: Envelope<Reply<T>> = serde_json::from_str(&answer).map_err(|e| {
            ApiError::new(
                ErrorKind::Store,
                format!(
                    "the process that owns the store answered something this binary cannot read ({e}); is it another version of this binary? (protocol version {PROTOCOL} here)"
                ),
            )
        })?;
        match reply.body {
            Reply::Ok(value) => Ok(value),
            Reply::Error(e) => Err(e),
        }
    }

    async fn exchange(&self, request: &Request) -> io::Result<String> {
        let mut stream = UnixStream::connect(&self.socket).await?;
        let mut line = serde_json::to_vec(&Envelope {
            v: PROTOCOL,
            body: request,
        })
        .map_err(io::Error::other)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut reader = BufReader::new(stream);
        let mut answer = String::new();
        if reader.read_line(&mut answer).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "it closed the connection without an answer (it is stopping)",
            ));
        }
        Ok(answer)
    }
}

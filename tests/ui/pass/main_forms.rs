//! `#[flow::main]` in its zero-parameter form, with no return type.
use flow_runtime as flow;

/// Syncs records between two systems.
///
/// Run `sync runs list` to see what happened.
#[flow::main]
async fn main() {
    let ready = true;
    assert!(ready);
}

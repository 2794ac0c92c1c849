//! Which process executes a run, so a second process does not execute it at the same time.
//!
//! An executing run records its owner: pid, the process's start time and the machine's boot id
//! (all from `/proc`, so a recycled pid or a reboot is not mistaken for the owner). A process
//! that finds an unfinished run owned by a live process refuses to execute it; a run whose
//! owner died (a crash, a SIGKILL) is free to resume. This module only answers "who am I" and
//! "is that process alive"; the store's claim ([`super::Store::claim`]) decides with it.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The process executing a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// The process's start time, in clock ticks since boot (`/proc/PID/stat`, field 22).
    pub start_ticks: u64,
    /// The machine's boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
}

/// The start time of a running process; `None` if there is no such process or it has exited
/// and waits to be reaped (a zombie still has its `/proc` entry).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields resume after the last `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn boot_id() -> Option<String> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
    })
    .clone()
}

impl Owner {
    /// This process; `None` where `/proc` is not available (runs are then not guarded).
    pub(crate) fn current() -> Option<Owner> {
        static CURRENT: OnceLock<Option<Owner>> = OnceLock::new();
        CURRENT
            .get_or_init(|| {
                let pid = std::process::id();
                Some(Owner {
                    pid,
                    start_ticks: start_ticks(pid)?,
                    boot_id: boot_id()?,
                })
            })
            .clone()
    }

    /// Whether this owner is another process that is still running.
    pub(crate) fn is_another_live_process(&self) -> bool {
        self.liveness() == Liveness::Alive
    }

    /// What can be known of this owner from here.
    pub(crate) fn liveness(&self) -> Liveness {
        if Owner::current().as_ref() == Some(self) {
            return Liveness::Current;
        }
        match boot_id() {
            // Another boot of this machine: every process of that boot is gone.
            Some(boot) if boot != self.boot_id => Liveness::Dead,
            Some(_) if start_ticks(self.pid) == Some(self.start_ticks) => Liveness::Alive,
            Some(_) => Liveness::Dead,
            None => Liveness::Unknown,
        }
    }
}

/// Whether the owner of a claim still runs, as far as this process can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// This process.
    Current,
    /// Another process that is running.
    Alive,
    /// A process that exited (or a pid now used by another process).
    Dead,
    /// This machine has no `/proc`: only the claim's lease can tell.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_its_own_owner_and_a_dead_pid_is_not_alive() {
        let me = Owner::current().expect("/proc is available on the test machines");
        assert!(
            !me.is_another_live_process(),
            "this process is not *another* process"
        );
        let gone = Owner {
            pid: u32::MAX - 1,
            ..me.clone()
        };
        assert!(!gone.is_another_live_process());
        let recycled = Owner {
            start_ticks: me.start_ticks + 1,
            pid: 1,
            ..me
        };
        assert!(
            !recycled.is_another_live_process(),
            "same pid, other start time"
        );
    }
}

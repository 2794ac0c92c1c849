//! Which process executes a run, so a second process does not execute it at the same time.
//!
//! An executing run records its owner: the machine, pid, the process's start time and the
//! machine's boot id (all from `/proc`, so a recycled pid or a reboot is not mistaken for the
//! owner). A process that finds an unfinished run owned by a live process refuses to execute
//! it; a run whose owner died (a crash, a SIGKILL) is free to resume. An owner on another
//! machine (a database shared by several) cannot be checked from here: only its claim's lease
//! tells. This module only answers "who am I" and "is that process alive"; the store's claim
//! ([`super::Store::claim`]) decides with it.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The process executing a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The machine ([`Owner::machine_id`]); empty in records written before flow kept it,
    /// which are taken to be of this machine (as they were: those stores were local files).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine_id: String,
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

/// `FLOW_MACHINE_ID` if set, else `/etc/machine-id` (or dbus's copy), else the host name
/// (`host:NAME`); `None` if none can be read.
fn find_machine_id() -> Option<String> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    if let Some(id) = std::env::var("FLOW_MACHINE_ID")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
    {
        return Some(id);
    }
    read("/etc/machine-id")
        .or_else(|| read("/var/lib/dbus/machine-id"))
        .or_else(|| read("/proc/sys/kernel/hostname").map(|h| format!("host:{h}")))
}

impl Owner {
    /// This machine's identity, as owners record it: `FLOW_MACHINE_ID` if set, else
    /// `/etc/machine-id`, else `host:` and the host name. Containers that share one image's
    /// `/etc/machine-id` but not a pid namespace must set `FLOW_MACHINE_ID` (their host name,
    /// say), or they would judge each other's processes by pids they cannot see.
    pub fn machine_id() -> Option<String> {
        static MACHINE: OnceLock<Option<String>> = OnceLock::new();
        MACHINE.get_or_init(find_machine_id).clone()
    }

    /// This process; `None` where `/proc` is not available (runs are then not guarded).
    pub(crate) fn current() -> Option<Owner> {
        static CURRENT: OnceLock<Option<Owner>> = OnceLock::new();
        CURRENT
            .get_or_init(|| {
                let pid = std::process::id();
                Some(Owner {
                    machine_id: Owner::machine_id().unwrap_or_default(),
                    pid,
                    start_ticks: start_ticks(pid)?,
                    boot_id: boot_id()?,
                })
            })
            .clone()
    }

    /// Whether this owner is a process that is still running, this one included (the web
    /// console of a worker shows the worker's own runs).
    pub(crate) fn is_live_process(&self) -> bool {
        Owner::current().as_ref() == Some(self) || self.is_another_live_process()
    }

    /// Whether this owner is another process that is still running.
    pub(crate) fn is_another_live_process(&self) -> bool {
        self.liveness() == Liveness::Alive
    }

    /// What can be known of this owner from here.
    pub(crate) fn liveness(&self) -> Liveness {
        self.liveness_from(Owner::machine_id().as_deref())
    }

    /// [`Owner::liveness`], as seen from the machine `here`.
    fn liveness_from(&self, here: Option<&str>) -> Liveness {
        if Owner::current().as_ref() == Some(self) {
            return Liveness::Current;
        }
        // Another machine's processes cannot be looked up here, nor its boots compared
        if !self.machine_id.is_empty() && here != Some(self.machine_id.as_str()) {
            return Liveness::Unknown;
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
    /// Another machine's process, or this machine has no `/proc`: only the claim's lease can
    /// tell.
    Unknown,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
            ..me.clone()
        };
        assert!(
            !recycled.is_another_live_process(),
            "same pid, other start time"
        );
    }

    /// pid 1 of this machine, alive as long as the machine runs.
    fn init(machine_id: &str, boot_id: &str) -> Owner {
        Owner {
            machine_id: machine_id.to_owned(),
            pid: 1,
            start_ticks: start_ticks(1).expect("pid 1 runs"),
            boot_id: boot_id.to_owned(),
        }
    }

    #[test]
    fn an_owner_of_this_machine_is_judged_by_its_process_and_boot() {
        let here = Owner::machine_id().expect("a machine id or a host name");
        let me = Owner::current().unwrap();
        assert_eq!(me.machine_id, here, "owners record the machine");
        assert_eq!(me.liveness(), Liveness::Current);
        let boot = boot_id().unwrap();
        assert_eq!(init(&here, &boot).liveness(), Liveness::Alive);
        assert_eq!(
            init(&here, "an-earlier-boot").liveness(),
            Liveness::Dead,
            "another boot of this machine: every process of it is gone"
        );
        let gone = Owner {
            pid: u32::MAX - 1,
            ..init(&here, &boot)
        };
        assert_eq!(gone.liveness(), Liveness::Dead);
        // Records written before owners kept the machine are of this machine, as before
        assert_eq!(init("", "an-earlier-boot").liveness(), Liveness::Dead);
        assert_eq!(init("", &boot).liveness(), Liveness::Alive);
    }

    #[test]
    fn an_owner_on_another_machine_is_left_to_its_lease() {
        let boot = boot_id().unwrap();
        // Another boot id and a pid that does not run here: on this machine both would mean
        // dead; on another machine they say nothing
        let elsewhere = Owner {
            pid: u32::MAX - 1,
            ..init("another-machine", "another-boot")
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
        assert_eq!(init("another-machine", &boot).liveness(), Liveness::Unknown);
        // As seen from that machine, this machine's owners are the unknown ones
        let me = init(&Owner::machine_id().unwrap(), &boot);
        assert_eq!(me.liveness_from(Some("another-machine")), Liveness::Unknown);
        assert_eq!(me.liveness_from(None), Liveness::Unknown);
    }

    #[test]
    fn a_run_of_another_machine_is_held_until_its_lease_expires() {
        use crate::store::{RunRecord, RunStatus};
        let mut run = RunRecord::new(
            "r".into(),
            "w",
            RunStatus::Running,
            serde_json::json!(null),
            "t".into(),
            0,
        );
        run.owner = Some(Owner {
            pid: u32::MAX - 1,
            ..init("another-machine", "another-boot")
        });
        run.lease_expires_at_ms = Some(1_000);
        assert!(run.is_held(999), "its lease holds");
        assert!(
            !run.is_held(1_000),
            "its lease expired: another worker may take it"
        );
        // The same owner on this machine is known dead at once
        run.owner = Some(Owner {
            pid: u32::MAX - 1,
            ..init(&Owner::machine_id().unwrap(), "another-boot")
        });
        assert!(!run.is_held(0));
    }
}

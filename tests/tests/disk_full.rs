//! A full disk: the commit that does not fit fails with a clear error, the run stops without
//! losing what was committed, and once space is freed the run resumes where it stopped.
//!
//! The store lives on a small tmpfs that the test mounts (the test machines run tests as root;
//! elsewhere the test says why it cannot run and returns).

use flow_runtime as flow;
use flow_tests::{bump, count};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Unmounts the tmpfs when the test ends, whatever happens.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_path_buf()))
}

/// Each step checkpoints 64 KiB, so a few of them fill the small disk.
#[flow::step(idempotent, retry = "none")]
async fn bulky(i: u32) -> Result<String, flow::Failure> {
    bump(&format!("bulky/{i}"));
    Ok(format!("{i:08}").repeat(8 * 1024))
}

#[flow::workflow]
async fn fill_the_disk(steps: u32) -> Result<usize, flow::Failure> {
    let mut total = 0;
    for i in 0..steps {
        total += bulky(i).await?.len();
    }
    Ok(total)
}

#[tokio::test]
async fn a_full_disk_stops_the_run_cleanly_and_it_resumes_after_space_is_freed() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_tmpfs(dir.path(), "16m") else {
        panic!(
            "could not mount a tmpfs on {} as root",
            dir.path().display()
        );
    };
    let store = dir.path().join("flow.redb");
    // Leave room for the store and a few checkpoints, not for 40.
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 14 * 1024 * 1024]).unwrap();

    let id = flow::RunId::from("full");
    let flow = flow::Flow::open(&store).unwrap();
    let err = fill_the_disk::start_with(&flow, flow::RunOptions::new().id(id.clone()), 40)
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("the disk fills up");
    let message = err.to_string();
    assert!(message.contains("no space left"), "{message}");
    assert!(
        message.contains("resume"),
        "the error says what to do: {message}"
    );
    let ran_before: Vec<u32> = (0..40)
        .filter(|i| count(&format!("bulky/{i}")) > 0)
        .collect();
    assert!(ran_before.len() < 40, "the run stopped at the full disk");
    drop(flow);

    // Free space; what was committed is still there and the run is resumable.
    std::fs::remove_file(&filler).unwrap();
    let flow = flow::Flow::open(&store).unwrap();
    let run = flow.run_record(&id).await.unwrap().unwrap();
    assert_eq!(
        run.status,
        flow::RunStatus::Running,
        "left resumable, not failed"
    );
    let committed = flow.steps(&id).await.unwrap().len();
    assert!(
        committed > 0,
        "checkpoints committed before the disk filled are intact"
    );

    let total = flow.resume(&id).await.unwrap().outcome().await.unwrap();
    assert_eq!(total, serde_json::json!(40 * 64 * 1024));
    for i in 0..committed as u32 {
        assert_eq!(
            count(&format!("bulky/{i}")),
            1,
            "committed step {i} ran again"
        );
    }
    assert_eq!(flow.steps(&id).await.unwrap().len(), 40);
}

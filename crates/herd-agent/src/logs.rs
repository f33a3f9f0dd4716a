//! An instance's stdout and stderr go straight into files the agent opens for it in append
//! mode, so the process keeps writing while the agent itself restarts (and then adopts it).
//! The agent keeps each file bounded: past `max_bytes` it is copied to `.1` (older copies
//! shift to `.2` … up to `keep`, the oldest dropped) and emptied in place — the process's
//! descriptor stays valid and its appends land at the new end. What is written between the
//! copy and the emptying is lost, as with logrotate's copytruncate; a file may pass the
//! bound by what the process writes in one look (every second).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const MAX_BYTES: u64 = 10 << 20;
pub const KEEP: u32 = 3;
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// A log file for a child's stdout or stderr: created with its directory, opened to append.
pub fn open_for_child(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut p = path.to_path_buf().into_os_string();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Rotate `path` when it holds `max_bytes` or more; true when it did.
pub fn rotate_if_over(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<bool> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(_) => return Ok(false),
    };
    if size < max_bytes {
        return Ok(false);
    }
    if keep > 0 {
        let _ = std::fs::remove_file(numbered(path, keep));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(numbered(path, n), numbered(path, n + 1));
        }
        let mut copy = std::fs::File::create(numbered(path, 1))?;
        let mut from = std::fs::File::open(path)?;
        std::io::copy(&mut from, &mut copy)?;
        copy.flush()?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    Ok(true)
}

/// What an instance wrote, oldest first (the rotated copies, then the current file), at
/// most the last `tail` bytes; and the current file's length, where following resumes.
pub fn read_all(path: &Path, tail: Option<u64>) -> std::io::Result<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    for n in (1..=KEEP).rev() {
        if let Ok(b) = std::fs::read(numbered(path, n)) {
            out.extend_from_slice(&b);
        }
    }
    let current = std::fs::read(path)?;
    let len = current.len() as u64;
    out.extend_from_slice(&current);
    if let Some(t) = tail {
        let keep = usize::try_from(t).unwrap_or(usize::MAX);
        if out.len() > keep {
            out.drain(..out.len() - keep);
        }
    }
    Ok((out, len))
}

/// Keep these files bounded until the task is aborted.
pub async fn keep_bounded(paths: [PathBuf; 2]) {
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let paths = paths.clone();
        let done = tokio::task::spawn_blocking(move || {
            for p in &paths {
                if let Err(e) = rotate_if_over(p, MAX_BYTES, KEEP) {
                    tracing::warn!(path = %p.display(), error = %e, "agent: cannot rotate the log file");
                }
            }
        });
        let _ = done.await;
    }
}

/// Where an instance's logs go: `DIR/logs/<service>/<instance>.{stdout,stderr}.log`.
pub fn paths(dir: &Path, service: &str, instance: &str) -> (PathBuf, PathBuf) {
    let base = dir.join("logs").join(service);
    (
        base.join(format!("{instance}.stdout.log")),
        base.join(format!("{instance}.stderr.log")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_past_its_bound_is_copied_aside_and_emptied_under_the_writer() {
        let dir = std::env::temp_dir().join(format!("herd-logs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("x.log");
        // The child's descriptor: it stays open across every rotation.
        let mut child = open_for_child(&path).unwrap();
        child.write_all(b"0123456789").unwrap();
        assert!(rotate_if_over(&path, 10, 2).unwrap());
        child.write_all(b"abcdefghijKL").unwrap();
        assert!(rotate_if_over(&path, 10, 2).unwrap());
        child.write_all(b"mnopq").unwrap();
        assert!(
            !rotate_if_over(&path, 10, 2).unwrap(),
            "5 bytes: under the bound"
        );
        child.write_all(b"rstuv").unwrap();
        assert!(rotate_if_over(&path, 10, 2).unwrap());
        child.write_all(b"w").unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(
            read(path.clone()),
            "w",
            "appends land at the emptied file's start"
        );
        assert_eq!(read(dir.join("x.log.1")), "mnopqrstuv");
        assert_eq!(read(dir.join("x.log.2")), "abcdefghijKL");
        assert!(
            !dir.join("x.log.3").exists(),
            "only two copies are kept: 0123456789 is gone"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! An instance's stdout and stderr, each copied to a file of bounded size: when a file
//! would pass `max_bytes` it becomes `.1` (the older ones `.2` … up to `keep`, the oldest
//! dropped), so a chatty service can never fill the agent's disk.

use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub const MAX_BYTES: u64 = 10 << 20;
pub const KEEP: u32 = 3;

pub struct Rotating {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<tokio::fs::File>,
    size: u64,
}

impl Rotating {
    pub async fn open(path: PathBuf, max_bytes: u64, keep: u32) -> std::io::Result<Rotating> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        let size = file.metadata().await?.len();
        Ok(Rotating {
            path,
            max_bytes,
            keep,
            file: Some(file),
            size,
        })
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    async fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush().await?;
        }
        let _ = tokio::fs::remove_file(self.numbered(self.keep)).await;
        for n in (1..self.keep).rev() {
            let _ = tokio::fs::rename(self.numbered(n), self.numbered(n + 1)).await;
        }
        if self.keep > 0 {
            tokio::fs::rename(&self.path, self.numbered(1)).await?;
        } else {
            tokio::fs::remove_file(&self.path).await?;
        }
        self.file = Some(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await?,
        );
        self.size = 0;
        Ok(())
    }

    pub async fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.size >= self.max_bytes {
                self.rotate().await?;
            }
            let room = (self.max_bytes - self.size).max(1) as usize;
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            if let Some(f) = self.file.as_mut() {
                f.write_all(now).await?;
            }
            self.size += now.len() as u64;
            bytes = rest;
        }
        // tokio's File completes writes on a blocking thread: flush, so what a process
        // wrote is on disk when someone reads the log (and not lost if we are killed).
        if let Some(f) = self.file.as_mut() {
            f.flush().await?;
        }
        Ok(())
    }
}

/// Copy a child's pipe into a rotating file until the pipe closes.
pub async fn copy(mut from: impl AsyncRead + Unpin, to: PathBuf) {
    let Ok(mut out) = Rotating::open(to.clone(), MAX_BYTES, KEEP).await else {
        tracing::warn!(path = %to.display(), "agent: cannot open the log file; output dropped");
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.write(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
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

    #[tokio::test]
    async fn files_rotate_at_the_limit_and_keep_only_so_many() {
        let dir = std::env::temp_dir().join(format!("herd-logs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("x.log");
        let mut r = Rotating::open(path.clone(), 10, 2).await.unwrap();
        r.write(b"0123456789abcdefghij").await.unwrap(); // 20 bytes: one full file, one rotated
        r.write(b"KLMNO").await.unwrap();
        r.write(b"pqrstuvwxyz").await.unwrap(); // 11 more: 5 fill the file, it rotates
        drop(r);
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(path.clone()), "uvwxyz");
        assert_eq!(read(dir.join("x.log.1")), "KLMNOpqrst");
        assert_eq!(read(dir.join("x.log.2")), "abcdefghij");
        assert!(
            !dir.join("x.log.3").exists(),
            "only two old files are kept: 0123456789 is gone"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! JSON access log, one line per request, per listener. Off unless configured, so it costs
//! nothing then. Lines go through a channel to a writer thread: a slow disk never stalls
//! a worker's event loop.

use herd_config::AccessLog;
use std::io::Write;
use std::sync::mpsc;

pub struct AccessLogSink {
    target: AccessLog,
    tx: mpsc::Sender<String>,
}

impl AccessLogSink {
    pub fn open(target: &AccessLog) -> std::io::Result<AccessLogSink> {
        let mut out: Box<dyn Write + Send> = match target {
            AccessLog::Stdout => Box::new(std::io::stdout()),
            AccessLog::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("herd-access-log".into())
            .spawn(move || {
                let mut buf = std::io::BufWriter::new(&mut out);
                while let Ok(line) = rx.recv() {
                    let _ = buf.write_all(line.as_bytes());
                    // Drain what is queued, then flush once: batches under load, prompt when idle.
                    while let Ok(more) = rx.try_recv() {
                        let _ = buf.write_all(more.as_bytes());
                    }
                    let _ = buf.flush();
                }
            })?;
        Ok(AccessLogSink {
            target: target.clone(),
            tx,
        })
    }

    pub fn target(&self) -> &AccessLog {
        &self.target
    }

    pub fn write(&self, line: String) {
        let _ = self.tx.send(line);
    }
}

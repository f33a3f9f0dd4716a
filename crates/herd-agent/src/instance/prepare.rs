//! Provision: the version's files in `DIR/services/<name>/<version>/` (copied once from the
//! artifact — a tar archive unpacked — never overwritten: an old version's files stay beside the new one's), the
//! command to run, its arguments and environment with the allocated ports.

use herd_agent_core::manifest::{Artifact, Manifest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything needed to start the process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
}

pub fn version_dir(dir: &Path, m: &Manifest) -> PathBuf {
    dir.join("services")
        .join(&m.name)
        .join(m.version.to_string())
}

/// The version's directory, filled from the artifact the first time.
pub async fn files(dir: &Path, m: &Manifest) -> Result<PathBuf, String> {
    let target = version_dir(dir, m);
    if target.exists() {
        return Ok(target);
    }
    let parent = target.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    // Filled beside, then renamed: a crash halfway never leaves a half-copied version. Two
    // instances of one version provisioning at once each fill their own; the first rename
    // wins and the other finds the version in place.
    static FILLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = FILLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = parent.join(format!(".{}.partial-{}-{n}", m.version, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    match &m.artifact {
        None => {}
        Some(Artifact::Path(p)) => {
            let src = Path::new(p);
            let meta = std::fs::metadata(src).map_err(|e| format!("artifact {p}: {e}"))?;
            if meta.is_dir() {
                copy_dir(src, &tmp).map_err(|e| format!("copy artifact {p}: {e}"))?;
            } else {
                let name = src
                    .file_name()
                    .ok_or(format!("artifact {p} has no file name"))?;
                std::fs::copy(src, tmp.join(name))
                    .map_err(|e| format!("copy artifact {p}: {e}"))?;
            }
        }
        Some(Artifact::Url { url, sha256 }) => {
            if let Err(e) = super::download::fetch(url, sha256, &tmp).await {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        }
    }
    if let Err(e) = unpack(&tmp).await {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, &target) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !target.exists() {
            return Err(format!("rename to {}: {e}", target.display()));
        }
    }
    Ok(target)
}

/// An artifact that is one tar archive (`.tar`, `.tar.gz`/`.tgz`, `.tar.xz`/`.txz`,
/// `.tar.bz2`/`.tbz2`) is unpacked in place by the system's GNU tar, which refuses members
/// with `..`, strips a leading `/` and does not write through a member symlink; owners are
/// not restored. A refused member fails the whole provisioning: nothing half-unpacked runs.
async fn unpack(dir: &Path) -> Result<(), String> {
    const ARCHIVES: [&str; 8] = [
        ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz",
    ];
    let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    let [only] = entries.as_slice() else {
        return Ok(());
    };
    let name = only.file_name().to_string_lossy().to_ascii_lowercase();
    if !only.path().is_file() || !ARCHIVES.iter().any(|x| name.ends_with(x)) {
        return Ok(());
    }
    let archive = only.path();
    let out = tokio::process::Command::new("tar")
        .arg("-x")
        .arg("-f")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .arg("--no-same-owner")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run tar to unpack {name}: {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why
            .lines()
            .filter(|l| !l.contains("Removing leading"))
            .collect::<Vec<_>>();
        return Err(format!("unpacking {name} failed: {}", why.join("; ")));
    }
    std::fs::remove_file(&archive).map_err(|e| format!("remove {name} after unpacking: {e}"))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// `${PORT}` and `${PORT_<NAME>}` replaced (the manifest allows no other substitution).
fn substitute(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (k, v) in env {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

pub fn launch(
    m: &Manifest,
    workdir: PathBuf,
    ports: &[(String, u16)],
    ids: [(&str, &str); 3],
) -> Launch {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    if let Some((_, p)) = ports.first() {
        vars.insert("PORT".into(), p.to_string());
    }
    for (name, p) in ports {
        vars.insert(format!("PORT_{}", name.to_ascii_uppercase()), p.to_string());
    }
    let program = {
        let c = Path::new(&m.run.command);
        let local = workdir.join(c);
        if c.is_absolute() {
            c.to_path_buf()
        } else if m.artifact.is_some() && local.exists() {
            local
        } else {
            c.to_path_buf()
        }
    };
    let args = m.run.args.iter().map(|a| substitute(a, &vars)).collect();
    let mut env: Vec<(String, String)> = m.run.env.clone();
    env.extend(vars);
    env.extend(ids.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Launch {
        program,
        args,
        env,
        workdir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_of_one_version_provisioning_at_once_all_find_its_files() {
        let dir = std::env::temp_dir().join(format!("herd-prepare-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let art = dir.join("art");
        std::fs::create_dir_all(art.join("bin")).unwrap();
        std::fs::write(art.join("bin/app"), b"#!/bin/sh\n").unwrap();
        let text = format!(
            "name = \"web\"\nversion = \"1.2.3\"\nartifact = \"{}\"\n[run]\ncommand = \"bin/app\"\n",
            art.display()
        );
        let m = herd_agent_core::parse_manifest(&text, "t.toml").unwrap();
        let data = dir.join("data");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let results: Vec<Result<PathBuf, String>> = rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (data, m) = (data.clone(), m.clone());
                    tokio::spawn(async move { files(&data, &m).await })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        for r in &results {
            assert_eq!(
                r.as_deref(),
                Ok(data.join("services/web/1.2.3").as_path()),
                "{results:?}"
            );
        }
        assert!(data.join("services/web/1.2.3/bin/app").exists());
        let leftovers: Vec<_> = std::fs::read_dir(data.join("services/web"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, ["1.2.3"], "no partial copies left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

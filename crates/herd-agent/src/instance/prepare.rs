//! Provision: the version's files in `DIR/services/<name>/<version>/` (copied once from the
//! artifact, never overwritten: an old version's files stay beside the new one's), the
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
pub fn files(dir: &Path, m: &Manifest) -> Result<PathBuf, String> {
    let target = version_dir(dir, m);
    if target.exists() {
        return Ok(target);
    }
    let parent = target.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    // Filled beside, then renamed: a crash halfway never leaves a half-copied version.
    let tmp = parent.join(format!(".{}.partial-{}", m.version, std::process::id()));
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
        Some(Artifact::Url { url, .. }) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(format!(
                "artifact {url}: downloading artifacts is not supported yet; copy it to the agent's machine and use a path"
            ));
        }
    }
    std::fs::rename(&tmp, &target).map_err(|e| format!("rename to {}: {e}", target.display()))?;
    Ok(target)
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

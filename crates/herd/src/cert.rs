//! `herd cert init|issue`: a cluster's own certificate authority and the certificates it
//! signs (ECDSA P-256), with no openssl — for the gateway's https listeners and TLS to
//! servers today, and the registry's TLS when it comes (issue 16). Keys are written 0600.

use anyhow::{bail, Context};
use clap::Subcommand;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum Cert {
    /// Create the cluster's CA in DIR: ca.pem (give it to whoever must trust herd's
    /// certificates) and ca.key (keep it secret).
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue a certificate signed by DIR's CA: NAME.pem and NAME.key, for the names and
    /// addresses it will be reached by (server) and that identify it (client).
    Issue {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The certificate's name (its file name and common name; also a DNS name in it).
        #[arg(long)]
        name: String,
        /// An IP address it is reached at (repeat for more).
        #[arg(long, value_name = "ADDR")]
        ip: Vec<std::net::IpAddr>,
        /// Another DNS name it is reached by (repeat for more).
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
        /// Days it is valid.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

pub fn run(cmd: Cert) -> anyhow::Result<()> {
    match cmd {
        Cert::Init { dir } => init(&dir),
        Cert::Issue {
            dir,
            name,
            ip,
            dns,
            days,
        } => issue(&dir, &name, &ip, &dns, days),
    }
}

/// Writes a new file; refuses to replace one (a CA or key overwritten by mistake cannot
/// be undone).
fn write_new(path: &Path, body: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(body.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Today's date (UTC) as (year, month, day), from the system clock.
fn today() -> (i32, u8, u8) {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// The CA's parameters: rebuilt the same from its key alone (the name derives from the
/// key), so issuing needs only ca.key.
fn ca_params(key: &rcgen::KeyPair) -> anyhow::Result<rcgen::CertificateParams> {
    let id: String = key
        .public_key_raw()
        .iter()
        .skip(1)
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("herd cluster CA {id}"));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn init(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = ca_params(&key)?;
    let (y, m, d) = today();
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + 10, m, d.min(28));
    let cert = params.self_signed(&key)?;
    write_new(&dir.join("ca.key"), &key.serialize_pem(), 0o600)?;
    write_new(&dir.join("ca.pem"), &cert.pem(), 0o644)?;
    eprintln!(
        "herd: a cluster CA in {0}: ca.pem (trust it), ca.key (keep it secret, 0600). Next:\n  \
         herd cert issue --dir {0} --name node1 --ip 10.0.0.1",
        dir.display()
    );
    Ok(())
}

fn issue(
    dir: &Path,
    name: &str,
    ips: &[std::net::IpAddr],
    dns: &[String],
    days: u32,
) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("--name {name:?}: use letters, digits, '-', '_' and '.' (it becomes a file name)");
    }
    if days == 0 || days > 3650 {
        bail!("--days {days}: from 1 to 3650");
    }
    let ca_key_path = dir.join("ca.key");
    let ca_pem = std::fs::read_to_string(&ca_key_path).with_context(|| {
        format!(
            "cannot read {}: create the CA first with `herd cert init --dir {}`",
            ca_key_path.display(),
            dir.display()
        )
    })?;
    let ca_key = rcgen::KeyPair::from_pem(&ca_pem)
        .with_context(|| format!("{} is not a PEM private key", ca_key_path.display()))?;
    let ca = ca_params(&ca_key)?.self_signed(&ca_key)?;

    let mut names = vec![name.to_string()];
    names.extend(dns.iter().cloned());
    names.extend(ips.iter().map(|ip| ip.to_string()));
    let mut params = rcgen::CertificateParams::new(names)
        .with_context(|| "a --dns name is not a valid DNS name".to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    let (y, m, d) = today();
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (years, rest) = (days / 365, days % 365);
    params.not_after = rcgen::date_time_ymd(y + years as i32, m, d.min(28))
        + std::time::Duration::from_secs(u64::from(rest) * 86_400);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    write_new(
        &dir.join(format!("{name}.key")),
        &key.serialize_pem(),
        0o600,
    )?;
    write_new(&dir.join(format!("{name}.pem")), &cert.pem(), 0o644)?;
    eprintln!(
        "herd: {name}.pem and {name}.key in {} (for {}), signed by its ca.pem",
        dir.display(),
        {
            let mut all = vec![name.to_string()];
            all.extend(dns.iter().cloned());
            all.extend(ips.iter().map(|i| i.to_string()));
            all.join(", ")
        }
    );
    Ok(())
}

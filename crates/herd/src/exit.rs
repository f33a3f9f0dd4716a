//! What the CLI prints and how it exits: exit codes, so a script can tell "not there"
//! from "cannot reach the registry", and stdout writes that end quietly when the reader
//! went away (`herd svc ls | head -1`). The codes are documented in docs/registry.md
//! ("Exit codes").

use herd_api::ApiError;
use std::io::Write;
use std::process::ExitCode;

pub const OK: u8 = 0;
/// The thing asked about does not exist, or the condition asked about is false (404, no
/// leader).
pub const NOT_FOUND: u8 = 1;
/// Bad command line or input, caught before anything was sent; an invalid config file; a
/// failure to start.
pub const USAGE: u8 = 2;
/// No registry node answered, or none had a leader (connection refused, timeout, 502/503).
pub const UNREACHABLE: u8 = 3;
/// The registry refused the request (a 4xx other than 404: bad request, CAS conflict, ...).
pub const REFUSED: u8 = 4;
/// The registry failed (a 5xx other than 502/503).
pub const SERVER_ERROR: u8 = 5;

/// Bad input caught locally, before any request: exit [`USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The answer is "there is none": exit [`NOT_FOUND`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// Write to stdout; a closed pipe comes back as an error (`println!` would panic on it).
pub fn out(s: &str) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes())?;
    o.flush()
}

/// A registry answer, pretty-printed to stdout.
pub fn print_json(body: &[u8]) -> anyhow::Result<()> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| anyhow::anyhow!("registry answered non-JSON: {e}"))?;
    out(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
    Ok(())
}

fn api_code(e: &ApiError) -> u8 {
    match e {
        ApiError::Unreachable { .. } => UNREACHABLE,
        ApiError::Status { status: 404, .. } => NOT_FOUND,
        ApiError::Status {
            status: 502..=504, ..
        } => UNREACHABLE,
        ApiError::Status { status, .. } if *status >= 500 => SERVER_ERROR,
        ApiError::Status { .. } => REFUSED,
        ApiError::Decode { .. } => SERVER_ERROR,
    }
}

/// Print the error once (unless it is a closed stdout, which is the reader's choice, not a
/// failure) and pick the exit code.
pub fn report(e: anyhow::Error) -> ExitCode {
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::from(OK);
            }
        }
    }
    let code = e
        .chain()
        .find_map(|c| {
            if let Some(a) = c.downcast_ref::<ApiError>() {
                Some(api_code(a))
            } else if c.downcast_ref::<NotFound>().is_some() {
                Some(NOT_FOUND)
            } else if c.downcast_ref::<Usage>().is_some() {
                Some(USAGE)
            } else {
                None
            }
        })
        .unwrap_or(USAGE);
    let _ = writeln!(std::io::stderr(), "herd: {}", one_line(&e));
    ExitCode::from(code)
}

/// The error and its causes joined by ": ", leaving out a cause whose text is already
/// there: many errors name their source in their own message, and `{:#}` would print it
/// twice ("...: Address already in use (os error 98): Address already in use (os error 98)").
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(io)
            .context("cannot listen on 127.0.0.1:7401: Address already in use")
            .context("herd up");
        assert_eq!(
            one_line(&e),
            "herd up: cannot listen on 127.0.0.1:7401: Address already in use"
        );
        let e = anyhow::anyhow!("timed out").context("registry at 127.0.0.1:1");
        assert_eq!(one_line(&e), "registry at 127.0.0.1:1: timed out");
    }
}

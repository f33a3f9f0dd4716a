//! Registrations and leases kept alive from the shell: `herd svc register` stays in the
//! foreground renewing its lease until interrupted, `herd lease keepalive` renews until
//! interrupted (or once). An instance on a 10 s lease that nobody renews vanishes after
//! 10 s, which is what the README's quick start used to do.

use anyhow::Context;
use bytes::Bytes;
use herd_api::wire::{KeepAliveAnswer, RegisterAnswer, RegisterRequest};
use herd_api::{ApiError, RegistryClient};
use http::Method;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

use crate::exit::{out, print_json, Usage};

/// Default lease TTL of a registration, seconds.
pub const DEFAULT_TTL_S: f64 = 10.0;

/// Renew at a third of the TTL: two renewals may be lost before the lease expires.
fn renew_every(ttl_s: f64) -> Duration {
    Duration::from_secs_f64((ttl_s / 3.0).clamp(0.05, 3600.0))
}

/// Resolves on the first SIGINT or SIGTERM.
struct Interrupt {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn new() -> anyhow::Result<Interrupt> {
        Ok(Interrupt {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// Split and check `host:port` before anything is sent: an IPv4 address must be one
/// (`999.1.1.1` is not), an IPv6 address needs brackets, a name must be a DNS name, and the
/// port 1-65535.
pub fn parse_instance_addr(addr: &str) -> Result<(String, u16), Usage> {
    let bad = |why: &str| {
        Usage(format!(
            "\"{addr}\" is not a valid instance address: {why} \
             (use host:port, e.g. 10.0.0.7:9000, [2001:db8::7]:9000 or web-1.internal:9000)"
        ))
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad(&format!("port \"{port}\" is not a number from 1 to 65535")))?;
    if port == 0 {
        return Err(bad("port 0 cannot be connected to"));
    }
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let host = match host.strip_prefix('[') {
        Some(inner) => {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| bad("unbalanced '[' around an IPv6 address"))?;
            inner
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad(&format!("\"{inner}\" in brackets is not an IPv6 address")))?;
            inner
        }
        None if host.contains(':') => return Err(bad("an IPv6 address needs brackets")),
        None => host,
    };
    // The registry makes the same check; making it here names the mistake before sending.
    herd_registry_core::catalog::check_address(host).map_err(|e| bad(&e.to_string()))?;
    Ok((host.to_string(), port))
}

pub struct Registration {
    pub service: String,
    pub id: String,
    pub body: RegisterRequest,
    pub ttl_s: f64,
}

impl Registration {
    fn path(&self) -> String {
        format!("/v1/services/{}/instances/{}", self.service, self.id)
    }

    async fn put(&self, c: &RegistryClient) -> Result<(u64, Bytes), anyhow::Error> {
        let body = serde_json::to_vec(&self.body)?;
        let a = c.call(Method::PUT, &self.path(), body).await?;
        let answer: RegisterAnswer = a.json()?;
        Ok((answer.lease, a.body))
    }
}

/// Register, print the registry's answer, then renew the lease until SIGINT/SIGTERM, which
/// deregisters the instance and revokes the lease. A lease that expired anyway (the registry
/// was unreachable for longer than the TTL) is replaced by registering again.
pub async fn register_foreground(c: &RegistryClient, r: Registration) -> anyhow::Result<()> {
    let mut interrupt = Interrupt::new()?;
    let (mut lease, body) = r.put(c).await?;
    print_json(&body)?;
    let every = renew_every(r.ttl_s);
    eprintln!(
        "herd: {}/{} registered on lease {lease} (ttl {}s), renewing every {:.1}s; \
         staying in the foreground: Ctrl-C or SIGTERM deregisters it",
        r.service,
        r.id,
        r.ttl_s,
        every.as_secs_f64()
    );
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sig = loop {
        tokio::select! {
            s = interrupt.recv() => break s,
            _ = tick.tick() => {}
        }
        let renewal = tokio::time::timeout(
            every,
            c.call(
                Method::POST,
                &format!("/v1/lease/{lease}/keepalive"),
                Bytes::new(),
            ),
        )
        .await;
        match renewal {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.status() == Some(404) => {
                eprintln!("herd: lease {lease} expired ({e}); registering again");
                match r.put(c).await {
                    Ok((l, _)) => {
                        lease = l;
                        eprintln!("herd: {}/{} registered on lease {lease}", r.service, r.id);
                    }
                    Err(e) => eprintln!("herd: registering again failed: {e:#}; retrying"),
                }
            }
            Ok(Err(e)) => eprintln!("herd: renewing lease {lease} failed: {e}; retrying"),
            Err(_) => eprintln!(
                "herd: renewing lease {lease}: no answer within {:.1}s; retrying",
                every.as_secs_f64()
            ),
        }
    };
    eprintln!("herd: {sig}: deregistering {}/{}", r.service, r.id);
    match c.call(Method::DELETE, &r.path(), Bytes::new()).await {
        Ok(_) => {}
        // Already gone (deregistered by someone else, or the lease ran out): the goal holds.
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(e.into()),
    }
    match c
        .call(Method::DELETE, &format!("/v1/lease/{lease}"), Bytes::new())
        .await
    {
        Ok(_) => {}
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(e.into()),
    }
    eprintln!("herd: {}/{} deregistered", r.service, r.id);
    Ok(())
}

/// Renew a lease once, or (the default) every third of its TTL until SIGINT/SIGTERM; prints
/// each answer as a JSON line. The lease is left as it is on exit (it expires on its own
/// unless someone else renews it): `herd lease revoke` ends it at once.
pub async fn lease_keepalive(c: &RegistryClient, id: u64, once: bool) -> anyhow::Result<()> {
    let path = format!("/v1/lease/{id}/keepalive");
    let a = c.call(Method::POST, &path, Bytes::new()).await?;
    let v: KeepAliveAnswer = a.json()?;
    out(&format!("{}\n", serde_json::to_string(&v)?))?;
    if once {
        return Ok(());
    }
    let ttl = v.ttl_s;
    let every = renew_every(ttl);
    let mut interrupt = Interrupt::new()?;
    eprintln!(
        "herd: renewing lease {id} every {:.1}s until Ctrl-C or SIGTERM (--once renews once)",
        every.as_secs_f64()
    );
    loop {
        tokio::select! {
            s = interrupt.recv() => {
                eprintln!("herd: {s}: stopped renewing lease {id}; it expires in at most {ttl}s");
                return Ok(());
            }
            _ = tokio::time::sleep(every) => {}
        }
        match tokio::time::timeout(every, c.call(Method::POST, &path, Bytes::new())).await {
            Ok(Ok(a)) => {
                let v: KeepAliveAnswer = a.json()?;
                out(&format!("{}\n", serde_json::to_string(&v)?))?;
            }
            // The lease is gone: nothing left to keep alive.
            Ok(Err(e)) if e.status() == Some(404) => return Err(e.into()),
            Ok(Err(e @ ApiError::Status { .. })) if e.status().is_some_and(|s| s < 500) => {
                return Err(e.into())
            }
            Ok(Err(e)) => eprintln!("herd: renewing lease {id} failed: {e}; retrying"),
            Err(_) => eprintln!(
                "herd: renewing lease {id}: no answer within {:.1}s; retrying",
                every.as_secs_f64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_addresses() {
        let ok = |a: &str| parse_instance_addr(a).map_err(|e| e.0);
        assert_eq!(ok("10.0.0.7:9000"), Ok(("10.0.0.7".into(), 9000)));
        assert_eq!(ok("[2001:db8::7]:9000"), Ok(("2001:db8::7".into(), 9000)));
        assert_eq!(ok("web-1.internal:80"), Ok(("web-1.internal".into(), 80)));
        for bad in [
            "999.1.1.1:9000",
            "1.2.3:9000",
            "10.0.0.7",
            "10.0.0.7:0",
            "10.0.0.7:70000",
            "10.0.0.7:http",
            "2001:db8::7:9000",
            "[2001:db8::7:9000",
            "[nope]:9000",
            ":9000",
            "-web:9000",
            "we b:9000",
            "a..b:9000",
        ] {
            assert!(ok(bad).is_err(), "{bad} accepted");
        }
        let e = ok("999.1.1.1:9000").unwrap_err();
        assert!(e.contains("\"999.1.1.1\" is not an IPv4 address"), "{e}");
    }
}

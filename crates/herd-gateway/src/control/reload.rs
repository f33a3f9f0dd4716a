//! Reload: re-read the configuration, build a new snapshot beside the old one (keeping
//! what the registry discovered and the health state of servers that stay), swap it in;
//! on any error the running configuration stays.

use crate::control;
use crate::state::shared::Shared;
use crate::state::snapshot::Snapshot;
use crate::{ConfigSource, GatewayError};
use herd_config::Config;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Shared {
    /// Re-read the configuration and swap it in; on any error the running config stays.
    pub(crate) fn reload(self: &Arc<Self>) -> Result<u64, GatewayError> {
        let _one_at_a_time = self
            .reload_lock
            .lock()
            .map_err(|_| GatewayError::Reload("a previous reload panicked; restart herd".into()))?;
        let result = self.try_reload();
        match &result {
            Ok(rev) => {
                self.reloads_ok.inc();
                tracing::info!(revision = rev, "configuration reloaded");
            }
            Err(e) => {
                self.reloads_failed.inc();
                tracing::error!(error = %e, "reload refused; the running configuration stays in force");
            }
        }
        result
    }

    fn try_reload(self: &Arc<Self>) -> Result<u64, GatewayError> {
        if let ConfigSource::Text { .. } = self.source {
            return Err(GatewayError::Reload(
                "this gateway runs an embedded configuration; start it with -c FILE to reload"
                    .into(),
            ));
        }
        let config = self.source.load()?;
        let token = admin_token(&config)?;
        let current = self.snapshot.load_full();
        let old: Vec<_> = current
            .config
            .listeners
            .iter()
            .map(|l| (&l.name, &l.bind, l.protocol))
            .collect();
        let new: Vec<_> = config
            .listeners
            .iter()
            .map(|l| (&l.name, &l.bind, l.protocol))
            .collect();
        if old != new {
            return Err(GatewayError::Reload(
                "listeners were added, removed or re-bound; that needs a restart (routes, backends, \
                 health and persistence reload live)"
                    .into(),
            ));
        }
        if config.gateway.workers != current.config.gateway.workers {
            tracing::warn!("gateway.workers changes take effect at the next restart");
        }
        // Reloads are serialized by reload_lock; the number is taken only once the new
        // snapshot exists, so refused reloads leave no gaps in revisions.
        let revision = self.revision.load(Ordering::Relaxed) + 1;
        let config = self.with_discovered(config);
        let snap = Arc::new(Snapshot::build(config, revision, Some(&current))?);
        self.revision.store(revision, Ordering::Relaxed);
        self.admin_token.store(token.map(Arc::new));
        self.restart_health_checks(&snap);
        self.snapshot.store(snap.clone());
        self.restart_discovery(&snap);
        Ok(revision)
    }

    fn with_discovered(&self, mut config: Config) -> Config {
        if let Ok(d) = self.discovered.lock() {
            for (name, b) in config.backends.iter_mut() {
                if b.service.is_some() {
                    b.servers = d.get(name).cloned().unwrap_or_default();
                }
            }
        }
        config
    }

    /// New members for a `service` backend, from the registry: swap in a snapshot with
    /// them, keeping every other server's state. Not a reload: the revision stays.
    pub(crate) fn set_discovered(&self, backend: &str, servers: Vec<herd_config::Server>) {
        let Ok(_one_at_a_time) = self.reload_lock.lock() else {
            return;
        };
        if let Ok(mut d) = self.discovered.lock() {
            d.insert(backend.to_string(), servers);
        }
        let current = self.snapshot.load_full();
        let config = self.with_discovered(current.config.clone());
        match Snapshot::build(config, current.revision, Some(&current)) {
            Ok(snap) => {
                let snap = Arc::new(snap);
                self.restart_health_checks(&snap);
                let count = snap.groups.get(backend).map_or(0, |g| g.servers.0.len());
                self.snapshot.store(snap);
                tracing::info!(
                    backend,
                    servers = count,
                    "backend members updated from the registry"
                );
            }
            Err(e) => {
                tracing::error!(backend, error = %e, "registry members refused; keeping the previous ones")
            }
        }
    }

    pub(crate) fn restart_discovery(self: &Arc<Self>, snap: &Snapshot) {
        let Ok(mut tasks) = self.discovery_tasks.lock() else {
            return;
        };
        for t in tasks.drain(..) {
            t.abort();
        }
        let Some(registry) = &snap.config.registry else {
            return;
        };
        // Rotated in place like a server's certificate; the watcher ends with this
        // snapshot's material.
        if let Some(m) = &snap.registry_tls {
            m.watch();
        }
        let client = match herd_api::RegistryClient::maybe_tls(
            registry.servers.clone(),
            registry.token.clone(),
            snap.registry_tls.as_ref(),
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "registry: cannot set up TLS; services are not followed");
                return;
            }
        };
        for (name, b) in &snap.config.backends {
            if let Some(service) = &b.service {
                tasks.push(control::discovery::spawn(
                    self.clone(),
                    client.clone(),
                    name.clone(),
                    service.clone(),
                ));
            }
        }
    }

    pub(crate) fn restart_health_checks(&self, snap: &Snapshot) {
        if let Ok(mut tasks) = self.health_tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
            *tasks = control::health::spawn_checks(snap);
        }
    }
}

/// The admin token the configuration names, read now.
pub(crate) fn admin_token(
    config: &Config,
) -> Result<Option<crate::state::shared::Token>, GatewayError> {
    match &config.admin {
        Some(a) => {
            control::admin_auth::load_token(a.token_file.as_deref()).map_err(GatewayError::Reload)
        }
        None => Ok(None),
    }
}

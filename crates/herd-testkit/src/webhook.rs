//! A webhook receiver on 127.0.0.1: records every JSON body POSTed to it, and can refuse
//! the first N deliveries with 503 (to see the sender retry).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Webhook {
    pub addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct State {
    received: Mutex<Vec<Value>>,
    refuse: AtomicU64,
    attempts: AtomicU64,
}

impl Webhook {
    /// Refuses the first `refuse_first` POSTs with 503, records the ones after.
    pub fn start(refuse_first: u64) -> Webhook {
        let state = Arc::new(State {
            received: Mutex::new(Vec::new()),
            refuse: AtomicU64::new(refuse_first),
            attempts: AtomicU64::new(0),
        });
        let st = state.clone();
        let (addr, runtime) = crate::serve::http_server(move |req| handle(st.clone(), req));
        Webhook {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The bodies accepted so far, in order.
    pub fn received(&self) -> Vec<Value> {
        self.state.received.lock().unwrap().clone()
    }

    /// Every POST, refused or accepted.
    pub fn attempts(&self) -> u64 {
        self.state.attempts.load(Ordering::SeqCst)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    st.attempts.fetch_add(1, Ordering::SeqCst);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let refuse = st
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mut resp = Response::new(Full::new(Bytes::new()));
    if refuse {
        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    } else {
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        st.received.lock().unwrap().push(v);
    }
    Ok(resp)
}

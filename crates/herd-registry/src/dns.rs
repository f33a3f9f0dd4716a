//! The catalog over DNS (`herd server --dns ADDR`), in the manner of Consul's DNS interface:
//!
//! - `A`/`AAAA <service>.service.herd.`: one record per instance whose address is an IPv4
//!   (IPv6) literal, rotated by one on every answer (DNS round robin);
//! - `SRV <service>.service.herd.`: one SRV per instance (priority 1, the instance's weight,
//!   its port, target `<id>.<service>.instance.herd.`) with the targets' A/AAAA records in
//!   the additional section; an instance whose address is a host name gets that name as its
//!   target instead (and no additional record);
//! - `A`/`AAAA`/`SRV <id>.<service>.instance.herd.`: that one instance;
//! - a name under `herd.` that names nothing: NXDOMAIN (NOERROR with no answer when the name
//!   exists but has no record of the type asked, and for the names that exist only above
//!   others: `herd.`, `service.herd.`, `instance.herd.`, `<service>.instance.herd.`), with a
//!   synthetic SOA for negative caching (RFC 2308); `SOA herd.` answers that SOA;
//!   a name outside `herd.`: REFUSED; names are case-insensitive.
//!
//! Reads are served from this node's applied state without a read barrier (serializable): a
//! DNS answer is stale the moment a cache keeps it, clients retry, and a query must not
//! wait on (or fail with) the leader. Every record has a TTL of [`TTL_SECS`].
//!
//! Why hickory-proto alone and not hickory-server: the server crate brings an authority /
//! catalog / request-handler framework (and its own task and error plumbing) built for zone
//! files; herd needs one synthetic zone answered from memory. Parsing and building messages
//! with hickory-proto over our own tokio `UdpSocket`/`TcpListener` loop is a few dozen lines,
//! keeps the dependency tree small and leaves herd in control of limits and shutdown.

use crate::node::RegistryNode;
use herd_registry_core::catalog::{self, Instance};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// TTL of every record: short, so that a deregistered instance leaves caches within
/// seconds, yet long enough that a burst of lookups from one host is not a burst here.
pub const TTL_SECS: u32 = 5;
/// The largest UDP answer we send (the EDNS payload size recommended since DNS flag day
/// 2020); a client that offers less gets at most what it offers, and never less than 512.
const MAX_UDP_PAYLOAD: u16 = 1232;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// At most this many TCP connections at once; more wait in the accept queue.
const MAX_TCP_CONNS: usize = 128;

/// Where the instances come from: the node's store, or a fixed list in tests.
pub(crate) trait Catalog {
    /// Instances of every service whose name equals `service` ignoring ASCII case, in a
    /// stable order (by service, then id).
    fn instances(&self, service: &str) -> Vec<Instance>;
    /// The catalog's revision (the SOA serial).
    fn revision(&self) -> u64;
}

/// Answers DNS messages; shared by the UDP and TCP loops.
pub(crate) struct Responder<C> {
    catalog: C,
    /// Advanced by one on every answer with records, to rotate them (one counter for all
    /// names: a client asking again sees the next instance first).
    rotation: AtomicUsize,
}

impl<C: Catalog> Responder<C> {
    pub(crate) fn new(catalog: C) -> Self {
        Responder {
            catalog,
            rotation: AtomicUsize::new(0),
        }
    }

    /// The answer to `packet`, encoded to fit `max_len` bytes (and less when the query's
    /// EDNS payload size says so, over UDP), or None when it deserves no answer (not a
    /// query, or too broken to know whom to tell).
    pub(crate) fn answer(&self, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
        let request = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) => return formerr_for_garbage(packet),
        };
        if request.metadata.message_type != MessageType::Query {
            return None; // never answer an answer (no reflection loops)
        }
        let limit = if udp {
            match &request.edns {
                Some(_) => request.max_payload().min(MAX_UDP_PAYLOAD),
                None => 512,
            }
        } else {
            u16::MAX
        };
        let response = self.respond(&request);
        encode_within(response, usize::from(limit))
    }

    fn respond(&self, request: &Message) -> Message {
        let mut resp = Message::response(request.metadata.id, request.metadata.op_code);
        resp.metadata.recursion_desired = request.metadata.recursion_desired;
        resp.metadata.checking_disabled = request.metadata.checking_disabled;
        if let Some(req_edns) = &request.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(MAX_UDP_PAYLOAD).set_version(0);
            resp.set_edns(edns);
            if req_edns.version() > 0 {
                resp.metadata.response_code = ResponseCode::BADVERS;
                return resp;
            }
        }
        if request.metadata.op_code != OpCode::Query {
            resp.metadata.response_code = ResponseCode::NotImp;
            return resp;
        }
        let [query] = request.queries.as_slice() else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp;
        };
        resp.add_query(query.clone());
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            resp.metadata.response_code = ResponseCode::Refused;
            return resp;
        }
        let labels: Vec<String> = query
            .name()
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        if labels.last().map(String::as_str) != Some("herd") {
            resp.metadata.response_code = ResponseCode::Refused;
            return resp;
        }
        resp.metadata.authoritative = true;
        if labels.len() == 1 && matches!(query.query_type(), RecordType::SOA | RecordType::ANY) {
            resp.add_answer(self.soa());
            return resp;
        }
        match self.lookup(&labels) {
            None if self.exists_without_records(&labels) => {
                // An empty non-terminal (RFC 8020: NXDOMAIN would say nothing exists
                // below it, and resolvers may cache that): NOERROR, no data, the SOA.
                resp.add_authority(self.soa());
            }
            None => {
                resp.metadata.response_code = ResponseCode::NXDomain;
                resp.add_authority(self.soa());
            }
            Some(mut found) => {
                let n = found.len();
                if n > 1 {
                    let k = self.rotation.fetch_add(1, Ordering::Relaxed) % n;
                    found.rotate_left(k);
                }
                let (answers, additionals) = records(query, &found);
                if answers.is_empty() {
                    resp.add_authority(self.soa()); // NODATA
                }
                resp.add_answers(answers);
                resp.add_additionals(additionals);
            }
        }
        resp
    }

    /// The instances a name stands for, or None when it names nothing. `labels` are
    /// lowercase and end with "herd".
    fn lookup(&self, labels: &[String]) -> Option<Vec<Instance>> {
        let n = labels.len();
        if n < 3 {
            return None;
        }
        match labels[n - 2].as_str() {
            "service" => {
                let service = labels[..n - 2].join(".");
                catalog::validate_name(&service).ok()?;
                let found = self.catalog.instances(&service);
                (!found.is_empty()).then_some(found)
            }
            // Names may hold dots, so `<id>.<service>` splits in more than one way: try each.
            "instance" if n >= 4 => (1..n - 2).find_map(|i| {
                let (id, service) = (labels[..i].join("."), labels[i..n - 2].join("."));
                if catalog::validate_name(&id).is_err() || catalog::validate_name(&service).is_err()
                {
                    return None;
                }
                let found: Vec<Instance> = self
                    .catalog
                    .instances(&service)
                    .into_iter()
                    .filter(|i| i.id.eq_ignore_ascii_case(&id))
                    .collect();
                (!found.is_empty()).then_some(found)
            }),
            _ => None,
        }
    }

    /// Names that exist only because names exist below them: the zone's apex `herd.`,
    /// `service.herd.` and `instance.herd.`, and `<service>.instance.herd.` while the
    /// service has instances.
    fn exists_without_records(&self, labels: &[String]) -> bool {
        match labels {
            [_herd] => true,
            [kind, _herd] => matches!(kind.as_str(), "service" | "instance"),
            [service, kind, _herd] if kind == "instance" => {
                catalog::validate_name(service).is_ok()
                    && !self.catalog.instances(service).is_empty()
            }
            _ => false,
        }
    }

    fn soa(&self) -> Record {
        let zone = Name::from_labels([&b"herd"[..]]).unwrap_or_else(|_| Name::root());
        let mname = Name::from_labels([&b"ns"[..], &b"herd"[..]]).unwrap_or_else(|_| Name::root());
        let rname =
            Name::from_labels([&b"hostmaster"[..], &b"herd"[..]]).unwrap_or_else(|_| Name::root());
        let serial = (self.catalog.revision() & u64::from(u32::MAX)) as u32;
        let soa = SOA::new(mname, rname, serial, 3600, 600, 86400, TTL_SECS);
        Record::from_rdata(zone, TTL_SECS, RData::SOA(soa))
    }
}

/// The answer and additional records for `query` over `instances` (already rotated).
fn records(query: &Query, instances: &[Instance]) -> (Vec<Record>, Vec<Record>) {
    let owner = query.name().clone();
    let qtype = query.query_type();
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    for inst in instances {
        let ip = inst.address.parse::<IpAddr>().ok();
        match qtype {
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                if let Some(r) = address_record(owner.clone(), ip, qtype) {
                    answers.push(r);
                }
            }
            RecordType::SRV => {
                let target = match ip {
                    Some(_) => instance_name(inst),
                    // A host name: point at it (its owner's DNS resolves it).
                    None => Name::from_ascii(&inst.address).ok().map(|mut n| {
                        n.set_fqdn(true);
                        n
                    }),
                };
                let Some(target) = target else { continue };
                let weight = u16::try_from(inst.weight).unwrap_or(u16::MAX);
                let srv = SRV::new(1, weight, inst.port, target.clone());
                answers.push(Record::from_rdata(owner.clone(), TTL_SECS, RData::SRV(srv)));
                if let Some(r) = ip.and_then(|ip| address_record(target, Some(ip), RecordType::ANY))
                {
                    additionals.push(r);
                }
            }
            _ => {}
        }
    }
    (answers, additionals)
}

/// An A or AAAA record for `ip` when it matches `qtype` (ANY takes either).
fn address_record(owner: Name, ip: Option<IpAddr>, qtype: RecordType) -> Option<Record> {
    let rdata = match (ip?, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
        _ => return None,
    };
    Some(Record::from_rdata(owner, TTL_SECS, rdata))
}

/// `<id>.<service>.instance.herd.`, or None if it is no valid DNS name (a label over 63
/// bytes, the whole over 255).
pub(crate) fn instance_name(inst: &Instance) -> Option<Name> {
    let labels = inst
        .id
        .split('.')
        .chain(inst.service.split('.'))
        .chain(["instance", "herd"])
        .map(str::as_bytes);
    Name::from_labels(labels).ok()
}

/// FORMERR for bytes that do not parse, when at least the header says who asked; nothing
/// for fragments or for answers.
fn formerr_for_garbage(packet: &[u8]) -> Option<Vec<u8>> {
    let (id, flags) = match packet {
        [a, b, c, _, ..] if packet.len() >= 12 => (u16::from_be_bytes([*a, *b]), *c),
        _ => return None,
    };
    if flags & 0x80 != 0 {
        return None; // QR set: an answer
    }
    let op_code = OpCode::from_u8((flags >> 3) & 0x0F);
    Message::error_msg(id, op_code, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

/// Encode `msg`; when it exceeds `limit`, drop the additional section, then answers, setting
/// TC so the client retries over TCP.
fn encode_within(mut msg: Message, limit: usize) -> Option<Vec<u8>> {
    let mut bytes = msg.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    msg.additionals.clear();
    bytes = msg.to_vec().ok()?;
    while bytes.len() > limit && !msg.answers.is_empty() {
        msg.metadata.truncation = true;
        // Shrink in proportion, at least by one: few re-encodings even for long lists.
        let keep = (msg.answers.len() * limit / bytes.len()).min(msg.answers.len() - 1);
        msg.answers.truncate(keep);
        bytes = msg.to_vec().ok()?;
    }
    (bytes.len() <= limit).then_some(bytes)
}

/// The node's store as a [`Catalog`], read without a read barrier (serializable).
pub(crate) struct StoreCatalog {
    node: Arc<RegistryNode>,
    /// Lowercase service name -> the registered spellings, rebuilt when the revision moves
    /// (names are case-insensitive in DNS, not in the catalog).
    names: Mutex<(u64, HashMap<String, Vec<String>>)>,
}

impl StoreCatalog {
    pub(crate) fn new(node: Arc<RegistryNode>) -> Self {
        StoreCatalog {
            node,
            names: Mutex::new((u64::MAX, HashMap::new())),
        }
    }
}

impl Catalog for StoreCatalog {
    fn instances(&self, service: &str) -> Vec<Instance> {
        let Ok(applied) = self.node.state.applied.read() else {
            return Vec::new();
        };
        let store = &applied.store;
        let Ok(mut names) = self.names.lock() else {
            return Vec::new();
        };
        if names.0 != store.revision() {
            let (kvs, _) = store.range(catalog::SERVICES_PREFIX, 0);
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            for name in catalog::service_names(&kvs) {
                map.entry(name.to_ascii_lowercase()).or_default().push(name);
            }
            *names = (store.revision(), map);
        }
        let Some(spellings) = names.1.get(&service.to_ascii_lowercase()) else {
            return Vec::new();
        };
        spellings
            .iter()
            .filter_map(|s| catalog::service_prefix(s).ok())
            .flat_map(|prefix| catalog::parse_instances(&store.range(&prefix, 0).0))
            .collect()
    }

    fn revision(&self) -> u64 {
        self.node
            .state
            .applied
            .read()
            .map(|a| a.store.revision())
            .unwrap_or(0)
    }
}

/// The DNS sockets, bound before the node starts so that a busy port fails the start.
pub(crate) struct Sockets {
    udp: UdpSocket,
    /// TCP on the same port; None if it could not be had (UDP still works).
    tcp: Option<TcpListener>,
    pub(crate) addr: SocketAddr,
}

/// Bind UDP on `addr` and TCP on the same port (when `addr` has port 0, the port UDP got).
pub(crate) async fn bind(addr: &str) -> std::io::Result<Sockets> {
    let mut last_err = None;
    for _ in 0..5 {
        let udp = UdpSocket::bind(addr).await?;
        let local = udp.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => {
                return Ok(Sockets {
                    udp,
                    tcp: Some(tcp),
                    addr: local,
                })
            }
            // The port UDP picked is taken for TCP: pick again.
            Err(e) if addr.ends_with(":0") => last_err = Some(e),
            Err(e) => {
                tracing::warn!(addr = %local, error = %e, "DNS over TCP unavailable; UDP only");
                return Ok(Sockets {
                    udp,
                    tcp: None,
                    addr: local,
                });
            }
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no port for DNS")))
}

/// Serve DNS on `sockets` until `stop` turns true.
pub(crate) fn spawn(
    node: Arc<RegistryNode>,
    sockets: Sockets,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let responder = Arc::new(Responder::new(StoreCatalog::new(node)));
    tracing::info!(addr = %sockets.addr, tcp = sockets.tcp.is_some(), "serving DNS for herd.");
    tokio::spawn(serve_udp(sockets.udp, responder.clone(), stop.clone()));
    if let Some(tcp) = sockets.tcp {
        tokio::spawn(serve_tcp(tcp, responder, stop));
    }
}

async fn serve_udp<C: Catalog + Send + Sync + 'static>(
    socket: UdpSocket,
    responder: Arc<Responder<C>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS udp receive");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(packet) = buf.get(..len) else {
            continue;
        };
        if let Some(reply) = responder.answer(packet, true) {
            if let Err(e) = socket.send_to(&reply, peer).await {
                tracing::debug!(%peer, error = %e, "DNS udp send");
            }
        }
    }
}

async fn serve_tcp<C: Catalog + Send + Sync + 'static>(
    listener: TcpListener,
    responder: Arc<Responder<C>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let responder = responder.clone();
                tokio::spawn(async move {
                    let _ = serve_tcp_conn(stream, &responder).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of descriptors and the like: do not spin.
                tracing::debug!(error = %e, "DNS tcp accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Length-prefixed messages (RFC 1035 §4.2.2), one answer per query, until the client
/// closes, sends garbage we cannot answer, or idles for [`TCP_IDLE`].
async fn serve_tcp_conn<C: Catalog>(
    mut stream: TcpStream,
    responder: &Responder<C>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        buf.resize(len, 0);
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(reply) = responder.answer(&buf, false) else {
            return Ok(());
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&reply_len.to_be_bytes());
        out.extend_from_slice(&reply);
        tokio::time::timeout(TCP_IDLE, stream.write_all(&out))
            .await
            .map_err(|_| std::io::Error::other("write timed out"))??;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    struct Fixed(Vec<Instance>);

    impl Catalog for Fixed {
        fn instances(&self, service: &str) -> Vec<Instance> {
            self.0
                .iter()
                .filter(|i| i.service.eq_ignore_ascii_case(service))
                .cloned()
                .collect()
        }
        fn revision(&self) -> u64 {
            42
        }
    }

    fn inst(service: &str, id: &str, address: &str, port: u16, weight: u32) -> Instance {
        Instance {
            service: service.into(),
            id: id.into(),
            address: address.into(),
            port,
            weight,
            zone: String::new(),
            version: String::new(),
            tags: Vec::new(),
            meta: Default::default(),
        }
    }

    fn responder() -> Responder<Fixed> {
        Responder::new(Fixed(vec![
            inst("web", "web-1", "10.0.0.1", 9001, 1),
            inst("web", "web-2", "10.0.0.2", 9002, 2),
            inst("web", "web-3", "10.0.0.3", 9003, 3),
            inst("api", "api-1", "::1", 8000, 1),
            inst("api", "api-2", "backend.example.com", 8001, 70000),
            inst("my.svc", "x.y", "10.1.1.1", 53, 1),
            inst("Mixed", "Id_1", "10.2.2.2", 80, 1),
        ]))
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        // Raw labels: the server must cope with bytes no zone file would hold.
        let labels = name.split('.').filter(|l| !l.is_empty()).map(str::as_bytes);
        m.add_query(Query::query(Name::from_labels(labels).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    fn ask(r: &Responder<Fixed>, name: &str, qtype: RecordType) -> Message {
        let bytes = r.answer(&query(name, qtype), true).expect("an answer");
        Message::from_vec(&bytes).expect("a valid message")
    }

    fn a_addrs(records: &[Record]) -> Vec<Ipv4Addr> {
        records
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some(ip),
                _ => None,
            })
            .collect()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn names_above_others_exist_and_the_apex_has_an_soa() {
        let r = responder();
        let m = ask(&r, "herd.", RecordType::SOA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].record_type(), RecordType::SOA);
        for name in [
            "herd.",
            "service.herd.",
            "instance.herd.",
            "web.instance.herd.",
            "SERVICE.herd.",
        ] {
            let m = ask(&r, name, RecordType::A);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(m.answers.is_empty(), "{name}");
            assert_eq!(
                m.authorities.len(),
                1,
                "{name}: the SOA for negative caching"
            );
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        }
        for name in [
            "nope.herd.",
            "x.service.herd.",
            "nope.instance.herd.",
            "a.b.herd.",
        ] {
            let m = ask(&r, name, RecordType::A);
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{name}");
        }
    }

    #[test]
    fn a_records_rotate_by_one_per_answer() {
        let r = responder();
        let m = ask(&r, "web.service.herd.", RecordType::A);
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries.len(), 1);
        assert!(m.answers.iter().all(|a| a.ttl == TTL_SECS));
        assert!(m
            .answers
            .iter()
            .all(|a| a.name == Name::from_ascii("web.service.herd.").unwrap()));
        assert_eq!(
            a_addrs(&m.answers),
            [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]
        );
        let m = ask(&r, "web.service.herd.", RecordType::A);
        assert_eq!(
            a_addrs(&m.answers),
            [ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.1")]
        );
        let m = ask(&r, "web.service.herd.", RecordType::A);
        assert_eq!(
            a_addrs(&m.answers),
            [ip("10.0.0.3"), ip("10.0.0.1"), ip("10.0.0.2")]
        );
        let m = ask(&r, "web.service.herd.", RecordType::A);
        assert_eq!(a_addrs(&m.answers)[0], ip("10.0.0.1"));
    }

    #[test]
    fn srv_has_weights_ports_targets_and_glue() {
        let r = responder();
        let m = ask(&r, "web.service.herd", RecordType::SRV);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let srvs: Vec<(u16, u16, u16, String)> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((
                    s.priority,
                    s.weight,
                    s.port,
                    s.target.to_ascii().to_string(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            srvs,
            [
                (1, 1, 9001, "web-1.web.instance.herd.".to_string()),
                (1, 2, 9002, "web-2.web.instance.herd.".to_string()),
                (1, 3, 9003, "web-3.web.instance.herd.".to_string()),
            ]
        );
        let glue: Vec<(String, Ipv4Addr)> = m
            .additionals
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some((r.name.to_ascii(), ip)),
                _ => None,
            })
            .collect();
        assert_eq!(
            glue,
            [
                ("web-1.web.instance.herd.".to_string(), ip("10.0.0.1")),
                ("web-2.web.instance.herd.".to_string(), ip("10.0.0.2")),
                ("web-3.web.instance.herd.".to_string(), ip("10.0.0.3")),
            ]
        );
        // The next SRV answer is rotated too.
        let m = ask(&r, "web.service.herd", RecordType::SRV);
        match &m.answers[0].data {
            RData::SRV(s) => assert_eq!(s.port, 9002),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn instance_names_resolve_and_case_is_ignored() {
        let r = responder();
        let m = ask(&r, "WEB-2.Web.Instance.HERD.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_addrs(&m.answers), [ip("10.0.0.2")]);
        let m = ask(&r, "WEB.SERVICE.HERD.", RecordType::A);
        assert_eq!(a_addrs(&m.answers).len(), 3);
        // Dots inside ids and service names, upper case and underscores in the catalog.
        let m = ask(&r, "x.y.my.svc.instance.herd.", RecordType::A);
        assert_eq!(a_addrs(&m.answers), [ip("10.1.1.1")]);
        let m = ask(&r, "my.svc.service.herd.", RecordType::A);
        assert_eq!(a_addrs(&m.answers), [ip("10.1.1.1")]);
        let m = ask(&r, "mixed.service.herd.", RecordType::SRV);
        match &m.answers[0].data {
            RData::SRV(s) => assert_eq!(s.target.to_ascii(), "Id_1.Mixed.instance.herd."),
            other => panic!("{other:?}"),
        }
        let m = ask(&r, "id_1.mixed.instance.herd.", RecordType::A);
        assert_eq!(a_addrs(&m.answers), [ip("10.2.2.2")]);
        assert_eq!(
            ask(&r, "web-9.web.instance.herd.", RecordType::A)
                .metadata
                .response_code,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn ipv6_and_host_names() {
        let r = responder();
        let m = ask(&r, "api.service.herd.", RecordType::AAAA);
        let v6: Vec<Ipv6Addr> = m
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::AAAA(AAAA(ip)) => Some(ip),
                _ => None,
            })
            .collect();
        assert_eq!(v6, [Ipv6Addr::LOCALHOST]);
        // No IPv4 instance: NODATA (NOERROR, no answer, SOA in authority).
        let m = ask(&r, "api.service.herd.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        // SRV: a host name is the target itself; weight saturates at 65535.
        let m = ask(&r, "api.service.herd.", RecordType::SRV);
        let mut targets: Vec<(String, u16)> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.target.to_ascii(), s.weight)),
                _ => None,
            })
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            [
                ("api-1.api.instance.herd.".to_string(), 1),
                ("backend.example.com.".to_string(), u16::MAX)
            ]
        );
        assert_eq!(m.additionals.len(), 1); // the AAAA of api-1 only
    }

    #[test]
    fn unknown_names_and_other_zones() {
        let r = responder();
        for name in [
            "nope.service.herd.",
            "web.herd.",
            "a.web.other.herd.",
            "bad!name.service.herd.",
        ] {
            let m = ask(&r, name, RecordType::A);
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(m.answers.is_empty());
            match &m.authorities[..] {
                [soa] => match &soa.data {
                    RData::SOA(s) => assert_eq!(s.serial, 42),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
        for name in ["example.com.", "web.service.consul.", "herd.example.", "."] {
            let m = ask(&r, name, RecordType::A);
            assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
            assert!(!m.metadata.authoritative);
        }
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        let r = responder();
        // A header that says one question, then garbage.
        let garbage = [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        let reply = Message::from_vec(&r.answer(&garbage, true).expect("FORMERR")).unwrap();
        assert_eq!(reply.metadata.id, 0xABCD);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        // Too short to carry a header: dropped. So are answers (QR set).
        assert!(r.answer(&[1, 2, 3], true).is_none());
        assert!(r.answer(&[], false).is_none());
        let mut answer = garbage;
        answer[2] |= 0x80;
        assert!(r.answer(&answer, true).is_none());
        // Two questions: FORMERR.
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("web.service.herd.").unwrap(),
            RecordType::A,
        ));
        m.add_query(Query::query(
            Name::from_ascii("web.service.herd.").unwrap(),
            RecordType::A,
        ));
        let reply = Message::from_vec(&r.answer(&m.to_vec().unwrap(), true).unwrap()).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        // No question: FORMERR. Another opcode: NOTIMP.
        let m = Message::new(8, MessageType::Query, OpCode::Query);
        let reply = Message::from_vec(&r.answer(&m.to_vec().unwrap(), true).unwrap()).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        let mut m = Message::new(9, MessageType::Query, OpCode::Update);
        m.add_query(Query::query(
            Name::from_ascii("web.service.herd.").unwrap(),
            RecordType::A,
        ));
        let reply = Message::from_vec(&r.answer(&m.to_vec().unwrap(), true).unwrap()).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn never_panics_on_mutated_or_truncated_packets() {
        let r = responder();
        let base = query("web.service.herd.", RecordType::SRV);
        // Every truncation, and every single-byte corruption with a few values.
        for len in 0..base.len() {
            let _ = r.answer(&base[..len], true);
        }
        let mut seed: u32 = 0x9E37_79B9;
        for pos in 0..base.len() {
            for v in [0x00, 0x01, 0x3F, 0x40, 0x7F, 0xC0, 0xFF] {
                let mut p = base.clone();
                p[pos] = v;
                let _ = r.answer(&p, true);
                let _ = r.answer(&p, false);
            }
        }
        for _ in 0..2000 {
            let mut p = base.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let i = seed as usize % p.len();
                p[i] = (seed >> 8) as u8;
            }
            let _ = r.answer(&p, true);
        }
    }

    #[test]
    fn big_answers_are_truncated_for_udp_and_whole_over_tcp() {
        let many: Vec<Instance> = (0..200)
            .map(|i| {
                inst(
                    "big",
                    &format!("i{i}"),
                    &format!("10.9.{}.{}", i / 250, i % 250),
                    80,
                    1,
                )
            })
            .collect();
        let r = Responder::new(Fixed(many));
        let udp = r
            .answer(&query("big.service.herd.", RecordType::SRV), true)
            .unwrap();
        assert!(udp.len() <= 512);
        let m = Message::from_vec(&udp).unwrap();
        assert!(m.metadata.truncation);
        assert!(m.additionals.is_empty());
        let tcp = r
            .answer(&query("big.service.herd.", RecordType::SRV), false)
            .unwrap();
        let m = Message::from_vec(&tcp).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 200);
        assert_eq!(m.additionals.len(), 200);
        // With EDNS the client may take up to 1232 bytes; the answer carries an OPT.
        let mut q = Message::new(1, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_ascii("big.service.herd.").unwrap(),
            RecordType::A,
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        q.set_edns(edns);
        let bytes = r.answer(&q.to_vec().unwrap(), true).unwrap();
        assert!(bytes.len() > 512 && bytes.len() <= 1232, "{}", bytes.len());
        let m = Message::from_vec(&bytes).unwrap();
        assert!(m.edns.is_some());
        assert!(m.metadata.truncation);
    }

    #[test]
    fn edns_version_other_than_zero_is_badvers() {
        let r = responder();
        let mut q = Message::new(1, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_ascii("web.service.herd.").unwrap(),
            RecordType::A,
        ));
        let mut edns = Edns::new();
        edns.set_version(1);
        q.set_edns(edns);
        let m = Message::from_vec(&r.answer(&q.to_vec().unwrap(), true).unwrap()).unwrap();
        // BADVERS shares code 16 with BADSIG (RFC 6891 §9); hickory decodes it as the latter.
        assert_eq!(u16::from(m.metadata.response_code), 16);
    }
}

//! Questions to answers: a query about `herd.` names turned into records from a
//! [`Catalog`], with the limits of the transport it came by. No sockets here.

use herd_registry_core::catalog::{self, Instance};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// TTL of every record: short, so that a deregistered instance leaves caches within
/// seconds, yet long enough that a burst of lookups from one host is not a burst here.
pub const TTL_SECS: u32 = 5;
/// The largest UDP answer we send (the EDNS payload size recommended since DNS flag day
/// 2020); a client that offers less gets at most what it offers, and never less than 512.
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;
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

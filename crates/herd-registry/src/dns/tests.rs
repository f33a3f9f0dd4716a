use super::answer::*;
use herd_registry_core::catalog::Instance;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
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

//! The registry's DNS interface through the real binary: `herd server --dns`, instances
//! registered over HTTP, real DNS queries over UDP and TCP.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, RecordType};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Kills the server however the test ends.
struct Server {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start `herd server` with DNS on an ephemeral port; returns (server, api, dns).
fn start() -> (Server, SocketAddr, SocketAddr) {
    let dir = std::env::temp_dir().join(format!(
        "herd-dns-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["server", "--data-dir"])
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0", "--dns", "127.0.0.1:0"])
        .env("HERD_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn herd");
    let mut server = Server { child, dir };
    let stdout = server.child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
    assert_eq!(ready["event"], "ready", "{line}");
    let api: SocketAddr = ready["addr"].as_str().expect("addr").parse().unwrap();
    let dns: SocketAddr = ready["dns"].as_str().expect("dns").parse().unwrap();
    (server, api, dns)
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
fn http(api: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(api)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Retry while the node elects itself (writes fail until it has a leader).
fn http_ok(api: SocketAddr, method: &str, path: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http(api, method, path, body) {
            Ok((200, _)) => return,
            other if Instant::now() > deadline => panic!("{method} {path}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn udp_query(dns: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    static NEXT_ID: AtomicU16 = AtomicU16::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let q = query_bytes(id, name, qtype);
    let mut buf = [0u8; 4096];
    for _ in 0..5 {
        sock.send_to(&q, dns).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let m = Message::from_vec(&buf[..n]).expect("a DNS message");
            assert_eq!(m.metadata.id, id);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            return m;
        }
    }
    panic!("no DNS answer from {dns} for {name}");
}

fn tcp_query(dns: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut s = TcpStream::connect(dns).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = query_bytes(77, name, qtype);
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    s.write_all(&out).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(ip)) => Some(ip),
            _ => None,
        })
        .collect()
}

#[test]
fn catalog_over_dns() {
    let (_server, api, dns) = start();
    let instances = [
        ("web-1", "127.0.0.11", 9001, 1),
        ("web-2", "127.0.0.12", 9002, 2),
        ("web-3", "127.0.0.13", 9003, 5),
    ];
    for (id, address, port, weight) in instances {
        let body = serde_json::json!({
            "address": address, "port": port, "weight": weight, "ttl_s": 60,
        })
        .to_string();
        http_ok(
            api,
            "PUT",
            &format!("/v1/services/web/instances/{id}"),
            &body,
        );
    }

    // A: three records; the first rotates across three consecutive queries.
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let m = udp_query(dns, "web.service.herd.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        let mut ips = a_records(&m);
        firsts.push(ips[0]);
        ips.sort();
        assert_eq!(
            ips,
            ["127.0.0.11", "127.0.0.12", "127.0.0.13"].map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
    }
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 3, "the first record must rotate: {firsts:?}");

    // Names are case-insensitive.
    let m = udp_query(dns, "WEB.Service.HERD.", RecordType::A);
    assert_eq!(a_records(&m).len(), 3);

    // SRV: weights and ports match, targets resolve via the additional section.
    let m = udp_query(dns, "web.service.herd.", RecordType::SRV);
    let mut srvs: Vec<(String, u16, u16, u16)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.target.to_ascii(), s.priority, s.weight, s.port)),
            _ => None,
        })
        .collect();
    srvs.sort();
    assert_eq!(
        srvs,
        [
            ("web-1.web.instance.herd.".to_string(), 1, 1, 9001),
            ("web-2.web.instance.herd.".to_string(), 1, 2, 9002),
            ("web-3.web.instance.herd.".to_string(), 1, 5, 9003),
        ]
    );
    let mut glue: Vec<(String, Ipv4Addr)> = m
        .additionals
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(ip)) => Some((r.name.to_ascii(), ip)),
            _ => None,
        })
        .collect();
    glue.sort();
    assert_eq!(glue.len(), 3);
    assert_eq!(
        glue[1],
        (
            "web-2.web.instance.herd.".to_string(),
            Ipv4Addr::new(127, 0, 0, 12)
        )
    );
    let m = udp_query(dns, "web-3.web.instance.herd.", RecordType::A);
    assert_eq!(a_records(&m), [Ipv4Addr::new(127, 0, 0, 13)]);

    // The same over TCP.
    let m = tcp_query(dns, "web.service.herd.", RecordType::SRV);
    assert_eq!(m.metadata.id, 77);
    assert_eq!(m.answers.len(), 3);

    // Deregistering drops the instance from the next answer.
    http_ok(api, "DELETE", "/v1/services/web/instances/web-2", "");
    let m = udp_query(dns, "web.service.herd.", RecordType::A);
    let mut ips = a_records(&m);
    ips.sort();
    assert_eq!(
        ips,
        [Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 13)]
    );

    // Unknown service: NXDOMAIN; outside herd.: REFUSED.
    let m = udp_query(dns, "nope.service.herd.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    let m = udp_query(dns, "example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // Garbage gets FORMERR (or nothing) and the server keeps answering.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&[0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff], dns)
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).expect("FORMERR");
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    sock.send_to(&[1, 2, 3], dns).unwrap();
    let m = udp_query(dns, "web.service.herd.", RecordType::A);
    assert_eq!(a_records(&m).len(), 2);
}

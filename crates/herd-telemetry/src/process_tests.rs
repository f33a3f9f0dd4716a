use crate::ProcessId;

#[test]
fn display_has_four_parts_with_our_pid() {
    let id = ProcessId::new(8080);
    let s = id.to_string();
    let parts: Vec<&str> = s.split(':').collect();
    assert_eq!(parts.len(), 4, "{s}");
    assert!(!parts[0].is_empty());
    assert_eq!(parts[1], "8080");
    assert!(parts[2].parse::<u64>().unwrap() > 1_600_000_000_000);
    assert_eq!(parts[3], std::process::id().to_string());
}

#[test]
fn round_trips_through_from_str() {
    let id = ProcessId {
        host: "lb-1".to_string(),
        port: 443,
        start_unix_ms: 1_700_000_000_123,
        pid: 4242,
    };
    assert_eq!(id.to_string(), "lb-1:443:1700000000123:4242");
    assert_eq!("lb-1:443:1700000000123:4242".parse(), Ok(id.clone()));
    assert!("lb-1:443:1700000000123".parse::<ProcessId>().is_err());
    assert!("a:b:c:d:e".parse::<ProcessId>().is_err());
    assert!(":1:2:3".parse::<ProcessId>().is_err());
    assert_ne!(
        id.seed(),
        ProcessId {
            pid: 4243,
            ..id.clone()
        }
        .seed()
    );
}

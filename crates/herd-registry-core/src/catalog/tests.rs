use super::*;

fn kv(key: &str, value: &[u8]) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision: 1,
        mod_revision: 1,
        version: 1,
        lease: Some(7),
    }
}

fn inst(service: &str, id: &str) -> Instance {
    Instance {
        service: service.to_owned(),
        id: id.to_owned(),
        address: "10.0.0.1".to_owned(),
        port: 8080,
        weight: 1,
        zone: String::new(),
        version: String::new(),
        tags: Vec::new(),
        meta: BTreeMap::new(),
    }
}

#[test]
fn names() {
    assert_eq!(validate_name("api-v2_1.blue"), Ok(()));
    assert_eq!(validate_name(&"a".repeat(128)), Ok(()));
    assert_eq!(
        validate_name(&"a".repeat(129)),
        Err(NameError::TooLong { len: 129 })
    );
    assert_eq!(validate_name(""), Err(NameError::Empty));
    assert_eq!(
        validate_name("a/b"),
        Err(NameError::InvalidChar { ch: '/' })
    );
    assert_eq!(validate_name("é"), Err(NameError::InvalidChar { ch: 'é' }));
    assert_eq!(validate_name(".."), Err(NameError::Reserved("..".into())));
}

#[test]
fn key_layout() {
    assert_eq!(instance_key("api", "i-1").unwrap(), "services/api/i-1");
    assert_eq!(service_prefix("api").unwrap(), "services/api/");
    assert_eq!(parse_instance_key("services/api/i-1"), Some(("api", "i-1")));
    assert_eq!(parse_instance_key("services/api/i-1/x"), None);
    assert_eq!(parse_instance_key("locks/api/i-1"), None);
    assert_eq!(parse_instance_key("services/api"), None);
    assert!(instance_key("api", "a b").is_err());
    assert_eq!(inst("web", "w1").key().unwrap(), "services/web/w1");
}

#[test]
fn json_defaults_and_exact_bytes() {
    let minimal = br#"{"service":"api","id":"i-1","address":"10.0.0.1","port":8080}"#;
    let parsed: Instance = serde_json::from_slice(minimal).unwrap();
    assert_eq!(parsed, inst("api", "i-1"));
    let mut full = inst("api", "i-1");
    full.meta.insert("z".into(), "1".into());
    full.meta.insert("a".into(), "2".into());
    full.tags = vec!["canary".into()];
    assert_eq!(
        String::from_utf8(full.to_value()).unwrap(),
        r#"{"service":"api","id":"i-1","address":"10.0.0.1","port":8080,"weight":1,"zone":"","version":"","tags":["canary"],"meta":{"a":"2","z":"1"}}"#
    );
}

#[test]
fn parse_skips_what_does_not_belong() {
    let a = inst("api", "a");
    let b = inst("api", "b");
    let mut zero_port = inst("api", "c");
    zero_port.port = 0;
    let kvs = vec![
        kv("services/api/a", &a.to_value()),
        kv("services/api/b", &b.to_value()),
        kv("services/api/c", &zero_port.to_value()),
        // Value names another id than its key.
        kv("services/api/d", &a.to_value()),
        kv("services/api/e", b"not json"),
        kv("config/x", &a.to_value()),
    ];
    assert_eq!(parse_instances(&kvs), vec![a.clone(), b]);
    let more = vec![
        kv("services/web/w", &inst("web", "w").to_value()),
        kv("services/api/a", &a.to_value()),
        kv("services/api/z", &inst("api", "z").to_value()),
    ];
    assert_eq!(
        service_names(&more),
        vec!["api".to_owned(), "web".to_owned()]
    );
}

#[test]
fn instance_validation() {
    assert_eq!(inst("api", "a").validate(), Ok(()));
    let mut i = inst("api", "a");
    i.address.clear();
    assert_eq!(i.validate(), Err(InstanceError::EmptyAddress));
    let i = inst("api/x", "a");
    assert_eq!(
        i.validate(),
        Err(InstanceError::Service(NameError::InvalidChar { ch: '/' }))
    );
}

#[test]
fn instance_addresses_are_ip_addresses_or_dns_names() {
    for ok in [
        "10.0.0.7",
        "0.0.0.0",
        "255.255.255.255",
        "2001:db8::7",
        "::1",
        "web-1.internal",
        "web-1.internal.",
        "localhost",
        "123abc",
    ] {
        assert_eq!(check_address(ok), Ok(()), "{ok}");
    }
    let cases = [
        ("999.1.1.1", AddressError::Ipv4("999.1.1.1".into())),
        ("1.2.3", AddressError::Ipv4("1.2.3".into())),
        ("1.2.3.4.", AddressError::Ipv4("1.2.3.4.".into())),
        ("[2001:db8::7]", AddressError::Ipv6("[2001:db8::7]".into())),
        (
            "2001:db8::7:9000:1:2:3:4",
            AddressError::Ipv6("2001:db8::7:9000:1:2:3:4".into()),
        ),
        ("-web", AddressError::Name("-web".into())),
        ("we b", AddressError::Name("we b".into())),
        ("a..b", AddressError::Name("a..b".into())),
        (".", AddressError::Name(".".into())),
    ];
    for (bad, want) in cases {
        assert_eq!(check_address(bad), Err(want), "{bad}");
    }
    assert_eq!(
        check_address(&"a".repeat(64)),
        Err(AddressError::Name("a".repeat(64)))
    );
}

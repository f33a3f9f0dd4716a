use super::*;

#[test]
fn rfc4648_vectors() {
    let cases: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, coded) in cases {
        assert_eq!(encode(plain.as_bytes()), coded);
        assert_eq!(decode(coded).unwrap(), plain.as_bytes());
    }
}

#[test]
fn unpadded_and_binary() {
    assert_eq!(decode("Zg").unwrap(), b"f");
    assert_eq!(decode("Zm8").unwrap(), b"fo");
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(decode(&encode(&all)).unwrap(), all);
    assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
}

#[test]
fn rejects_garbage() {
    assert_eq!(decode("Z"), Err(DecodeError::InvalidLength(1)));
    assert_eq!(decode("Zg="), Err(DecodeError::InvalidLength(3)));
    assert_eq!(decode("Zm9v!A=="), Err(DecodeError::InvalidChar('!', 4)));
}

#[test]
fn every_length_and_byte_round_trips() {
    let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    for len in 0..70 {
        let plain = &all[len * 3..len * 3 + len];
        let coded = encode(plain);
        assert_eq!(coded.len(), len.div_ceil(3) * 4);
        assert_eq!(decode(&coded).unwrap(), plain, "length {len}");
        assert_eq!(decode(coded.trim_end_matches('=')).unwrap(), plain);
    }
}

#[test]
fn invalid_characters_are_named_with_their_offset() {
    assert_eq!(decode("Zm9vYmFy*"), Err(DecodeError::InvalidLength(9)));
    assert_eq!(decode("Zm9vYm-y"), Err(DecodeError::InvalidChar('-', 6)));
    assert_eq!(decode("Zm9vYm="), Err(DecodeError::InvalidLength(7)));
    assert_eq!(decode("Zm=v"), Err(DecodeError::InvalidChar('=', 2)));
    assert_eq!(
        decode("Zm9vY\u{e9}"),
        Err(DecodeError::InvalidChar('\u{c3}', 5))
    );
}

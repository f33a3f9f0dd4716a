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

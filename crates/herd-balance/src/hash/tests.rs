use super::*;

#[test]
fn fnv1a64_matches_reference_vectors() {
    // From the FNV reference test suite.
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn fmix64_fixes_zero_and_mixes() {
    assert_eq!(fmix64(0), 0);
    assert_ne!(fmix64(1), 1);
}

#[test]
fn hash64_is_pinned() {
    // These values are a compatibility contract (ring positions, cookie ids): never update them.
    assert_eq!(hash64(b""), 0xefd0_1f60_ba99_2926);
    assert_eq!(hash64(b"a"), 0x82a2_a958_a9be_ce5b);
    assert_eq!(hash64(b"foobar"), 0x2c22_1949_22d1_672b);
    assert_eq!(hash64(b"key-0"), 0x1813_7ad0_31db_6589);
    assert_eq!(hash64(b"key-1"), 0xa002_e14b_20bb_64ec);
    assert_eq!(hash64(b"10.0.0.1:8080"), 0xe8c7_2115_6ed5_2b14);
}

#[test]
fn similar_keys_differ_in_the_high_bits() {
    // FNV alone gives 0x71135b.. / 0x71135a.. for these; the finalizer must separate them.
    let a = hash64(b"key-0");
    let b = hash64(b"key-1");
    assert_eq!(fnv1a64(b"key-0") >> 48, fnv1a64(b"key-1") >> 48);
    assert!((a ^ b).count_ones() >= 20, "{a:x} vs {b:x}");
    assert_ne!(a >> 56, b >> 56);
}

#[test]
fn top_byte_is_roughly_uniform_over_sequential_keys() {
    let mut buckets = [0u32; 16];
    for i in 0..16_000 {
        buckets[(hash64(format!("key-{i}").as_bytes()) >> 60) as usize] += 1;
    }
    for (b, &c) in buckets.iter().enumerate() {
        assert!((850..=1150).contains(&c), "bucket {b}: {c}");
    }
}

use super::*;

const EPOCH: u64 = 1_700_000_000_000;

#[test]
fn bit_layout_is_exact() {
    let mut g = Snowflake::new(5, EPOCH).unwrap();
    let id = g.next(EPOCH + 1234).unwrap();
    assert_eq!(id, (1234 << 22) | (5 << 12));
    assert_eq!(id, 5_175_791_616);
    assert_eq!(decode_id(id), (1234, 5, 0));
    let id2 = g.next(EPOCH + 1234).unwrap();
    assert_eq!(id2, id + 1);
    assert_eq!(decode_id(id2), (1234, 5, 1));

    // All fields at their maximum: the top bit stays 0, so IDs are positive as i64.
    let mut g = Snowflake::new(MAX_NODE, EPOCH).unwrap();
    let id = g.next(EPOCH + ((1 << 41) - 1)).unwrap();
    assert_eq!(id, 0x7fff_ffff_ffff_f000);
    assert_eq!(decode_id(id), ((1 << 41) - 1, 1023, 0));
    assert_eq!(TIMESTAMP_BITS + NODE_BITS + SEQUENCE_BITS, 63);
}

#[test]
fn rejects_bad_node_epoch_and_overflow() {
    assert_eq!(
        Snowflake::new(1024, EPOCH),
        Err(SnowflakeError::NodeOutOfRange(1024))
    );
    let mut g = Snowflake::new(0, EPOCH).unwrap();
    assert_eq!(
        g.next(EPOCH - 1),
        Err(SnowflakeError::BeforeEpoch {
            now_ms: EPOCH - 1,
            epoch_ms: EPOCH
        })
    );
    assert_eq!(g.next(EPOCH + (1 << 41)), Err(SnowflakeError::Exhausted));
}

#[test]
fn frozen_clock_borrows_next_millisecond() {
    let mut g = Snowflake::new(1, EPOCH).unwrap();
    let mut prev = None;
    let mut ids = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let id = g.next(EPOCH + 10).unwrap();
        if let Some(p) = prev {
            assert!(id > p, "{id} after {p}");
        }
        prev = Some(id);
        ids.push(id);
    }
    // 4096 per ms: ID 4096 is the first of ms 11, and the last is 24 ms ahead of the clock.
    assert_eq!(decode_id(ids[4095]), (10, 1, 4095));
    assert_eq!(decode_id(ids[4096]), (11, 1, 0));
    assert_eq!(
        decode_id(ids[99_999]),
        (10 + 99_999 / 4096, 1, (99_999 % 4096) as u16)
    );
    assert_eq!(decode_id(ids[99_999]), (34, 1, 1695));
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 100_000);
    // The wall clock catching up past the borrowed time resumes real time with sequence 0.
    assert_eq!(decode_id(g.next(EPOCH + 35).unwrap()), (35, 1, 0));
}

#[test]
fn regressing_clock_stays_monotonic() {
    let mut g = Snowflake::new(9, EPOCH).unwrap();
    let mut prev = 0u64;
    let mut ids = Vec::with_capacity(100_000);
    // The clock advances 1 ms per 1000 IDs, but every other 250 IDs reads 3 ms behind, and
    // for 100 IDs it steps back 4 s (within the tolerance).
    for i in 0..100_000u64 {
        let mut now = EPOCH + 10_000 + i / 1000;
        if (i / 250) % 2 == 1 {
            now -= 3;
        }
        if (50_000..50_100).contains(&i) {
            now -= 4_000;
        }
        let id = g.next(now).unwrap();
        assert!(id > prev, "id {i} not increasing");
        prev = id;
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 100_000);
    // IDs 99,000..=99,999 all carry ms 10,099: the last 750 while the clock read 10,096.
    assert_eq!(decode_id(prev), (10_099, 9, 999));
    // A jump back within the tolerance keeps the logical time.
    let (ms, _, _) = decode_id(prev);
    let id = g.next(EPOCH + ms - MAX_CLOCK_REGRESSION_MS).unwrap();
    assert_eq!(decode_id(id).0, ms);
    // Beyond it: refused, and nothing is consumed.
    assert_eq!(
        g.next(EPOCH + ms - MAX_CLOCK_REGRESSION_MS - 1),
        Err(SnowflakeError::ClockWentBack {
            behind_ms: MAX_CLOCK_REGRESSION_MS + 1
        })
    );
    assert_eq!(g.next(EPOCH + ms).unwrap(), id + 1);
}

#[test]
fn nodes_never_collide() {
    let mut a = Snowflake::new(1, EPOCH).unwrap();
    let mut b = Snowflake::new(2, EPOCH).unwrap();
    let ia = a.next(EPOCH + 5).unwrap();
    let ib = b.next(EPOCH + 5).unwrap();
    assert_ne!(ia, ib);
    assert_eq!(ib - ia, 1 << 12);
}

use super::*;
use openraft::{CommittedLeaderId, LogId, StoredMembership};

fn chunk(data: Vec<u8>, done: bool) -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: Vote::new_committed(3, 1),
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 5_000)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-5000-4990".into(),
        },
        offset: 4 << 20,
        data,
        done,
    }
}

#[test]
fn snapshot_chunk_round_trips_with_raw_bytes() {
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let body = encode_snapshot_chunk(chunk(data.clone(), true)).unwrap();
    // Raw: the body is the data plus a small header, not a JSON array of numbers.
    assert!(body.len() < data.len() + 1_000, "{} bytes", body.len());
    let back = decode_snapshot_chunk(&body).unwrap();
    assert_eq!(back, chunk(data, true));
}

#[test]
fn empty_last_chunk_round_trips() {
    let body = encode_snapshot_chunk(chunk(Vec::new(), true)).unwrap();
    assert_eq!(
        decode_snapshot_chunk(&body).unwrap(),
        chunk(Vec::new(), true)
    );
}

#[test]
fn truncated_or_garbled_chunks_are_errors() {
    let body = encode_snapshot_chunk(chunk(b"abc".to_vec(), false)).unwrap();
    assert!(matches!(
        decode_snapshot_chunk(&body[..2]),
        Err(SnapshotChunkError::Truncated { len: 2, need: 4 })
    ));
    assert!(matches!(
        decode_snapshot_chunk(&body[..20]),
        Err(SnapshotChunkError::Truncated { len: 20, .. })
    ));
    let mut garbled = body.clone();
    garbled[4] = b'!';
    assert!(matches!(
        decode_snapshot_chunk(&garbled),
        Err(SnapshotChunkError::Header(_))
    ));
}

use super::*;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herd-wal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn payload(i: u64) -> Vec<u8> {
    format!("entry {i} {}", "x".repeat((i % 7) as usize)).into_bytes()
}

fn append_range(wal: &mut Wal, range: std::ops::Range<u64>) {
    let data: Vec<(u64, Vec<u8>)> = range.map(|i| (i, payload(i))).collect();
    wal.append(data.iter().map(|(i, p)| (*i, p.as_slice())), None)
        .expect("append");
}

fn read_all(wal: &Wal, start: u64, end: u64) -> Vec<Vec<u8>> {
    read_pieces(&wal.plan_read(start, end, usize::MAX)).expect("read")
}

/// Entries 1..=15 in tiny segments named 1, 6 and 11, five entries each.
fn three_segments(name: &str) -> (PathBuf, Wal) {
    let dir = tmp(name);
    let (mut wal, _) = Wal::open(&dir, None, 64).expect("open");
    for start in [1, 6, 11] {
        append_range(&mut wal, start..start + 5);
    }
    assert_eq!(segment_files(&dir), vec![1, 6, 11]);
    (dir, wal)
}

fn segment_files(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| segment_name(&e.expect("entry").path()))
        .collect();
    v.sort();
    v
}

#[test]
fn appends_read_back_and_survive_reopen() {
    let dir = tmp("reopen");
    let (mut wal, rec) = Wal::open(&dir, None, 1 << 20).expect("open");
    assert_eq!(rec.dropped_bytes, 0);
    assert_eq!(wal.last_index(), None);
    append_range(&mut wal, 1..11);
    wal.append(std::iter::empty(), Some(b"committed 7"))
        .expect("marker");
    append_range(&mut wal, 11..21);
    assert_eq!(wal.first_index(), Some(1));
    assert_eq!(wal.last_index(), Some(20));
    let got = read_all(&wal, 5, 8);
    assert_eq!(got, vec![payload(5), payload(6), payload(7)]);
    assert!(!wal.take_unsynced().is_empty());
    assert!(wal.take_unsynced().is_empty());
    drop(wal);

    let (wal, rec) = Wal::open(&dir, None, 1 << 20).expect("reopen");
    assert_eq!(rec.marker.as_deref(), Some(&b"committed 7"[..]));
    assert_eq!(rec.dropped_bytes, 0);
    assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(20)));
    assert_eq!(
        read_all(&wal, 0, 100),
        (1..21).map(payload).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn read_stops_at_the_byte_limit_but_returns_at_least_one() {
    let dir = tmp("limit");
    let (mut wal, _) = Wal::open(&dir, None, 1 << 20).expect("open");
    let big = vec![7u8; 1000];
    let data: Vec<(u64, &[u8])> = (0..5).map(|i| (i, big.as_slice())).collect();
    wal.append(data, None).expect("append");
    assert_eq!(
        read_pieces(&wal.plan_read(0, 5, 2500)).expect("read").len(),
        2
    );
    assert_eq!(
        read_pieces(&wal.plan_read(0, 5, 10)).expect("read").len(),
        1
    );
    assert_eq!(
        read_pieces(&wal.plan_read(3, 3, 10)).expect("read").len(),
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn out_of_order_append_is_refused() {
    let dir = tmp("order");
    let (mut wal, _) = Wal::open(&dir, None, 1 << 20).expect("open");
    append_range(&mut wal, 1..4);
    let p = payload(9);
    let err = wal.append([(9, p.as_slice())], None).expect_err("gap");
    assert!(err.to_string().contains("entry 9"), "{err}");
    assert_eq!(wal.last_index(), Some(3));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segments_rotate_and_purge_unlinks_whole_ones() {
    let dir = tmp("purge");
    // Tiny segments: each append of 5 entries lands in a new one.
    let (mut wal, _) = Wal::open(&dir, None, 64).expect("open");
    for start in [1, 6, 11, 16] {
        append_range(&mut wal, start..start + 5);
    }
    assert_eq!(segment_files(&dir), vec![1, 6, 11, 16]);
    reads_across_segments(&wal);

    wal.purge(8).expect("purge");
    // Segment 6 still holds 9 and 10.
    assert_eq!(segment_files(&dir), vec![6, 11, 16]);
    assert_eq!(wal.first_index(), Some(9));
    assert_eq!(
        read_all(&wal, 0, 12),
        (9..12).map(payload).collect::<Vec<_>>()
    );
    drop(wal);

    // Entries at or below the recorded purge point are skipped on open.
    let (wal, _) = Wal::open(&dir, Some(8), 64).expect("reopen");
    assert_eq!((wal.first_index(), wal.last_index()), (Some(9), Some(20)));
    let _ = std::fs::remove_dir_all(&dir);
}

fn reads_across_segments(wal: &Wal) {
    let pieces = wal.plan_read(4, 13, usize::MAX);
    assert_eq!(pieces.len(), 3, "one read per segment");
    let got = read_pieces(&pieces).expect("read");
    assert_eq!(got, (4..13).map(payload).collect::<Vec<_>>());
}

#[test]
fn purge_past_the_end_starts_over_at_the_next_index() {
    let dir = tmp("purge-all");
    let (mut wal, _) = Wal::open(&dir, None, 1 << 20).expect("open");
    append_range(&mut wal, 1..6);
    // A snapshot installed from the leader covers more than this log holds.
    wal.purge(100).expect("purge");
    assert_eq!(wal.last_index(), None);
    assert!(segment_files(&dir).is_empty());
    append_range(&mut wal, 101..104);
    assert_eq!(segment_files(&dir), vec![101]);
    drop(wal);
    let (wal, _) = Wal::open(&dir, Some(100), 1 << 20).expect("reopen");
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Some(101), Some(103))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncate_removes_the_suffix_durably_across_segments() {
    let (dir, mut wal) = three_segments("truncate");
    wal.truncate(8).expect("truncate");
    assert_eq!(wal.last_index(), Some(7));
    assert_eq!(segment_files(&dir), vec![1, 6]);
    // The log continues from the cut, with different contents.
    let p = b"new 8".to_vec();
    wal.append([(8, p.as_slice())], None).expect("append");
    drop(wal);
    let (wal, rec) = Wal::open(&dir, None, 64).expect("reopen");
    assert_eq!(rec.dropped_bytes, 0);
    assert_eq!(wal.last_index(), Some(8));
    assert_eq!(read_all(&wal, 7, 9), vec![payload(7), p]);

    // Truncating at a segment's first entry empties that segment.
    let (mut wal, _) = Wal::open(&dir, None, 64).expect("reopen");
    wal.truncate(6).expect("truncate");
    assert_eq!(wal.last_index(), Some(5));
    append_range(&mut wal, 6..8);
    assert_eq!(
        read_all(&wal, 5, 8),
        (5..8).map(payload).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_tail_is_cut_and_later_segments_dropped() {
    let (dir, wal) = three_segments("torn");
    drop(wal);
    // A crash mid-write: segment 6 loses the last bytes of its last record.
    let seg6 = dir.join(format!("{:020}.wal", 6));
    let len = std::fs::metadata(&seg6).expect("meta").len();
    let f = OpenOptions::new()
        .write(true)
        .open(&seg6)
        .expect("open seg");
    f.set_len(len - 3).expect("cut");
    drop(f);
    let seg11_len = std::fs::metadata(dir.join(format!("{:020}.wal", 11)))
        .expect("meta")
        .len();

    let (wal, rec) = Wal::open(&dir, None, 64).expect("reopen");
    assert_eq!(wal.last_index(), Some(9));
    assert_eq!(segment_files(&dir), vec![1, 6]);
    let record10 = (HEADER + payload(10).len()) as u64;
    assert_eq!(rec.dropped_bytes, record10 - 3 + seg11_len);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_flipped_bit_ends_the_log_at_that_record() {
    let dir = tmp("bitflip");
    let (mut wal, _) = Wal::open(&dir, None, 1 << 20).expect("open");
    append_range(&mut wal, 1..6);
    drop(wal);
    let seg = dir.join(format!("{:020}.wal", 1));
    let mut bytes = std::fs::read(&seg).expect("read");
    let record = HEADER + payload(1).len() + HEADER + payload(2).len();
    // The last payload byte of entry 3.
    let at = record + HEADER + payload(3).len() - 1;
    bytes[at] ^= 0x40;
    std::fs::write(&seg, &bytes).expect("write");
    let (wal, rec) = Wal::open(&dir, None, 1 << 20).expect("reopen");
    assert_eq!(wal.last_index(), Some(2));
    assert!(rec.dropped_bytes > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hole_after_the_purge_point_is_an_error_naming_the_file() {
    let (dir, wal) = three_segments("gap");
    drop(wal);
    std::fs::remove_file(dir.join(format!("{:020}.wal", 6))).expect("rm");
    let err = Wal::open(&dir, None, 64).err().expect("gap");
    let msg = err.to_string();
    assert!(msg.contains("entries end at 5 and resume at 11"), "{msg}");
    assert!(msg.contains("00000000000000000011.wal"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn record_codec_round_trips_and_rejects_damage() {
    let mut buf = Vec::new();
    encode(&mut buf, KIND_ENTRY, 42, b"hello");
    assert_eq!(buf.len(), HEADER + 5);
    assert_eq!(decode(&buf), Some((KIND_ENTRY, 42, &b"hello"[..])));
    assert_eq!(decode(&buf[..buf.len() - 1]), None);
    let mut bad = buf.clone();
    bad[9] ^= 1; // the index
    assert_eq!(decode(&bad), None);
    let zeros = [0u8; HEADER];
    assert_eq!(decode(&zeros), None);
}

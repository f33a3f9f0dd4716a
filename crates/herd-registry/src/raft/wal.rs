//! The Raft log's bytes on disk: an append-only, segmented write-ahead log of numbered
//! records, in the manner of etcd's WAL.
//!
//! Why not a B-tree (redb, which held the log before): every append rewrote a handful of
//! 4 KiB pages plus the tree's header, and purging 5,000 compacted entries deleted them
//! one by one — about 200 ms during which Raft waited. Here an append is one `pwrite` of
//! the records themselves, and a purge unlinks whole segment files.
//!
//! Layout: `<dir>/<first index, 20 digits>.wal`, each a sequence of records
//! `[payload len: u32 LE][crc32: u32 LE][kind: u8][index: u64 LE][payload]`, the CRC over
//! kind, index and payload. Kinds: an entry (numbered, consecutive) or a marker (opaque
//! bytes; the newest one is handed back on open — the log store keeps the committed log
//! id there, a hint that costs no write of its own).
//!
//! Durability is the caller's: appends go to the page cache, and [`Wal::take_unsynced`]
//! names the files (and whether the directory) that an fsync must cover before the appended
//! records may be reported durable. Truncation syncs itself, since entries it removes must
//! not come back after a crash while later ones exist.
//!
//! Crash recovery: the first record that is incomplete or fails its CRC ends the log; it
//! and everything after it are removed. That is safe because records are synced in the
//! order they were written, so nothing after a torn record was ever reported durable.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const HEADER: usize = 17;
const KIND_ENTRY: u8 = 1;
const KIND_MARKER: u8 = 2;
/// No record is larger: a client request is at most a few MiB. Anything longer in a header
/// is damage, not data.
const MAX_PAYLOAD: u32 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the log in {dir} has a gap: entries end at {last} and resume at {next} in {path}; \
         the data dir is damaged (restore it, or remove it and re-join the cluster)"
    )]
    Gap {
        dir: PathBuf,
        last: u64,
        next: u64,
        path: PathBuf,
    },
    #[error("append of entry {got} to a log whose next entry is {want}")]
    OutOfOrder { got: u64, want: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Clone, Copy, Debug)]
struct Loc {
    /// Name (first index) of the segment that holds the record.
    segment: u64,
    /// Where the record's header starts.
    offset: u64,
    len: u32,
}

struct Segment {
    name: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Bytes of valid records; appends go here.
    len: u64,
    /// The newest entry in it, if any.
    last_entry: Option<u64>,
}

/// What [`Wal::open`] found besides the entries.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The newest marker's payload.
    pub marker: Option<Vec<u8>>,
    /// Bytes removed after the first torn or damaged record (0 after a clean stop).
    pub dropped_bytes: u64,
}

/// Files written since the last sync; see [`Wal::take_unsynced`].
#[derive(Default)]
pub struct Unsynced {
    files: Vec<Arc<File>>,
    dir: Option<PathBuf>,
}

impl Unsynced {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dir.is_none()
    }

    /// Makes every record written before [`Wal::take_unsynced`] durable.
    pub fn sync(self) -> io::Result<()> {
        for f in &self.files {
            f.sync_data()?;
        }
        if let Some(dir) = self.dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Where to read a run of records in one segment: one `pread` for all of them.
pub struct ReadPiece {
    segment: u64,
    file: Arc<File>,
    path: PathBuf,
    offset: u64,
    lens: Vec<u32>,
    first_index: u64,
}

pub struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Index of `locs[0]`.
    first: u64,
    locs: VecDeque<Loc>,
    unsynced: Vec<Arc<File>>,
    dir_unsynced: bool,
    max_segment: u64,
}

fn segment_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

fn encode(out: &mut Vec<u8>, kind: u8, index: u64, payload: &[u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(&index.to_le_bytes());
    h.update(payload);
    // The caller bounds payloads (a client request is a few MiB); MAX_PAYLOAD checks it
    // again on read.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
}

/// One record parsed from the front of `buf`, or `None` if it is incomplete or damaged.
fn decode(buf: &[u8]) -> Option<(u8, u64, &[u8])> {
    let header = buf.get(..HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let kind = header[8];
    let index = u64::from_le_bytes(header[9..17].try_into().ok()?);
    if len > MAX_PAYLOAD || !(kind == KIND_ENTRY || kind == KIND_MARKER) {
        return None;
    }
    let payload = buf.get(HEADER..HEADER + len as usize)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&header[8..17]);
    h.update(payload);
    (h.finalize() == crc).then_some((kind, index, payload))
}

impl Wal {
    /// Opens (or creates) the log in `dir`, reading every segment to rebuild the index.
    /// Entries at or below `purged` are skipped: a purge that unlinked their segments may
    /// not have happened yet when the process stopped.
    pub fn open(
        dir: &Path,
        purged: Option<u64>,
        max_segment: u64,
    ) -> Result<(Wal, Recovered), WalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut names = Vec::new();
        for item in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let path = item.map_err(io_err(dir))?.path();
            if let Some(name) = segment_name(&path) {
                names.push((name, path));
            }
        }
        names.sort();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            first: purged.map_or(0, |p| p + 1),
            locs: VecDeque::new(),
            unsynced: Vec::new(),
            dir_unsynced: false,
            max_segment,
        };
        let mut recovered = Recovered::default();
        let mut torn = false;
        for (name, path) in names {
            if torn {
                // Written after a record that never became durable: never reported durable.
                let len = std::fs::metadata(&path).map_or(0, |m| m.len());
                recovered.dropped_bytes += len;
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                wal.dir_unsynced = true;
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            let mut segment = Segment {
                name,
                file: Arc::new(
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .map_err(io_err(&path))?,
                ),
                path,
                len: 0,
                last_entry: None,
            };
            let mut at = 0usize;
            while at < bytes.len() {
                let Some((kind, index, payload)) = decode(&bytes[at..]) else {
                    torn = true;
                    break;
                };
                if kind == KIND_MARKER {
                    recovered.marker = Some(payload.to_vec());
                } else if purged.is_none_or(|p| index > p) {
                    let want = wal.next_index();
                    if (!wal.locs.is_empty() || purged.is_some()) && index != want {
                        return Err(WalError::Gap {
                            dir: dir.to_path_buf(),
                            last: want.saturating_sub(1),
                            next: index,
                            path: segment.path.clone(),
                        });
                    }
                    if wal.locs.is_empty() {
                        wal.first = index;
                    }
                    wal.locs.push_back(Loc {
                        segment: name,
                        offset: at as u64,
                        len: payload.len() as u32,
                    });
                    segment.last_entry = Some(index);
                }
                at += HEADER + payload.len();
            }
            segment.len = at as u64;
            if torn {
                recovered.dropped_bytes += (bytes.len() - at) as u64;
                segment
                    .file
                    .set_len(at as u64)
                    .map_err(io_err(&segment.path))?;
                segment.file.sync_all().map_err(io_err(&segment.path))?;
            }
            wal.segments.push(segment);
        }
        if wal.dir_unsynced {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
            wal.dir_unsynced = false;
        }
        Ok((wal, recovered))
    }

    /// The index the next appended entry must have (when the log holds any entry).
    fn next_index(&self) -> u64 {
        self.first + self.locs.len() as u64
    }

    #[cfg(test)]
    pub fn first_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then_some(self.first)
    }

    pub fn last_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.next_index() - 1)
    }

    /// Entries held (purged ones excluded).
    pub fn len(&self) -> u64 {
        self.locs.len() as u64
    }

    /// Appends `entries` (consecutive, continuing the log) and then `marker`, in one write.
    pub fn append<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (u64, &'a [u8])>,
        marker: Option<&[u8]>,
    ) -> Result<(), WalError> {
        let mut buf = Vec::new();
        let mut new_locs = Vec::new();
        let mut want = (!self.locs.is_empty()).then(|| self.next_index());
        for (index, payload) in entries {
            if let Some(w) = want {
                if index != w {
                    return Err(WalError::OutOfOrder {
                        got: index,
                        want: w,
                    });
                }
            }
            want = Some(index + 1);
            new_locs.push((index, buf.len() as u64, payload.len() as u32));
            encode(&mut buf, KIND_ENTRY, index, payload);
        }
        if let Some(m) = marker {
            encode(&mut buf, KIND_MARKER, 0, m);
        }
        if buf.is_empty() {
            return Ok(());
        }
        let name = new_locs.first().map_or(self.next_index(), |l| l.0);
        let rotate = match self.segments.last() {
            None => true,
            // A segment is named by its first entry, so a new one needs a higher name.
            Some(s) => s.len >= self.max_segment && !new_locs.is_empty() && name > s.name,
        };
        if rotate {
            self.create_segment(name)?;
        }
        let Some(segment) = self.segments.last_mut() else {
            unreachable!("a segment was just created");
        };
        if let Err(e) = segment.file.write_all_at(&buf, segment.len) {
            // Whatever part landed lies beyond `len` and is overwritten by the next append.
            let _ = segment.file.set_len(segment.len);
            return Err(io_err(&segment.path)(e));
        }
        for (index, rel, len) in new_locs {
            if self.locs.is_empty() {
                self.first = index;
            }
            self.locs.push_back(Loc {
                segment: segment.name,
                offset: segment.len + rel,
                len,
            });
            segment.last_entry = Some(index);
        }
        segment.len += buf.len() as u64;
        if !self.unsynced.iter().any(|f| Arc::ptr_eq(f, &segment.file)) {
            self.unsynced.push(segment.file.clone());
        }
        Ok(())
    }

    fn create_segment(&mut self, name: u64) -> Result<(), WalError> {
        let path = self.dir.join(format!("{name:020}.wal"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.segments.push(Segment {
            name,
            path,
            file: Arc::new(file),
            len: 0,
            last_entry: None,
        });
        self.dir_unsynced = true;
        Ok(())
    }

    /// What must be synced for every record appended so far to be durable.
    pub fn take_unsynced(&mut self) -> Unsynced {
        Unsynced {
            files: std::mem::take(&mut self.unsynced),
            dir: std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone()),
        }
    }

    /// Plans reading entries `start..end`, stopping before `max_bytes` of payload unless
    /// it is the first entry. Indexes outside the log are skipped.
    pub fn plan_read(&self, start: u64, end: u64, max_bytes: usize) -> Vec<ReadPiece> {
        let mut pieces: Vec<ReadPiece> = Vec::new();
        let start = start.max(self.first);
        let end = end.min(self.next_index());
        let mut bytes = 0usize;
        for index in start..end {
            let loc = self.locs[(index - self.first) as usize];
            if bytes > 0 && bytes + loc.len as usize > max_bytes {
                break;
            }
            bytes += loc.len as usize;
            if let Some(p) = pieces.last_mut() {
                let end_of_last = p.offset
                    + p.lens
                        .iter()
                        .map(|l| HEADER as u64 + *l as u64)
                        .sum::<u64>();
                if p.segment == loc.segment && end_of_last == loc.offset {
                    p.lens.push(loc.len);
                    continue;
                }
            }
            if let Some(s) = self.segment(loc.segment) {
                pieces.push(ReadPiece {
                    segment: loc.segment,
                    file: s.file.clone(),
                    path: s.path.clone(),
                    offset: loc.offset,
                    lens: vec![loc.len],
                    first_index: index,
                });
            }
        }
        pieces
    }

    fn segment(&self, name: u64) -> Option<&Segment> {
        self.segments
            .binary_search_by_key(&name, |s| s.name)
            .ok()
            .map(|i| &self.segments[i])
    }

    /// Removes entries `from..`, durably.
    pub fn truncate(&mut self, from: u64) -> Result<(), WalError> {
        if from >= self.next_index() {
            return Ok(());
        }
        let keep = from.saturating_sub(self.first) as usize;
        let cut = self.locs.get(keep).copied();
        self.locs.truncate(keep);
        let Some(cut) = cut else { return Ok(()) };
        // Later segments go first: if the process stops half way, what remains is a
        // shorter log, never one with a hole.
        while self.segments.last().is_some_and(|s| s.name > cut.segment) {
            if let Some(s) = self.segments.pop() {
                std::fs::remove_file(&s.path).map_err(io_err(&s.path))?;
            }
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        let last_entry = self.last_index();
        if let Some(s) = self.segments.last_mut() {
            s.file.set_len(cut.offset).map_err(io_err(&s.path))?;
            s.file.sync_all().map_err(io_err(&s.path))?;
            s.len = cut.offset;
            s.last_entry = last_entry.filter(|&l| l >= s.name);
        }
        Ok(())
    }

    /// Forgets entries up to and including `upto` and unlinks every segment that holds
    /// nothing newer. The caller records `upto` durably first.
    pub fn purge(&mut self, upto: u64) -> Result<(), WalError> {
        if upto >= self.first {
            let drop = ((upto - self.first + 1) as usize).min(self.locs.len());
            self.locs.drain(..drop);
            self.first = upto + 1;
        }
        let mut removed = false;
        while let Some(s) = self.segments.first() {
            if s.last_entry.is_some_and(|l| l > upto) {
                break;
            }
            let s = self.segments.remove(0);
            self.unsynced.retain(|f| !Arc::ptr_eq(f, &s.file));
            std::fs::remove_file(&s.path).map_err(io_err(&s.path))?;
            removed = true;
        }
        if removed {
            self.dir_unsynced = true;
        }
        Ok(())
    }
}

/// Bytes a plan reads, headers included.
pub fn planned_bytes(pieces: &[ReadPiece]) -> usize {
    pieces
        .iter()
        .flat_map(|p| p.lens.iter())
        .map(|l| HEADER + *l as usize)
        .sum()
}

/// Reads the planned entries; each payload in index order.
pub fn read_pieces(pieces: &[ReadPiece]) -> Result<Vec<Vec<u8>>, WalError> {
    let mut out = Vec::new();
    for p in pieces {
        let total: usize = p.lens.iter().map(|l| HEADER + *l as usize).sum();
        let mut buf = vec![0u8; total];
        p.file
            .read_exact_at(&mut buf, p.offset)
            .map_err(io_err(&p.path))?;
        let mut at = 0usize;
        for (i, len) in p.lens.iter().enumerate() {
            let want = p.first_index + i as u64;
            match decode(&buf[at..]) {
                Some((KIND_ENTRY, index, payload)) if index == want => {
                    out.push(payload.to_vec());
                }
                _ => {
                    return Err(io_err(&p.path)(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("entry {want} at offset {} does not read back", p.offset),
                    )))
                }
            }
            at += HEADER + *len as usize;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

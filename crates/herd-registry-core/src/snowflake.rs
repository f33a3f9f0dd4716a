//! 64-bit snowflake IDs: 41 bits of milliseconds since a custom epoch, 10 bits of node, 12
//! bits of sequence (from the top: `0 | ms:41 | node:10 | seq:12`, bit 63 always 0 so IDs
//! are positive as i64 too). IDs from one generator strictly increase; IDs from different
//! nodes differ in the node bits.

/// Bits of milliseconds since the epoch (about 69.7 years).
pub const TIMESTAMP_BITS: u32 = 41;
/// Bits of node number.
pub const NODE_BITS: u32 = 10;
/// Bits of per-millisecond sequence.
pub const SEQUENCE_BITS: u32 = 12;
/// Highest node number.
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;
/// How far the wall clock may be behind the generator's logical clock before
/// [`Snowflake::next`] refuses. Up to this, IDs keep using the generator's own (ahead) time,
/// which is what NTP slews and small steps need; beyond it something is badly wrong, and
/// running ahead further would widen the window in which a restarted generator (which
/// starts again from the wall clock) could repeat IDs.
pub const MAX_CLOCK_REGRESSION_MS: u64 = 5_000;

const MAX_TIMESTAMP: u64 = (1 << TIMESTAMP_BITS) - 1;
const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnowflakeError {
    #[error("node {0} out of range (0..={MAX_NODE})")]
    NodeOutOfRange(u16),
    /// The wall clock is more than [`MAX_CLOCK_REGRESSION_MS`] behind the last ID's time.
    #[error("clock went back: {behind_ms} ms behind the last issued ID")]
    ClockWentBack { behind_ms: u64 },
    #[error("clock {now_ms} ms is before the epoch {epoch_ms} ms")]
    BeforeEpoch { now_ms: u64, epoch_ms: u64 },
    #[error("timestamp no longer fits in {TIMESTAMP_BITS} bits: the epoch is too old")]
    Exhausted,
}

/// An ID generator for one node. Not shared: one per node (or per node and thread, with
/// distinct node numbers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snowflake {
    node: u64,
    epoch_ms: u64,
    /// Logical time of the last ID, in ms since the epoch; may run ahead of the wall clock.
    last_ms: u64,
    sequence: u64,
    issued_any: bool,
}

impl Snowflake {
    /// A generator for `node` (< 1024) counting milliseconds from `epoch_ms` (Unix ms).
    pub fn new(node: u16, epoch_ms: u64) -> Result<Self, SnowflakeError> {
        if node > MAX_NODE {
            return Err(SnowflakeError::NodeOutOfRange(node));
        }
        Ok(Snowflake {
            node: u64::from(node),
            epoch_ms,
            last_ms: 0,
            sequence: 0,
            issued_any: false,
        })
    }

    /// The next ID at wall-clock time `now_ms` (Unix ms).
    ///
    /// Within one millisecond the sequence counts up; when its 4096 values are used, the
    /// generator borrows the next millisecond (its logical clock runs ahead) instead of
    /// waiting, since it must not sleep. A wall clock that goes back keeps the last logical
    /// time, so IDs never repeat or decrease, unless it is more than
    /// [`MAX_CLOCK_REGRESSION_MS`] behind: then nothing is issued.
    pub fn next(&mut self, now_ms: u64) -> Result<u64, SnowflakeError> {
        let now = now_ms
            .checked_sub(self.epoch_ms)
            .ok_or(SnowflakeError::BeforeEpoch {
                now_ms,
                epoch_ms: self.epoch_ms,
            })?;
        let (ms, sequence) = if !self.issued_any || now > self.last_ms {
            (now, 0)
        } else {
            let behind_ms = self.last_ms - now;
            if behind_ms > MAX_CLOCK_REGRESSION_MS {
                return Err(SnowflakeError::ClockWentBack { behind_ms });
            }
            if self.sequence < MAX_SEQUENCE {
                (self.last_ms, self.sequence + 1)
            } else {
                (self.last_ms + 1, 0)
            }
        };
        if ms > MAX_TIMESTAMP {
            return Err(SnowflakeError::Exhausted);
        }
        self.last_ms = ms;
        self.sequence = sequence;
        self.issued_any = true;
        Ok((ms << (NODE_BITS + SEQUENCE_BITS)) | (self.node << SEQUENCE_BITS) | sequence)
    }
}

/// Splits an ID into (ms since epoch, node, sequence).
pub fn decode_id(id: u64) -> (u64, u16, u16) {
    let ms = id >> (NODE_BITS + SEQUENCE_BITS);
    let node = ((id >> SEQUENCE_BITS) & u64::from(MAX_NODE)) as u16;
    let seq = (id & MAX_SEQUENCE) as u16;
    (ms, node, seq)
}

#[cfg(test)]
mod tests;

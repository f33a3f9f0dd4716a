//! The one hash function of the crate. Ring positions and cookie server ids are derived from it
//! and persist outside the process (in clients' cookies, in other herd instances that must agree
//! on a key's server), so its output is part of the contract: never change it.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Stable 64-bit hash: FNV-1a 64 over the bytes, then the MurmurHash3 `fmix64` finalizer.
///
/// The output is identical on every run, platform and endianness (bytes are consumed one at a
/// time and no random seed is involved), so it may be stored or shared between processes.
/// FNV-1a alone leaves similar keys ("key-1", "key-2") close together in the high bits, which
/// would cluster them on a hash ring; the finalizer spreads every input bit over the whole word.
///
/// Not resistant to deliberate collisions: keys chosen by an attacker can pile onto one server,
/// which is the price of stability without a secret seed.
pub fn hash64(bytes: &[u8]) -> u64 {
    fmix64(fnv1a64(bytes))
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

pub(crate) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests;

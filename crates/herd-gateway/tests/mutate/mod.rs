//! What the corpus tests share: reading a committed corpus under `fuzz/corpus/`, and a
//! bounded, deterministic mutator (bit flips, inserts, removals, truncation, interesting
//! bytes) standing in for the fuzzer where only stable Rust runs. Each test binary uses
//! part of it.
#![allow(dead_code)]

use herd_balance::Rng;
use std::path::PathBuf;

/// Every file of `fuzz/corpus/<name>/`, by file name.
pub fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    files.sort();
    files
}

/// The corpus entry named `name`.
pub fn entry<'a>(corpus: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    corpus
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.as_slice())
        .unwrap_or_else(|| panic!("no corpus entry {name}"))
}

/// `rounds` inputs, each a corpus entry with one to five mutations, handed to `check`.
pub fn mutations(
    seeds: &[(String, Vec<u8>)],
    seed: u64,
    rounds: usize,
    interesting: &[u8],
    mut check: impl FnMut(&[u8]),
) {
    let mut rng = Rng::new(seed);
    let mut buf = Vec::new();
    for _ in 0..rounds {
        let (_, seed) = &seeds[rng.below(seeds.len() as u64) as usize];
        buf.clear();
        buf.extend_from_slice(seed);
        for _ in 0..=rng.below(4) {
            let at = |rng: &mut Rng, len: usize| rng.below(len as u64 + 1) as usize;
            match rng.below(6) {
                0 if !buf.is_empty() => {
                    let i = at(&mut rng, buf.len() - 1);
                    buf[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = at(&mut rng, buf.len());
                    buf.insert(i, rng.next_u64() as u8);
                }
                2 if !buf.is_empty() => {
                    let i = at(&mut rng, buf.len() - 1);
                    buf.remove(i);
                }
                3 => {
                    let n = at(&mut rng, buf.len());
                    buf.truncate(n);
                }
                4 if !buf.is_empty() => {
                    let i = at(&mut rng, buf.len() - 1);
                    buf[i] = interesting[rng.below(interesting.len() as u64) as usize];
                }
                _ => {
                    // Length fields and big numbers: overwrite a random byte pair.
                    if buf.len() >= 2 {
                        let i = at(&mut rng, buf.len() - 2);
                        buf[i] = rng.next_u64() as u8;
                        buf[i + 1] = rng.next_u64() as u8;
                    }
                }
            }
        }
        check(&buf);
    }
}

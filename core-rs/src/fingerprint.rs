//! Partial content fingerprints for recognising a moved or renamed file
//! without reading it whole: XXH3-128 over the size, the first 64 KiB and the
//! last 64 KiB.
//!
//! XXH3 is not a cryptographic hash. That is enough here: the fingerprint
//! only pairs a vanished catalog entry with a new path, and a forged
//! collision could at worst move an entry's metadata to another of the
//! user's own files.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::error::Result;
use crate::file::open_regular;

/// Bytes hashed at each end of the file.
pub const BLOCK_SIZE: u64 = 64 * 1024;

/// Computes the 16-byte fingerprint of one file (big-endian XXH3-128).
pub fn fingerprint_file(path: &Path) -> Result<[u8; 16]> {
    let opened = open_regular(path, None).map_err(|err| err.with_path(path))?;
    fingerprint_open(&opened.file, opened.size).map_err(|err| err.with_path(path))
}

/// Computes the fingerprint of an open file whose size is `size`, with
/// positioned reads, so the file's offset does not matter.
pub fn fingerprint_open(file: &File, size: u64) -> Result<[u8; 16]> {
    let head = read_head(file, size)?;
    fingerprint_with_head(file, size, &head)
}

/// Reads the first block of an open file whose size is `size`: the bytes
/// that [`fingerprint_with_head`] expects as `head`.
pub fn read_head(file: &File, size: u64) -> Result<Vec<u8>> {
    // The block size bounds the read, so the buffer fits in memory.
    let mut head = vec![0u8; usize::try_from(BLOCK_SIZE.min(size)).unwrap_or(0)];
    file.read_exact_at(&mut head, 0)?;
    Ok(head)
}

/// Computes the fingerprint of an open file from its first block, already
/// read by [`read_head`], and its last block, read here.
pub fn fingerprint_with_head(file: &File, size: u64, head: &[u8]) -> Result<[u8; 16]> {
    let mut hasher = Xxh3::new();
    hasher.update(&size.to_le_bytes());
    hasher.update(head);
    if size > BLOCK_SIZE {
        let tail_start = size.saturating_sub(BLOCK_SIZE).max(BLOCK_SIZE);
        let tail_len = usize::try_from(size - tail_start).unwrap_or(0);
        let mut tail = vec![0u8; tail_len];
        file.read_exact_at(&mut tail, tail_start)?;
        hasher.update(&tail);
    }
    Ok(hasher.digest128().to_be_bytes())
}

/// Fingerprints many files in parallel; results keep the input order.
#[must_use]
pub fn fingerprint_many(paths: &[PathBuf], threads: usize) -> Vec<Result<[u8; 16]>> {
    crate::file::run_in_pool(threads, || {
        paths
            .par_iter()
            .map(|path| fingerprint_file(path))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::fs;

    #[test]
    fn fingerprint_changes_with_head_tail_and_size_only() {
        let dir = std::env::temp_dir().join(format!("reelwatch-fp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut data = vec![7u8; 300 * 1024];
        let base = dir.join("base.mkv");
        fs::write(&base, &data).unwrap();
        let original = fingerprint_file(&base).unwrap();

        data[150 * 1024] = 8;
        fs::write(dir.join("middle.mkv"), &data).unwrap();
        assert_eq!(fingerprint_file(&dir.join("middle.mkv")).unwrap(), original);

        let last = data.len() - 1;
        data[last] = 9;
        fs::write(dir.join("tail.mkv"), &data).unwrap();
        assert_ne!(fingerprint_file(&dir.join("tail.mkv")).unwrap(), original);

        fs::write(dir.join("small.mkv"), b"abc").unwrap();
        fs::write(dir.join("small2.mkv"), b"abd").unwrap();
        assert_ne!(
            fingerprint_file(&dir.join("small.mkv")).unwrap(),
            fingerprint_file(&dir.join("small2.mkv")).unwrap()
        );
        let err = fingerprint_file(&dir.join("missing.mkv")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fingerprint_many_keeps_input_order() {
        let dir = std::env::temp_dir().join(format!("reelwatch-fp-many-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.mkv"), b"first").unwrap();
        fs::write(dir.join("b.mkv"), b"second").unwrap();
        let paths = vec![
            dir.join("a.mkv"),
            dir.join("missing.mkv"),
            dir.join("b.mkv"),
        ];

        let results = fingerprint_many(&paths, 2);

        assert_eq!(results.len(), 3);
        assert_eq!(
            results[0].as_ref().unwrap(),
            &fingerprint_file(&paths[0]).unwrap()
        );
        assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(
            results[2].as_ref().unwrap(),
            &fingerprint_file(&paths[2]).unwrap()
        );
        fs::remove_dir_all(dir).unwrap();
    }
}

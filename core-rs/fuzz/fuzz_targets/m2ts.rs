//! Feeds arbitrary bytes to the M2TS (192-byte packets) parser as if they were a whole file.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use reelwatch_core::probe::mpegts;

fuzz_target!(|data: &[u8]| common::run(data, |reader| mpegts::probe(reader, 192)));

//! Feeds arbitrary bytes to container detection and the parser it picks, the
//! path every probed file takes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use reelwatch_core::probe::probe_reader;

fuzz_target!(|data: &[u8]| common::run(data, probe_reader));

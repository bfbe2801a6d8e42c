//! Feeds arbitrary bytes to the FLV parser as if they were a whole file.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use reelwatch_core::probe::flv;

fuzz_target!(|data: &[u8]| common::run(data, flv::probe));

//! Feeds arbitrary bytes to the Ogg parser as if they were a whole file.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use reelwatch_core::probe::ogg;

fuzz_target!(|data: &[u8]| common::run(data, ogg::probe));

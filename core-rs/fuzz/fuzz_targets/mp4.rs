//! Feeds arbitrary bytes to the ISO base media (MP4, MOV) parser as if they were a whole file.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use reelwatch_core::probe::mp4;

fuzz_target!(|data: &[u8]| common::run(data, mp4::probe));

//! The harness every fuzz target shares: it wraps the input in a budgeted
//! [`Reader`], runs one entry point, and checks the result a caller would get.

use std::io::Cursor;

use reelwatch_core::probe::reader::{Reader, DEFAULT_READ_BUDGET};
use reelwatch_core::probe::MediaInfo;
use reelwatch_core::Result;

/// Runs `probe` over `data` as if it were a whole file. Panics (a finding)
/// when the probe reads past its budget or returns a duration or frame rate
/// that no file can have.
pub fn run<'a, F>(data: &'a [u8], probe: F)
where
    F: FnOnce(&mut Reader<Cursor<&'a [u8]>>) -> Result<MediaInfo>,
{
    let mut reader = Reader::new(Cursor::new(data), data.len() as u64, DEFAULT_READ_BUDGET);
    let result = probe(&mut reader);
    assert!(reader.bytes_read() <= DEFAULT_READ_BUDGET);
    if let Ok(info) = result {
        if let Some(duration) = info.duration_s {
            assert!(
                duration.is_finite() && duration >= 0.0,
                "duration {duration}"
            );
        }
        if let Some(rate) = info.frame_rate {
            assert!(rate.num > 0, "frame rate {rate:?}");
            assert!(rate.den > 0, "frame rate {rate:?}");
        }
    }
}

//! Container-header probing: detect the container from its first bytes, then
//! read only the headers that carry duration, size, frame rate and codecs.
//!
//! Each container has its own module with one entry point,
//! `probe(&mut Reader<R>) -> Result<MediaInfo>`, called with the reader at
//! offset 0. A parser fills what the container states and leaves the rest
//! `None`; it never reads past [`reader::DEFAULT_READ_BUDGET`].

pub mod asf;
pub mod avi;
pub mod bytes;
pub mod codecs;
#[cfg(test)]
mod corpus;
pub mod detect;
mod es;
pub mod flv;
pub mod matroska;
pub mod mp4;
pub mod mpegps;
pub mod mpegts;
pub mod ogg;
pub mod reader;

use std::io::{Read, Seek};

use crate::error::{Error, ErrorKind, Result};
use detect::Format;
use reader::Reader;

/// A rational number, used for frame rates ("30000/1001").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rational {
    /// Numerator.
    pub num: u32,
    /// Denominator, never zero.
    pub den: u32,
}

impl Rational {
    /// Creates a reduced rational, or `None` when either part is zero.
    #[must_use]
    pub fn new(num: u64, den: u64) -> Option<Self> {
        if num == 0 || den == 0 {
            return None;
        }
        let divisor = gcd(num, den);
        let (mut num, mut den) = (num / divisor, den / divisor);
        // Keep the ratio when a part does not fit in 32 bits.
        while num > u64::from(u32::MAX) || den > u64::from(u32::MAX) {
            num = (num / 2).max(1);
            den = (den / 2).max(1);
        }
        Some(Rational {
            num: u32::try_from(num).ok()?,
            den: u32::try_from(den).ok()?,
        })
    }

    /// Approximates `num / den` by the closest fraction whose parts are at
    /// most `max`, the way ffmpeg's `av_reduce` does (continued fractions), so
    /// rates derived from nanosecond durations match ffprobe's.
    #[must_use]
    pub fn approximate(num: u64, den: u64, max: u64) -> Option<Self> {
        if num == 0 || den == 0 || max == 0 {
            return None;
        }
        let divisor = gcd(num, den);
        let (mut num, mut den) = (u128::from(num / divisor), u128::from(den / divisor));
        let max = u128::from(max);
        if num <= max && den <= max {
            return Rational::new(u64::try_from(num).ok()?, u64::try_from(den).ok()?);
        }
        // Convergents a0 = 0/1 and a1 = 1/0, then a2 = x * a1 + a0 per step.
        let (mut a0_num, mut a0_den, mut a1_num, mut a1_den) = (0u128, 1u128, 1u128, 0u128);
        while den != 0 {
            let x = num / den;
            let next_den = num - den * x;
            let a2_num = x * a1_num + a0_num;
            let a2_den = x * a1_den + a0_den;
            if a2_num > max || a2_den > max {
                // Take the best semiconvergent that still fits, if it beats a1.
                let mut x = (max - a0_num).checked_div(a1_num).unwrap_or(x);
                if let Some(limit) = (max - a0_den).checked_div(a1_den) {
                    x = x.min(limit);
                }
                if den * (2 * x * a1_den + a0_den) > num * a1_den {
                    (a1_num, a1_den) = (x * a1_num + a0_num, x * a1_den + a0_den);
                }
                break;
            }
            (a0_num, a0_den, a1_num, a1_den) = (a1_num, a1_den, a2_num, a2_den);
            (num, den) = (den, next_den);
        }
        Rational::new(u64::try_from(a1_num).ok()?, u64::try_from(a1_den).ok()?)
    }

    /// The value as a float.
    #[must_use]
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// What a probe found in a file's headers. Codec, profile and container names
/// follow ffprobe 5.1 (`codec_name`, `profile`), so users can compare the two.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaInfo {
    /// Short container name: "mp4", "mov", "m4v", "3gp", "matroska", "webm",
    /// "avi", "mpegts", "m2ts", "mpeg", "ogg", "flv" or "asf".
    pub container: String,
    /// ffprobe's `format_name` for the same file, e.g. "mov,mp4,m4a,3gp,3g2,mj2".
    pub format_name: String,
    /// Duration in seconds, as ffprobe's `format.duration` would give it.
    pub duration_s: Option<f64>,
    /// Coded width of the first video stream that is not cover art.
    pub width: Option<u32>,
    /// Coded height of that stream.
    pub height: Option<u32>,
    /// Display rotation in degrees, with ffprobe's sign (counter-clockwise positive).
    pub rotation: Option<i32>,
    /// Average frame rate of that stream (ffprobe's `avg_frame_rate`).
    pub frame_rate: Option<Rational>,
    /// Video codec name, e.g. "h264", "hevc", "vp9", "av1".
    pub video_codec: Option<String>,
    /// Video codec profile as ffprobe prints it, e.g. "High", "Main 10".
    pub video_profile: Option<String>,
    /// Codec of the first audio stream, e.g. "aac", "opus"; `None` when there is none.
    pub audio_codec: Option<String>,
    /// Channel count of the first audio stream.
    pub audio_channels: Option<u32>,
    /// Sample rate of the first audio stream in Hz.
    pub audio_sample_rate: Option<u32>,
    /// Overall bit rate in bits per second.
    pub bit_rate: Option<u64>,
    /// Number of video streams, cover art excluded.
    pub video_streams: u32,
    /// Number of audio streams.
    pub audio_streams: u32,
    /// Number of subtitle streams.
    pub subtitle_streams: u32,
    /// Whether every structure the headers declare ends inside the file. False
    /// for a file still being copied or cut short.
    pub complete: bool,
}

/// Probes a source whose container is already known; `reader` is at offset 0.
pub fn probe_format<R: Read + Seek>(format: Format, reader: &mut Reader<R>) -> Result<MediaInfo> {
    match format {
        Format::IsoBmff => mp4::probe(reader),
        Format::Matroska => matroska::probe(reader),
        Format::Avi => avi::probe(reader),
        Format::MpegTs(packet_size) => mpegts::probe(reader, packet_size),
        Format::MpegPs => mpegps::probe(reader),
        Format::Ogg => ogg::probe(reader),
        Format::Flv => flv::probe(reader),
        Format::Asf => asf::probe(reader),
    }
}

/// Detects the container of `reader` (at offset 0) and probes it.
pub fn probe_reader<R: Read + Seek>(reader: &mut Reader<R>) -> Result<MediaInfo> {
    if reader.is_empty() {
        return Err(Error::new(ErrorKind::Empty, "the file is empty (0 bytes)"));
    }
    let mut head = [0u8; detect::SNIFF_LEN];
    let count = reader.read_up_to(&mut head)?;
    let head = &head[..count];
    reader.seek_to(0)?;
    match detect::detect(head) {
        Some(format) => probe_format(format, reader).and_then(|info| finish(info, reader.len())),
        // A preallocated file (torrent clients) is all zeros until data arrives.
        None if detect::describe_unknown(head) == "zeros" => Err(Error::incomplete(
            "the header is all zero bytes; the file is still being written",
        )),
        None => Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "unsupported container (detected: {})",
                detect::describe_unknown(head)
            ),
        )),
    }
}

/// ffprobe's overall bit rate when the container states none: the file size
/// in bits over the duration, rounded down.
#[must_use]
pub fn bit_rate(file_len: u64, duration_s: Option<f64>) -> Option<u64> {
    let duration = duration_s.filter(|d| d.is_finite() && *d > 0.0)?;
    let rate = (file_len as f64 * 8.0 / duration).floor();
    // Sizes and durations in real files keep the rate far below 2^63.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rate = rate as u64;
    Some(rate).filter(|&r| r > 0)
}

/// Applies the rules shared by every container to a parser's result.
fn finish(mut info: MediaInfo, file_len: u64) -> Result<MediaInfo> {
    if info.video_streams == 0 && info.video_codec.is_none() {
        let audio = info.audio_codec.as_deref().unwrap_or("none");
        return Err(Error::new(
            ErrorKind::NoVideo,
            format!(
                "the {} file has no video stream (audio: {audio}, subtitle streams: {})",
                info.container, info.subtitle_streams
            ),
        ));
    }
    // ffprobe works in whole microseconds (AV_TIME_BASE), and so does its
    // size-over-duration bit rate.
    info.duration_s = info.duration_s.map(|d| (d * 1e6).round() / 1e6);
    if info.bit_rate.is_none() {
        info.bit_rate = bit_rate(file_len, info.duration_s);
    }
    Ok(info)
}

/// The outcome of probing one file: the info or an error, plus the bytes read.
#[derive(Debug, Clone)]
pub struct ProbeOutcome {
    /// The media info, or why there is none.
    pub result: Result<MediaInfo>,
    /// Bytes read from the file by this probe.
    pub bytes_read: u64,
    /// The file's size when it was opened.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rational_reduces() {
        assert_eq!(
            Rational::new(60000, 2002),
            Some(Rational {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(Rational::new(0, 1), None);
        assert_eq!(Rational::new(1, 0), None);
    }

    #[test]
    fn approximate_matches_ffmpeg_for_ntsc_default_duration() {
        // Matroska DefaultDuration of 29.97 fps video, in nanoseconds.
        assert_eq!(
            Rational::approximate(1_000_000_000, 33_366_667, 30_000),
            Some(Rational {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(
            Rational::approximate(1_000_000_000, 40_000_000, 30_000),
            Some(Rational { num: 25, den: 1 })
        );
        assert_eq!(Rational::approximate(0, 5, 30_000), None);
    }

    #[test]
    fn every_format_rejects_zeros_with_an_error() {
        let formats = [
            Format::IsoBmff,
            Format::Matroska,
            Format::Avi,
            Format::MpegTs(188),
            Format::MpegTs(192),
            Format::MpegPs,
            Format::Ogg,
            Format::Flv,
            Format::Asf,
        ];
        for format in formats {
            let mut reader = Reader::new(std::io::Cursor::new(vec![0; 64]), 64, 1 << 20);

            let result = probe_format(format, &mut reader);

            assert!(result.is_err(), "{format:?}: {result:?}");
        }
    }

    #[test]
    fn empty_and_zeroed_sources_are_named() {
        let mut empty = Reader::new(std::io::Cursor::new(Vec::new()), 0, 1 << 20);
        assert_eq!(
            probe_reader(&mut empty).unwrap_err().kind(),
            ErrorKind::Empty
        );

        let mut zeros = Reader::new(std::io::Cursor::new(vec![0; 600]), 600, 1 << 20);
        let err = probe_reader(&mut zeros).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
        assert!(err.message().contains("all zero bytes"), "{err}");

        let mut text = Reader::new(std::io::Cursor::new(b"hello".to_vec()), 5, 1 << 20);
        let err = probe_reader(&mut text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("detected: text"), "{err}");
    }

    #[test]
    fn rational_keeps_the_ratio_of_huge_parts() {
        // 2^64 - 1 and 2^63 - 1 share no factor, so only halving fits them in u32.
        let rate = Rational::new(u64::MAX, u64::MAX / 2).unwrap();

        assert!((rate.as_f64() - 2.0).abs() < 1e-6, "{rate:?}");
    }

    #[test]
    fn bit_rate_is_size_over_duration() {
        assert_eq!(bit_rate(1_128_375, Some(5.055)), Some(1_785_756));
        assert_eq!(bit_rate(100, None), None);
        assert_eq!(bit_rate(100, Some(0.0)), None);
    }
}

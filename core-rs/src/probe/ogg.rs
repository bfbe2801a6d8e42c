//! Ogg parser for Theora and VP8 video with Vorbis, Opus, FLAC or Speex audio.
//!
//! It reads the beginning-of-stream (BOS) pages at the start of the file,
//! whose first packet identifies each logical stream's codec and carries its
//! picture size, frame rate or audio format. The duration comes from the
//! granule position of each stream's last page, found in a window at the end
//! of the file, converted to time the way ffmpeg 5.1's Ogg demuxer converts
//! it; the file lasts as long as its longest stream, counted from 0.
//!
//! Byte budget: the BOS pages (at most [`MAX_BOS_PAGES`] pages of at most
//! 65 307 bytes, in practice a few hundred bytes) plus [`TAIL_WINDOW`] bytes
//! from the end, doubled up to twice while it contains no usable page.
//!
//! A file is [`ErrorKind::NoVideo`] when none of its BOS pages starts a video
//! stream. NOTE: a chained Ogg file can start new streams later; a chain that
//! adds video after an audio-only first link is reported as `NoVideo`.

use std::collections::HashMap;
use std::io::{Read, Seek};

use super::reader::Reader;
use super::{bit_rate, MediaInfo, Rational};
use crate::error::{Error, ErrorKind, Result};

/// BOS pages read at most; each starts one logical stream.
const MAX_BOS_PAGES: usize = 64;
/// Bytes read from the end for the last granule positions: more than the
/// largest page (27 + 255 + 255 * 255 bytes), so the window contains a whole one.
const TAIL_WINDOW: u64 = 72 * 1024;
/// Largest tail window, after doubling twice.
const MAX_TAIL_WINDOW: usize = 4 * 72 * 1024;

const FLAG_BOS: u8 = 0x02;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
    Subtitle,
    Other,
}

/// Conversion from a stream's granule position to seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Clock {
    /// Theora: a keyframe number shifted left, plus frames since it.
    Theora {
        shift: u32,
        old_version: bool,
        rate: Rational,
    },
    /// VP8: the frame number in the top 32 bits.
    Vp8 {
        rate: Rational,
    },
    /// Audio: samples, less the decoder delay (Opus pre-skip).
    Samples {
        rate: u32,
        pre_skip: u64,
    },
    None,
}

#[derive(Debug, Clone, PartialEq)]
struct Stream {
    serial: u32,
    kind: Kind,
    codec: Option<&'static str>,
    width: Option<u32>,
    height: Option<u32>,
    frame_rate: Option<Rational>,
    channels: Option<u32>,
    sample_rate: Option<u32>,
    clock: Clock,
}

impl Stream {
    fn seconds(&self, granule: u64) -> Option<f64> {
        match self.clock {
            Clock::Theora {
                shift,
                old_version,
                rate,
            } => {
                let keyframe = granule.checked_shr(shift).unwrap_or(0);
                let mask = 1u64.checked_shl(shift).map_or(u64::MAX, |m| m - 1);
                let frames = keyframe + u64::from(old_version) + (granule & mask);
                Some(frames as f64 / rate.as_f64())
            }
            Clock::Vp8 { rate } => Some((granule >> 32) as f64 / rate.as_f64()),
            Clock::Samples { rate, pre_skip } if rate > 0 => {
                Some(granule.saturating_sub(pre_skip) as f64 / f64::from(rate))
            }
            Clock::Samples { .. } | Clock::None => None,
        }
    }
}

/// One page's header fields and body.
struct Page {
    flags: u8,
    serial: u32,
    body: Vec<u8>,
    /// Length of the first packet on this page.
    first_packet_len: usize,
}

/// Reads the container's headers from offset 0 of `reader`.
pub fn probe<R: Read + Seek>(reader: &mut Reader<R>) -> Result<MediaInfo> {
    let len = reader.len();
    reader.seek_to(0)?;
    let mut streams = Vec::new();
    loop {
        let offset = reader.position();
        let page = read_page(reader)?;
        if page.flags & FLAG_BOS == 0 {
            break;
        }
        if streams.len() >= MAX_BOS_PAGES {
            return Err(Error::corrupt(format!(
                "the Ogg file starts more than {MAX_BOS_PAGES} logical streams"
            )));
        }
        let packet = &page.body[..page.first_packet_len];
        streams.push(identify(page.serial, packet, offset)?);
        if reader.remaining() == 0 {
            break;
        }
    }
    if streams.is_empty() {
        return Err(Error::corrupt(
            "the first Ogg page does not begin a logical stream (no BOS flag)",
        ));
    }
    let (last_granules, complete) = read_tail(reader, &streams)?;
    build_info(&streams, &last_granules, len, complete)
}

fn read_page<R: Read + Seek>(reader: &mut Reader<R>) -> Result<Page> {
    let offset = reader.position();
    let header: [u8; 27] = reader.read_array()?;
    if &header[0..4] != b"OggS" {
        return Err(Error::corrupt(format!(
            "no Ogg page starts at offset {offset} (the capture pattern OggS is missing)"
        )));
    }
    if header[4] != 0 {
        return Err(Error::corrupt(format!(
            "Ogg page at offset {offset} has stream structure version {}, not 0",
            header[4]
        )));
    }
    let segments = reader.read_vec(u64::from(header[26]), 255)?;
    let body_len: usize = segments.iter().map(|&s| usize::from(s)).sum();
    let body = reader.read_vec(body_len as u64, 255 * 255)?;
    // The first packet ends at the first lacing value below 255.
    let first_packet_len = segments
        .iter()
        .position(|&s| s < 255)
        .map_or(body_len, |i| {
            segments[..=i].iter().map(|&s| usize::from(s)).sum()
        });
    Ok(Page {
        flags: header[5],
        serial: u32::from_le_bytes(header[14..18].try_into().unwrap_or_default()),
        body,
        first_packet_len,
    })
}

/// Identifies a logical stream from the first packet of its BOS page.
fn identify(serial: u32, packet: &[u8], offset: u64) -> Result<Stream> {
    let mut stream = Stream {
        serial,
        kind: Kind::Other,
        codec: None,
        width: None,
        height: None,
        frame_rate: None,
        channels: None,
        sample_rate: None,
        clock: Clock::None,
    };
    let short = || {
        Error::corrupt(format!(
            "the codec header in the Ogg page at offset {offset} is shorter than its format requires"
        ))
    };
    if packet.starts_with(b"\x80theora") {
        let p = packet.get(..42).ok_or_else(short)?;
        let version = u32::from_be_bytes([0, p[7], p[8], p[9]]);
        let width = u32::from_be_bytes([0, p[14], p[15], p[16]]);
        let height = u32::from_be_bytes([0, p[17], p[18], p[19]]);
        let rate = Rational::new(
            u64::from(u32::from_be_bytes([p[22], p[23], p[24], p[25]])),
            u64::from(u32::from_be_bytes([p[26], p[27], p[28], p[29]])),
        );
        let shift = u32::from(((p[40] & 0x03) << 3) | (p[41] >> 5));
        stream.kind = Kind::Video;
        stream.codec = Some("theora");
        stream.width = Some(width);
        stream.height = Some(height);
        stream.frame_rate = rate;
        if let Some(rate) = rate {
            stream.clock = Clock::Theora {
                shift,
                old_version: version < 0x0003_0201,
                rate,
            };
        }
    } else if packet.starts_with(b"OVP80\x01") {
        let p = packet.get(..26).ok_or_else(short)?;
        let rate = Rational::new(
            u64::from(u32::from_be_bytes([p[18], p[19], p[20], p[21]])),
            u64::from(u32::from_be_bytes([p[22], p[23], p[24], p[25]])),
        );
        stream.kind = Kind::Video;
        stream.codec = Some("vp8");
        stream.width = Some(u32::from(u16::from_be_bytes([p[8], p[9]])));
        stream.height = Some(u32::from(u16::from_be_bytes([p[10], p[11]])));
        stream.frame_rate = rate;
        if let Some(rate) = rate {
            stream.clock = Clock::Vp8 { rate };
        }
    } else if packet.starts_with(b"\x01vorbis") {
        let p = packet.get(..16).ok_or_else(short)?;
        let rate = u32::from_le_bytes([p[12], p[13], p[14], p[15]]);
        set_audio(&mut stream, "vorbis", u32::from(p[11]), rate, 0);
    } else if packet.starts_with(b"OpusHead") {
        let p = packet.get(..16).ok_or_else(short)?;
        let pre_skip = u64::from(u16::from_le_bytes([p[10], p[11]]));
        // Opus always decodes at 48 kHz; the header's rate is the input's.
        set_audio(&mut stream, "opus", u32::from(p[9]), 48_000, pre_skip);
    } else if packet.starts_with(b"\x7FFLAC") {
        // Mapping header (9 bytes), "fLaC", then the STREAMINFO block.
        let p = packet.get(..35).ok_or_else(short)?;
        let info = &p[17..];
        let rate =
            (u32::from(info[10]) << 12) | (u32::from(info[11]) << 4) | u32::from(info[12] >> 4);
        let channels = u32::from((info[12] >> 1) & 0x07) + 1;
        set_audio(&mut stream, "flac", channels, rate, 0);
    } else if packet.starts_with(b"Speex   ") {
        let p = packet.get(..52).ok_or_else(short)?;
        let rate = u32::from_le_bytes([p[36], p[37], p[38], p[39]]);
        let channels = u32::from_le_bytes([p[48], p[49], p[50], p[51]]);
        set_audio(&mut stream, "speex", channels, rate, 0);
    } else if packet.starts_with(b"\x80kate\0\0\0") {
        stream.kind = Kind::Subtitle;
        stream.codec = Some("kate");
    } else if packet.starts_with(b"BBCD\0") {
        stream.kind = Kind::Video;
        stream.codec = Some("dirac");
    } else if packet.starts_with(b"\x01video\0\0\0") {
        // OGM video: the codec is a VfW FourCC; only the kind matters here.
        stream.kind = Kind::Video;
    }
    Ok(stream)
}

fn set_audio(stream: &mut Stream, codec: &'static str, channels: u32, rate: u32, pre_skip: u64) {
    stream.kind = Kind::Audio;
    stream.codec = Some(codec);
    stream.channels = Some(channels);
    stream.sample_rate = Some(rate);
    stream.clock = Clock::Samples { rate, pre_skip };
}

/// Finds the last granule position of each stream in a window at the end of
/// the file, and whether the last page ends exactly at the end of the file.
fn read_tail<R: Read + Seek>(
    reader: &mut Reader<R>,
    streams: &[Stream],
) -> Result<(HashMap<u32, u64>, bool)> {
    let len = reader.len();
    let mut window = TAIL_WINDOW;
    loop {
        let start = len.saturating_sub(window);
        reader.seek_to(start)?;
        let data = reader.read_vec(len - start, MAX_TAIL_WINDOW)?;
        let (granules, last_end) = scan_pages(&data, streams);
        let whole = start == 0 || window >= 4 * TAIL_WINDOW;
        if !granules.is_empty() || whole {
            let complete = last_end.is_some_and(|end| start + end as u64 == len);
            return Ok((granules, complete));
        }
        window *= 2;
    }
}

/// Scans `data` for pages with a valid CRC; returns the last granule position
/// per known serial and where the last valid page ends.
fn scan_pages(data: &[u8], streams: &[Stream]) -> (HashMap<u32, u64>, Option<usize>) {
    let mut granules = HashMap::new();
    let mut last_end = None;
    let mut offset = 0;
    while let Some(found) = find(&data[offset..], b"OggS") {
        let start = offset + found;
        match page_at(data, start) {
            Some((end, granule, serial)) => {
                if granule != u64::MAX && streams.iter().any(|s| s.serial == serial) {
                    granules.insert(serial, granule);
                }
                last_end = Some(end);
                offset = end;
            }
            None => offset = start + 1,
        }
    }
    (granules, last_end)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks the page at `start` (capture pattern, version, whole, CRC) and
/// returns its end offset, granule position and serial number.
fn page_at(data: &[u8], start: usize) -> Option<(usize, u64, u32)> {
    let header = data.get(start..start + 27)?;
    if header[4] != 0 {
        return None;
    }
    let segment_count = usize::from(header[26]);
    let segments = data.get(start + 27..start + 27 + segment_count)?;
    let body_len: usize = segments.iter().map(|&s| usize::from(s)).sum();
    let end = start + 27 + segment_count + body_len;
    let page = data.get(start..end)?;
    let stored = u32::from_le_bytes(header[22..26].try_into().ok()?);
    if ogg_crc(page) != stored {
        return None;
    }
    let granule = u64::from_le_bytes(header[6..14].try_into().ok()?);
    let serial = u32::from_le_bytes(header[14..18].try_into().ok()?);
    Some((end, granule, serial))
}

/// Computes the Ogg page checksum: CRC-32 with polynomial 0x04C11DB7, initial value 0,
/// no reflection, computed with the checksum field taken as zero.
fn ogg_crc(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for (index, &byte) in page.iter().enumerate() {
        let byte = if (22..26).contains(&index) { 0 } else { byte };
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn build_info(
    streams: &[Stream],
    granules: &HashMap<u32, u64>,
    len: u64,
    complete: bool,
) -> Result<MediaInfo> {
    let count =
        |kind| u32::try_from(streams.iter().filter(|s| s.kind == kind).count()).unwrap_or(u32::MAX);
    let Some(video) = streams.iter().find(|s| s.kind == Kind::Video) else {
        let codecs: Vec<&str> = streams
            .iter()
            .map(|s| s.codec.unwrap_or("unknown"))
            .collect();
        return Err(Error::new(
            ErrorKind::NoVideo,
            format!(
                "the Ogg file starts no video stream (streams: {})",
                codecs.join(", ")
            ),
        ));
    };
    let audio = streams.iter().find(|s| s.kind == Kind::Audio);
    let duration_s = streams
        .iter()
        .filter_map(|s| s.seconds(*granules.get(&s.serial)?))
        .fold(None, |max: Option<f64>, d| {
            Some(max.map_or(d, |m| m.max(d)))
        })
        .filter(|&d| d > 0.0);

    Ok(MediaInfo {
        container: "ogg".to_owned(),
        format_name: "ogg".to_owned(),
        duration_s,
        width: video.width,
        height: video.height,
        rotation: None,
        frame_rate: video.frame_rate,
        video_codec: video.codec.map(str::to_owned),
        video_profile: None,
        audio_codec: audio.and_then(|a| a.codec).map(str::to_owned),
        audio_channels: audio.and_then(|a| a.channels),
        audio_sample_rate: audio.and_then(|a| a.sample_rate),
        bit_rate: bit_rate(len, duration_s),
        video_streams: count(Kind::Video),
        audio_streams: count(Kind::Audio),
        subtitle_streams: count(Kind::Subtitle),
        complete,
    })
}

#[cfg(test)]
// The builders below write lengths known to fit the byte-sized lacing values.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn page(flags: u8, granule: u64, serial: u32, packet: &[u8]) -> Vec<u8> {
        assert!(packet.len() < 255);
        let mut out = b"OggS\0".to_vec();
        out.push(flags);
        out.extend_from_slice(&granule.to_le_bytes());
        out.extend_from_slice(&serial.to_le_bytes());
        out.extend_from_slice(&[0; 8]); // sequence number, checksum
        out.push(1);
        out.push(packet.len() as u8);
        out.extend_from_slice(packet);
        let crc = ogg_crc(&out);
        out[22..26].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn theora_header(width: u32, height: u32, fps: u32) -> Vec<u8> {
        let mut p = b"\x80theora\x03\x02\x01".to_vec();
        p.extend_from_slice(&[0, 20, 0, 15]); // frame size in macroblocks
        p.extend_from_slice(&width.to_be_bytes()[1..]);
        p.extend_from_slice(&height.to_be_bytes()[1..]);
        p.extend_from_slice(&[0, 0]); // picture offset
        p.extend_from_slice(&fps.to_be_bytes());
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&[0; 6]); // pixel aspect ratio
        p.push(0); // colour space
        p.extend_from_slice(&[0, 0, 0]); // nominal bit rate
        p.extend_from_slice(&[0x00, 0xC0]); // quality, keyframe shift 6
        p
    }

    fn vorbis_header(channels: u8, rate: u32) -> Vec<u8> {
        let mut p = b"\x01vorbis\0\0\0\0".to_vec();
        p.push(channels);
        p.extend_from_slice(&rate.to_le_bytes());
        p.extend_from_slice(&[0; 14]);
        p
    }

    fn sample() -> Vec<u8> {
        let mut data = page(FLAG_BOS, 0, 1, &theora_header(320, 240, 25));
        data.extend(page(FLAG_BOS, 0, 2, &vorbis_header(2, 44100)));
        data.extend(page(0, 0, 1, b"\x81theora comments"));
        // Keyframe 48 plus 2 frames: 50 frames at 25 fps.
        data.extend(page(0, (48 << 6) | 2, 1, b"frame"));
        data.extend(page(0x04, 88200, 2, b"audio"));
        data
    }

    fn probe_bytes(data: Vec<u8>) -> Result<MediaInfo> {
        let len = data.len() as u64;
        let mut reader = Reader::new(Cursor::new(data), len, 1 << 20);
        probe(&mut reader)
    }

    #[test]
    fn vp8_header_gives_size_rate_and_clock() {
        let mut packet = b"OVP80\x01\x01\x00".to_vec();
        packet.extend_from_slice(&[0x01, 0x40, 0x00, 0xB4]); // 320x180
        packet.extend_from_slice(&[0; 6]); // aspect ratio
        packet.extend_from_slice(&30000u32.to_be_bytes());
        packet.extend_from_slice(&1001u32.to_be_bytes());

        let stream = identify(7, &packet, 0).unwrap();

        assert_eq!(stream.kind, Kind::Video);
        assert_eq!(stream.codec, Some("vp8"));
        assert_eq!((stream.width, stream.height), (Some(320), Some(180)));
        assert_eq!(stream.frame_rate, Rational::new(30000, 1001));
        // A VP8 granule keeps the frame count in its upper 32 bits.
        let seconds = stream.seconds(30_000 << 32).unwrap();
        assert!((seconds - 1001.0).abs() < 1e-9, "{seconds}");
    }

    #[test]
    fn audio_headers_give_codec_channels_and_rate() {
        let mut opus = b"OpusHead\x01\x02".to_vec();
        opus.extend_from_slice(&312u16.to_le_bytes()); // pre-skip
        opus.extend_from_slice(&44_100u32.to_le_bytes()); // input rate
        opus.extend_from_slice(&[0, 0, 0]);
        let mut flac = b"\x7FFLAC\x01\x00\x00\x01fLaC\x00\x00\x00\x22".to_vec();
        let mut streaminfo = [0u8; 18];
        // 48 kHz (0x0BB80 in 20 bits), 6 channels (5 in 3 bits), 16 bits.
        streaminfo[10..13].copy_from_slice(&[0x0B, 0xB8, 0x0A]);
        flac.extend_from_slice(&streaminfo);
        let mut speex = b"Speex   ".to_vec();
        speex.resize(36, 0);
        speex.extend_from_slice(&16_000u32.to_le_bytes());
        speex.resize(48, 0);
        speex.extend_from_slice(&1u32.to_le_bytes());
        let cases = [
            (opus, "opus", 2, 48_000),
            (flac, "flac", 6, 48_000),
            (speex, "speex", 1, 16_000),
        ];
        for (packet, codec, channels, rate) in cases {
            let stream = identify(1, &packet, 0).unwrap();

            assert_eq!(stream.kind, Kind::Audio, "{codec}");
            assert_eq!(stream.codec, Some(codec));
            assert_eq!(stream.channels, Some(channels), "{codec}");
            assert_eq!(stream.sample_rate, Some(rate), "{codec}");
        }
    }

    #[test]
    fn other_headers_set_the_kind_only() {
        let cases: [(&[u8], Kind, Option<&str>); 4] = [
            (b"\x80kate\0\0\0rest", Kind::Subtitle, Some("kate")),
            (b"BBCD\0rest", Kind::Video, Some("dirac")),
            (b"\x01video\0\0\0XVID", Kind::Video, None),
            (b"unknown", Kind::Other, None),
        ];
        for (packet, kind, codec) in cases {
            let stream = identify(1, packet, 0).unwrap();

            assert_eq!(stream.kind, kind);
            assert_eq!(stream.codec, codec);
        }
    }

    #[test]
    fn short_codec_header_is_corrupt() {
        let err = identify(1, b"OpusHead\x01", 4096).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("offset 4096"), "{err}");
    }

    #[test]
    fn hand_built_ogg_reads_streams_and_duration() {
        let info = probe_bytes(sample()).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("theora"));
        assert_eq!((info.width, info.height), (Some(320), Some(240)));
        assert_eq!(info.frame_rate, Rational::new(25, 1));
        assert_eq!(info.audio_codec.as_deref(), Some("vorbis"));
        assert_eq!(info.audio_channels, Some(2));
        assert_eq!(info.audio_sample_rate, Some(44100));
        assert_eq!(info.duration_s, Some(2.0));
        assert!(info.complete);
    }

    #[test]
    fn cut_last_page_is_incomplete() {
        let mut data = sample();
        data.truncate(data.len() - 2);
        let info = probe_bytes(data).unwrap();
        assert!(!info.complete);
    }

    #[test]
    fn page_with_bad_crc_is_skipped_in_tail() {
        let mut data = sample();
        let last = data.len() - 1;
        data[last] ^= 0xFF;
        let info = probe_bytes(data).unwrap();
        // The video page still gives 2 s; the damaged audio page is ignored.
        assert_eq!(info.duration_s, Some(2.0));
        assert!(!info.complete);
    }

    #[test]
    fn audio_only_ogg_is_no_video() {
        let mut data = page(FLAG_BOS, 0, 2, &vorbis_header(2, 44100));
        data.extend(page(0x04, 44100, 2, b"audio"));
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoVideo);
        assert!(err.message().contains("vorbis"), "{}", err.message());
    }

    #[test]
    fn short_theora_header_is_corrupt() {
        let data = page(FLAG_BOS, 0, 1, b"\x80theora\x03\x02");
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn file_cut_in_first_page_is_incomplete() {
        let mut data = sample();
        data.truncate(30);
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
    }

    #[test]
    fn page_without_bos_is_corrupt() {
        let err = probe_bytes(page(0, 0, 1, b"data")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn garbage_after_capture_pattern_is_corrupt() {
        let err = probe_bytes(b"OggS\x07garbage garbage garbage garbage".to_vec()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn opus_duration_subtracts_pre_skip() {
        let mut opus = b"OpusHead\x01\x02".to_vec();
        opus.extend_from_slice(&312u16.to_le_bytes());
        opus.extend_from_slice(&[0; 7]);
        let mut stream = identify(7, &opus, 0).unwrap();
        assert_eq!(stream.codec, Some("opus"));
        assert_eq!(stream.seconds(48_312), Some(1.0));
        stream.clock = Clock::None;
        assert_eq!(stream.seconds(48_312), None);
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::super::corpus;
    use super::*;

    #[test]
    fn corpus_ogg_files_match_ffprobe() {
        let known = [];
        let report = corpus::run(&[".ogv", ".ogg", ".oggtheora"], &known, probe);
        if report.is_empty() {
            eprintln!("skipped: no Ogg file with ffprobe JSON in the corpus folders");
            return;
        }
        let failures: Vec<_> = report.iter().filter(|(_, p)| !p.is_empty()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

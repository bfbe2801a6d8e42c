//! MPEG program stream parser (`.mpg`, `.mpeg`, `.vob`), MPEG-1 and MPEG-2.
//!
//! It walks the packs and PES packets of a window at the start of the file.
//! Each stream ID (and, in private stream 1, each DVD sub-stream) is one
//! stream; its codec comes from its first payload: an MPEG-1/2 sequence
//! header or an H.264 SPS for video, an MPEG audio frame header, or the DVD
//! sub-stream number (AC-3, DTS, LPCM, subpictures). The duration is the one
//! ffmpeg 5.1 computes for seekable program streams: the largest
//! presentation time in a window at the end of the file, plus one frame,
//! minus the smallest first presentation time.
//!
//! Byte budget: [`FIRST_HEAD_WINDOW`] bytes from the start, or when a stream
//! is still undescribed after them [`HEAD_WINDOW`] bytes (re-read from the
//! start), plus [`TAIL_WINDOW`] bytes from the end.
//!
//! A file is [`ErrorKind::NoVideo`] when its system header lists no video
//! stream, or when the head window covered the whole file and held no video
//! packet.

use std::collections::HashMap;
use std::io::{Read, Seek};

use super::es::{self, AudioFrame, VideoHeader};
use super::reader::Reader;
use super::{bit_rate, MediaInfo};
use crate::error::{Error, ErrorKind, Result};

/// Bytes read from the start first; the full [`HEAD_WINDOW`] is read only
/// when a stream is still undescribed after them.
const FIRST_HEAD_WINDOW: u64 = 256 * 1024;
const HEAD_WINDOW: u64 = 1024 * 1024;
const TAIL_WINDOW: u64 = 256 * 1024;
/// Bytes of one stream's payload kept to find its codec header.
const ES_BUFFER_LIMIT: usize = 64 * 1024;
/// Bytes a stream's buffer grows by before its headers are searched again.
/// Searching after every packet made the cost quadratic in the packet count:
/// a 1 MiB file of 1-byte packets took 17 s to probe. The search after the
/// walk still sees every byte buffered.
const PARSE_STEP: usize = 2048;
/// PES packets per stream whose presentation time counts for the start time.
const START_PES_COUNT: u32 = 8;
const CLOCK_HZ: u64 = 90_000;
const PTS_WRAP: u64 = 1 << 33;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
    Subtitle,
}

/// A stream ID, plus the sub-stream number inside private stream 1.
type StreamKey = (u8, u8);

#[derive(Debug)]
struct Stream {
    key: StreamKey,
    kind: Kind,
    codec: Option<&'static str>,
    first_pts: Option<u64>,
    pes_seen: u32,
    es: Vec<u8>,
    /// Length of `es` at the last header search.
    searched_len: usize,
    video: Option<VideoHeader>,
    audio: Option<AudioFrame>,
}

impl Stream {
    fn is_described(&self) -> bool {
        let header = match self.kind {
            Kind::Video => self.video.is_some(),
            Kind::Audio => self.audio.is_some() || !matches!(self.codec, Some("mp2" | "ac3")),
            Kind::Subtitle => true,
        };
        header && self.first_pts.is_some()
    }

    fn parse_header(&mut self) {
        match self.kind {
            Kind::Video if self.video.is_none() => {
                self.video =
                    es::find_mpeg12_sequence(&self.es).or_else(|| es::find_h264_sps(&self.es));
                if let Some(video) = &self.video {
                    self.codec = Some(video.codec);
                }
            }
            Kind::Audio if self.audio.is_none() => {
                if let Some(codec) = self.codec {
                    self.audio = es::find_audio_frame(codec, &self.es);
                    if let Some(frame) = self.audio {
                        self.codec = Some(frame.codec);
                    }
                }
            }
            _ => {}
        }
    }

    fn frame_ticks(&self) -> u64 {
        match self.kind {
            Kind::Video => self
                .video
                .as_ref()
                .and_then(|v| v.frame_rate)
                .map_or(0, |r| CLOCK_HZ * u64::from(r.den) / u64::from(r.num)),
            Kind::Audio => self.audio.map_or(0, |a| {
                CLOCK_HZ * u64::from(a.samples) / u64::from(a.sample_rate.max(1))
            }),
            Kind::Subtitle => 0,
        }
    }
}

#[derive(Default)]
struct Demux {
    streams: Vec<Stream>,
    max_pts: HashMap<StreamKey, u64>,
    last_audio: HashMap<StreamKey, (u64, Vec<u8>)>,
    /// Stream IDs the system header declares.
    declared: Option<Vec<u8>>,
    /// Whether the last packet parsed ends exactly at the end of the data.
    ends_whole: bool,
}

/// Reads the container's headers from offset 0 of `reader`.
pub fn probe<R: Read + Seek>(reader: &mut Reader<R>) -> Result<MediaInfo> {
    let len = reader.len();
    let mut window = FIRST_HEAD_WINDOW;
    let (mut demux, head_len, head_end) = loop {
        let mut demux = Demux::default();
        reader.seek_to(0)?;
        let head = reader.read_vec(window.min(len), 1 << 20)?;
        let head_end = demux.walk(&head, true);
        for stream in &mut demux.streams {
            stream.parse_header();
        }
        let covers_file = head.len() as u64 == len;
        let described = !demux.streams.is_empty() && demux.streams.iter().all(Stream::is_described);
        if covers_file || described || window >= HEAD_WINDOW {
            break (demux, head.len(), head_end);
        }
        window = HEAD_WINDOW;
    };
    let covers_file = head_len as u64 == len;
    if demux.streams.is_empty() && covers_file && head_end < head_len {
        return Err(Error::incomplete(format!(
            "the program stream ends inside the packet at offset {head_end}, before any \
             elementary stream packet"
        )));
    }
    if demux.streams.is_empty() && !covers_file {
        return Err(Error::corrupt(format!(
            "no PES packet in the first {head_len} bytes of the program stream"
        )));
    }

    if !covers_file {
        demux.max_pts.clear();
        demux.last_audio.clear();
        let start = len.saturating_sub(TAIL_WINDOW).max(head_end as u64);
        reader.seek_to(start)?;
        let tail = reader.read_vec(len - start, 1 << 20)?;
        demux.walk(&tail, false);
    }
    let complete = demux.ends_whole;
    demux.into_media_info(len, covers_file, complete)
}

impl Demux {
    /// Walks packs and packets in `data`; returns where the walk stopped.
    fn walk(&mut self, data: &[u8], head: bool) -> usize {
        let mut offset = 0;
        self.ends_whole = false;
        while let Some(start) = next_start_code(data, offset) {
            let id = data[start + 3];
            let Some(end) = packet_end(data, start) else {
                // The packet runs past the data: cut short, or a window edge.
                return start;
            };
            if end == start {
                offset = start + 1;
                continue;
            }
            match id {
                0xBB if head && self.declared.is_none() => {
                    self.declared = Some(system_header_ids(&data[start..end]));
                }
                0xBD | 0xC0..=0xEF => self.handle_pes(&data[start..end], head),
                _ => {}
            }
            self.ends_whole = end == data.len();
            offset = end;
        }
        data.len()
    }

    fn handle_pes(&mut self, packet: &[u8], head: bool) {
        let id = packet[3];
        let Some((pts, payload)) = pes_payload(packet) else {
            return;
        };
        let (key, kind, codec, payload) = match id {
            0xE0..=0xEF => ((id, 0), Kind::Video, None, payload),
            0xC0..=0xDF => ((id, 0), Kind::Audio, Some("mp2"), payload),
            _ => {
                let Some(&sub) = payload.first() else {
                    return;
                };
                let (kind, codec, skip) = match sub {
                    0x20..=0x3F => (Kind::Subtitle, "dvd_subtitle", 1),
                    0x80..=0x87 => (Kind::Audio, "ac3", 4),
                    0x88..=0x8F => (Kind::Audio, "dts", 4),
                    0xA0..=0xAF => (Kind::Audio, "pcm_dvd", 7),
                    _ => return,
                };
                (
                    (id, sub),
                    kind,
                    Some(codec),
                    payload.get(skip..).unwrap_or(&[]),
                )
            }
        };
        let index = match self.streams.iter().position(|s| s.key == key) {
            Some(index) => index,
            None if head => {
                self.streams.push(Stream {
                    key,
                    kind,
                    codec,
                    first_pts: None,
                    pes_seen: 0,
                    es: Vec::new(),
                    searched_len: 0,
                    video: None,
                    audio: None,
                });
                self.streams.len() - 1
            }
            None => return,
        };
        let stream = &mut self.streams[index];
        if head && stream.es.len() < ES_BUFFER_LIMIT && !stream.is_described() {
            stream.es.extend_from_slice(payload);
            let first = stream.searched_len == 0;
            if first || stream.es.len() - stream.searched_len >= PARSE_STEP {
                stream.searched_len = stream.es.len();
                stream.parse_header();
            }
        }
        if let Some(pts) = pts {
            if head && stream.pes_seen < START_PES_COUNT {
                stream.first_pts = Some(stream.first_pts.map_or(pts, |first| first.min(pts)));
            }
            stream.pes_seen = stream.pes_seen.saturating_add(1);
            let max = self.max_pts.entry(key).or_insert(pts);
            if (pts + PTS_WRAP - *max) % PTS_WRAP < PTS_WRAP / 2 {
                *max = pts;
            }
            if kind == Kind::Audio {
                self.last_audio.insert(key, (pts, payload.to_vec()));
            }
        } else if let Some((_, last)) = self.last_audio.get_mut(&key) {
            last.extend_from_slice(payload);
        }
    }

    fn duration_s(&self) -> Option<f64> {
        let start = self.streams.iter().filter_map(|s| s.first_pts).min()?;
        let end = self
            .streams
            .iter()
            .filter_map(|stream| {
                let last = *self.max_pts.get(&stream.key)?;
                let mut end = (last + PTS_WRAP - start) % PTS_WRAP + stream.frame_ticks();
                if let (Some((pts, payload)), Some(frame), Some(codec)) =
                    (self.last_audio.get(&stream.key), stream.audio, stream.codec)
                {
                    if let Some(samples) = es::count_audio_samples(codec, payload) {
                        let ticks = CLOCK_HZ * samples / u64::from(frame.sample_rate.max(1));
                        end = end.max((pts + PTS_WRAP - start) % PTS_WRAP + ticks);
                    }
                }
                Some(end)
            })
            .max()?;
        (end > 0).then(|| end as f64 / CLOCK_HZ as f64)
    }

    fn into_media_info(self, len: u64, whole_file_read: bool, complete: bool) -> Result<MediaInfo> {
        let count = |kind| {
            u32::try_from(self.streams.iter().filter(|s| s.kind == kind).count())
                .unwrap_or(u32::MAX)
        };
        let video = self.streams.iter().find(|s| s.kind == Kind::Video);
        let declared_no_video = self
            .declared
            .as_ref()
            .is_some_and(|ids| !ids.is_empty() && !ids.iter().any(|&id| id == 0xB9 || id >= 0xE0));
        if video.is_none() && (whole_file_read || declared_no_video) {
            let codecs: Vec<&str> = self
                .streams
                .iter()
                .map(|s| s.codec.unwrap_or("unknown"))
                .collect();
            return Err(Error::new(
                ErrorKind::NoVideo,
                format!(
                    "the program stream holds no video stream (streams: {})",
                    if codecs.is_empty() {
                        "none".to_owned()
                    } else {
                        codecs.join(", ")
                    }
                ),
            ));
        }
        let audio = self.streams.iter().find(|s| s.kind == Kind::Audio);
        let duration_s = self.duration_s();
        let header = video.and_then(|v| v.video.as_ref());

        Ok(MediaInfo {
            container: "mpeg".to_owned(),
            format_name: "mpeg".to_owned(),
            duration_s,
            width: header.map(|h| h.width),
            height: header.map(|h| h.height),
            rotation: None,
            frame_rate: header.and_then(|h| h.frame_rate),
            video_codec: video.and_then(|v| v.codec).map(str::to_owned),
            video_profile: header.and_then(|h| h.profile).map(str::to_owned),
            audio_codec: audio.and_then(|a| a.codec).map(str::to_owned),
            audio_channels: audio.and_then(|a| a.audio).map(|f| f.channels),
            audio_sample_rate: audio.and_then(|a| a.audio).map(|f| f.sample_rate),
            bit_rate: bit_rate(len, duration_s),
            video_streams: count(Kind::Video),
            audio_streams: count(Kind::Audio),
            subtitle_streams: count(Kind::Subtitle),
            complete,
        })
    }
}

/// Finds the next `00 00 01 xx` with `xx` at least 0xB9 (pack, system and
/// PES start codes) at or after `from`.
fn next_start_code(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 4 <= data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 && data[i + 3] >= 0xB9 {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

/// End offset of the pack or packet at `start`, or `None` when it runs past
/// the end of `data`. Returns `Some(start)` for a header that is not valid.
fn packet_end(data: &[u8], start: usize) -> Option<usize> {
    let id = data[start + 3];
    let end = match id {
        0xB9 => start + 4,
        0xBA => {
            let marker = *data.get(start + 4)?;
            if marker & 0xC0 == 0x40 {
                // MPEG-2 pack header: 14 bytes plus stuffing.
                start + 14 + usize::from(data.get(start + 13)? & 0x07)
            } else if marker & 0xF0 == 0x20 {
                start + 12
            } else {
                return Some(start);
            }
        }
        _ => {
            let length = u16::from_be_bytes([*data.get(start + 4)?, *data.get(start + 5)?]);
            start + 6 + usize::from(length)
        }
    };
    (end <= data.len()).then_some(end)
}

/// Returns the stream IDs a system header lists (bit 7 set marks an entry).
fn system_header_ids(header: &[u8]) -> Vec<u8> {
    header
        .get(12..)
        .unwrap_or(&[])
        .chunks_exact(3)
        .take_while(|entry| entry[0] & 0x80 != 0)
        .map(|entry| entry[0])
        .collect()
}

/// Returns the PTS and payload of a PES packet with an MPEG-2 or MPEG-1 header.
fn pes_payload(packet: &[u8]) -> Option<(Option<u64>, &[u8])> {
    if let Some(header) = es::pes_header_length(packet) {
        return Some((es::pes_pts(packet), packet.get(header..)?));
    }
    // MPEG-1: stuffing bytes, an optional STD buffer field, then the flags.
    let mut offset = 6;
    while packet.get(offset) == Some(&0xFF) {
        offset += 1;
    }
    if packet.get(offset)? & 0xC0 == 0x40 {
        offset += 2;
    }
    let flags = *packet.get(offset)?;
    match flags >> 4 {
        0x2 => Some((
            es::pes_timestamp(packet.get(offset..)?),
            packet.get(offset + 5..)?,
        )),
        0x3 => Some((
            es::pes_timestamp(packet.get(offset..)?),
            packet.get(offset + 10..)?,
        )),
        _ if flags == 0x0F => Some((None, packet.get(offset + 1..)?)),
        _ => None,
    }
}

#[cfg(test)]
// The builders below write lengths known to fit their 16-bit fields.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::super::Rational;
    use super::*;
    use std::io::Cursor;

    fn pack() -> Vec<u8> {
        vec![0, 0, 1, 0xBA, 0x44, 0, 4, 0, 4, 1, 0, 0x03, 0xFF, 0xF8]
    }

    fn pes(stream_id: u8, pts: u64, data: &[u8]) -> Vec<u8> {
        let mut body = vec![0x80, 0x80, 5];
        body.extend_from_slice(&[
            0x21 | ((pts >> 29) & 0x0E) as u8,
            (pts >> 22) as u8,
            0x01 | ((pts >> 14) & 0xFE) as u8,
            (pts >> 7) as u8,
            0x01 | ((pts << 1) & 0xFE) as u8,
        ]);
        body.extend_from_slice(data);
        let mut out = vec![0, 0, 1, stream_id];
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend(body);
        out
    }

    const SEQUENCE: [u8; 22] = [
        0, 0, 1, 0xB3, 0x0A, 0x00, 0x5A, 0x33, 0xFF, 0xFF, 0xE0, 0x18, 0, 0, 1, 0xB5, 0x14, 0x8A,
        0x00, 0x01, 0x00, 0x00,
    ];

    fn mp2_frame() -> Vec<u8> {
        let mut frame = vec![0xFF, 0xFD, 0x44, 0xC0];
        frame.resize(192, 0);
        frame
    }

    fn sample(frames: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in 0..frames {
            out.extend(pack());
            out.extend(pes(0xE0, 3600 + 3600 * frame, &SEQUENCE));
            out.extend(pes(0xC0, 3600 + 2160 * frame, &mp2_frame()));
        }
        out.extend_from_slice(&[0, 0, 1, 0xB9]);
        out
    }

    fn probe_bytes(data: Vec<u8>) -> Result<MediaInfo> {
        let len = data.len() as u64;
        let mut reader = Reader::new(Cursor::new(data), len, 1 << 22);
        probe(&mut reader)
    }

    #[test]
    fn hand_built_program_stream_reads_streams() {
        let info = probe_bytes(sample(10)).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("mpeg2video"));
        assert_eq!((info.width, info.height), (Some(160), Some(90)));
        assert_eq!(info.frame_rate, Rational::new(25, 1));
        assert_eq!(info.video_profile.as_deref(), Some("Main"));
        assert_eq!(info.audio_codec.as_deref(), Some("mp2"));
        assert_eq!(info.audio_sample_rate, Some(48000));
        assert_eq!(info.audio_channels, Some(1));
        // Ten video frames at 25 fps.
        assert!((info.duration_s.unwrap() - 0.4).abs() < 1e-9);
        assert!(info.complete);
    }

    #[test]
    fn headers_split_into_one_byte_packets_are_found() {
        // Each header byte in its own PES packet: the buffered bytes are
        // searched every PARSE_STEP bytes and once more after the walk.
        let mut data = pack();
        for (index, byte) in SEQUENCE.iter().enumerate() {
            data.extend(pes(0xE0, 3600 + index as u64, &[*byte]));
        }
        for (index, byte) in mp2_frame().iter().enumerate() {
            data.extend(pes(0xC0, 3600 + index as u64, &[*byte]));
        }
        data.extend(pes(0xC0, 3600 + 2160, &mp2_frame()));

        let info = probe_bytes(data).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("mpeg2video"));
        assert_eq!((info.width, info.height), (Some(160), Some(90)));
        assert_eq!(info.audio_codec.as_deref(), Some("mp2"));
        assert_eq!(info.audio_sample_rate, Some(48000));
    }

    #[test]
    fn many_tiny_packets_without_a_header_give_no_codec() {
        // A fuzzer found this shape: 1 MiB of 1-byte audio and video PES
        // packets whose bytes never form a header. A header search after
        // every packet made the probe quadratic (17 s in a release build);
        // now the buffers are searched every PARSE_STEP bytes.
        let mut data = pack();
        while data.len() < 1 << 20 {
            data.extend(pes(0xC0, 3600, &[0x55]));
            data.extend(pes(0xE0, 3600, &[0x55]));
        }

        let info = probe_bytes(data).unwrap();

        assert_eq!(info.video_streams, 1);
        assert_eq!(info.video_codec, None);
        assert_eq!(info.width, None);
        assert_eq!(info.audio_sample_rate, None);
    }

    #[test]
    fn cut_packet_is_incomplete() {
        let mut data = sample(4);
        data.truncate(data.len() - 30);
        let info = probe_bytes(data).unwrap();
        assert!(!info.complete);
    }

    #[test]
    fn audio_only_stream_is_no_video() {
        let mut data = pack();
        data.extend(pes(0xC0, 3600, &mp2_frame()));
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoVideo);
        assert!(err.message().contains("mp2"), "{}", err.message());
    }

    #[test]
    fn dvd_private_stream_substreams_are_named() {
        let mut ac3 = vec![0x80, 1, 0, 1];
        ac3.extend_from_slice(&[0x0B, 0x77, 0, 0, 0x0C, 0x40, 0x20, 0x00]);
        let mut data = pack();
        data.extend(pes(0xE0, 3600, &SEQUENCE));
        data.extend(pes(0xBD, 3600, &ac3));
        data.extend(pes(0xBD, 3600, &[0x20, 0, 0]));
        let info = probe_bytes(data).unwrap();
        assert_eq!(info.audio_codec.as_deref(), Some("ac3"));
        assert_eq!(info.subtitle_streams, 1);
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut data = vec![0, 0, 1, 0xBA];
        data.extend((0..2_000_000u32).map(|i| (i % 200 + 2) as u8));
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn oversized_pes_length_is_bounded() {
        let mut data = pack();
        data.extend_from_slice(&[0, 0, 1, 0xE0, 0xFF, 0xFF, 0x80, 0x80, 5]);
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
    }

    #[test]
    fn mpeg1_pes_header_gives_pts() {
        let packet = [0, 0, 1, 0xC0, 0, 8, 0xFF, 0x21, 0, 1, 0, 3, 0xAA, 0xBB];
        let (pts, payload) = pes_payload(&packet).unwrap();
        assert_eq!(pts, Some(1));
        assert_eq!(payload, &[0xAA, 0xBB]);
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::super::corpus;
    use super::*;

    #[test]
    fn corpus_program_streams_match_ffprobe() {
        let known = [];
        let report = corpus::run(&[".mpg", ".mpeg", ".vob"], &known, probe);
        if report.is_empty() {
            eprintln!("skipped: no program stream with ffprobe JSON in the corpus folders");
            return;
        }
        let failures: Vec<_> = report.iter().filter(|(_, p)| !p.is_empty()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

//! RIFF AVI parser, including OpenDML (AVI 2.0) files.
//!
//! It walks the top-level chunks of the first `RIFF AVI ` list up to `movi`,
//! reading only the header list `hdrl`: the main header `avih`, each stream's
//! `strh` and `strf`, and the OpenDML `dmlh` total frame count. Every other
//! chunk (indexes, `JUNK`, `INFO`, the movie data) is skipped by seeking.
//! The duration follows ffmpeg 5.1: each stream without a fixed sample size
//! lasts `length * scale / rate` seconds, scaled down by the share of the
//! first RIFF list that the file holds when it is cut short, and the file
//! lasts as long as its longest stream.
//!
//! The video profile, which no AVI header states, comes from the first video
//! chunk of the movie data (`movi`), as ffprobe takes it from the first frame.
//!
//! Byte budget: 12 bytes per chunk header plus at most [`HEADER_PREFIX`]
//! bytes of each header chunk, and 12 bytes per OpenDML `AVIX` list checked
//! for completeness. The first video chunk costs at most
//! [`FIRST_FRAME_READ`] bytes more, so a probe reads a few kilobytes in all.
//!
//! A file is [`ErrorKind::NoVideo`] when its header list was read whole and
//! none of its stream headers has the type `vids` (or `iavs`, DV).

use std::io::{Read, Seek};

use super::codecs::{fourcc_video_codec, wave_format_codec};
use super::es;
use super::reader::Reader;
use super::{bit_rate, MediaInfo, Rational};
use crate::error::{Error, ErrorKind, Result};

/// Bytes read from the start of `avih`, `strh`, `strf` and `dmlh`; the
/// fields used all sit in the first 56 bytes.
const HEADER_PREFIX: u64 = 64;
/// OpenDML `AVIX` lists followed at most when checking that all fit.
const MAX_RIFF_LISTS: u32 = 4096;
/// Bytes read from the start of the first video chunk. The codec headers
/// that carry the profile (SPS, visual object sequence, JPEG frame header)
/// come first in a keyframe.
/// NOTE: a camera MJPEG frame whose EXIF segment (up to 64 KiB) precedes the
/// frame header gets no profile.
const FIRST_FRAME_READ: u64 = 4096;
/// Chunks walked after the header list before giving up on the first video
/// chunk: `JUNK`, `INFO`, the `movi` list and audio chunks before the video.
const MAX_CHUNKS_TO_FIRST_FRAME: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
    Subtitle,
    Other,
}

#[derive(Debug, Default, Clone)]
struct StreamHeader {
    kind: Option<Kind>,
    scale: u32,
    rate: u32,
    length: u32,
    sample_size: u32,
    codec: Option<&'static str>,
    width: Option<u32>,
    height: Option<u32>,
    channels: Option<u32>,
    sample_rate: Option<u32>,
}

#[derive(Debug, Default)]
struct Header {
    streams: Vec<StreamHeader>,
    /// Total frames from the OpenDML `dmlh` chunk, over all RIFF lists.
    odml_total_frames: Option<u32>,
    /// Main header (`avih`) frame size, used when a stream format omits it.
    main_size: Option<(u32, u32)>,
    /// Offset of the first top-level chunk after the header list.
    after_hdrl: u64,
}

/// Reads the container's headers from offset 0 of `reader`.
pub fn probe<R: Read + Seek>(reader: &mut Reader<R>) -> Result<MediaInfo> {
    let len = reader.len();
    reader.seek_to(0)?;
    let riff: [u8; 12] = reader.read_array()?;
    if &riff[0..4] != b"RIFF" {
        return Err(Error::corrupt("the file does not start with a RIFF chunk"));
    }
    if &riff[8..12] != b"AVI " {
        return Err(Error::corrupt(format!(
            "the first RIFF list has type {:?}, not \"AVI \"; an OpenDML continuation \
             without its first part is not playable",
            String::from_utf8_lossy(&riff[8..12])
        )));
    }
    let riff_end = 8 + u64::from(u32::from_le_bytes([riff[4], riff[5], riff[6], riff[7]]));
    let header = read_header_list(reader, riff_end)?;
    let complete = riff_end <= len && following_lists_fit(reader, riff_end + (riff_end & 1))?;
    let after_hdrl = header.after_hdrl;
    let video_index = header
        .streams
        .iter()
        .position(|s| s.kind == Some(Kind::Video));
    let mut info = header.into_media_info(len, riff_end)?;
    if let (Some(codec), Some(index)) = (info.video_codec.clone(), video_index) {
        let end = riff_end.min(len);
        // A damaged or missing first frame costs the profile, not the probe.
        info.video_profile = read_frame_profile(reader, after_hdrl, end, index, &codec)
            .ok()
            .flatten();
    }

    Ok(MediaInfo { complete, ..info })
}

/// Walks the top-level chunks of the first RIFF list until `hdrl` is read.
fn read_header_list<R: Read + Seek>(reader: &mut Reader<R>, riff_end: u64) -> Result<Header> {
    let mut offset = 12;
    loop {
        if offset + 8 > riff_end {
            return Err(Error::corrupt(format!(
                "the RIFF list ends at offset {riff_end} without a header list (hdrl)"
            )));
        }
        if offset + 8 > reader.len() {
            return Err(Error::incomplete(format!(
                "the file ends at {} bytes before the AVI header list (hdrl)",
                reader.len()
            )));
        }
        reader.seek_to(offset)?;
        let (id, size) = read_chunk_header(reader)?;
        let end = offset + 8 + u64::from(size);
        if &id == b"LIST" {
            let list_type: [u8; 4] = reader.read_array()?;
            match &list_type {
                b"hdrl" => {
                    let mut header = read_hdrl(reader, offset + 12, end)?;
                    header.after_hdrl = end + (end & 1);
                    return Ok(header);
                }
                b"movi" => {
                    return Err(Error::corrupt(format!(
                        "the movie data (movi) at offset {offset} comes before any header \
                         list (hdrl)"
                    )))
                }
                _ => {}
            }
        }
        offset = end + (end & 1);
    }
}

fn read_chunk_header<R: Read + Seek>(reader: &mut Reader<R>) -> Result<([u8; 4], u32)> {
    let id: [u8; 4] = reader.read_array()?;
    let size = reader.read_u32_le()?;
    Ok((id, size))
}

/// Reads the chunks of `hdrl` between `start` and `end`.
fn read_hdrl<R: Read + Seek>(reader: &mut Reader<R>, start: u64, end: u64) -> Result<Header> {
    let mut header = Header::default();
    let mut offset = start;
    while offset + 8 <= end {
        reader.seek_to(offset)?;
        let (id, size) = read_chunk_header(reader)?;
        let chunk_end = offset + 8 + u64::from(size);
        if chunk_end > end {
            return Err(Error::corrupt(format!(
                "chunk {:?} of {size} bytes at offset {offset} runs past the end of its \
                 list at {end}",
                String::from_utf8_lossy(&id)
            )));
        }
        match &id {
            b"avih" => {
                let data = read_prefix(reader, size)?;
                if data.len() >= 40 {
                    header.main_size = Some((le32(&data, 32), le32(&data, 36)));
                }
            }
            b"LIST" => {
                let list_type: [u8; 4] = reader.read_array()?;
                match &list_type {
                    b"strl" => header
                        .streams
                        .push(read_strl(reader, offset + 12, chunk_end)?),
                    b"odml" => {
                        header.odml_total_frames = read_dmlh(reader, offset + 12, chunk_end)?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        offset = chunk_end + (chunk_end & 1);
    }
    Ok(header)
}

fn read_prefix<R: Read + Seek>(reader: &mut Reader<R>, size: u32) -> Result<Vec<u8>> {
    let count = u64::from(size).min(HEADER_PREFIX);
    // `count` is at most HEADER_PREFIX, so the limit always holds.
    reader.read_vec(count, 64)
}

fn le16(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([data[at], data[at + 1]])
}

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Reads one stream list: its `strh` and `strf`.
fn read_strl<R: Read + Seek>(reader: &mut Reader<R>, start: u64, end: u64) -> Result<StreamHeader> {
    let mut stream = StreamHeader::default();
    let mut offset = start;
    let mut format = None;
    while offset + 8 <= end {
        reader.seek_to(offset)?;
        let (id, size) = read_chunk_header(reader)?;
        let chunk_end = offset + 8 + u64::from(size);
        match &id {
            b"strh" => {
                let data = read_prefix(reader, size)?;
                if data.len() < 48 {
                    return Err(Error::corrupt(format!(
                        "stream header (strh) at offset {offset} has {size} bytes, fewer than 48"
                    )));
                }
                stream.kind = Some(match &data[0..4] {
                    b"vids" | b"iavs" | b"ivas" => Kind::Video,
                    b"auds" => Kind::Audio,
                    b"txts" => Kind::Subtitle,
                    _ => Kind::Other,
                });
                stream.scale = le32(&data, 20);
                stream.rate = le32(&data, 24);
                stream.length = le32(&data, 32);
                stream.sample_size = le32(&data, 44);
                if &data[0..4] == b"iavs" || &data[0..4] == b"ivas" {
                    stream.codec = Some("dvvideo");
                }
            }
            b"strf" => format = Some(read_prefix(reader, size)?),
            _ => {}
        }
        offset = chunk_end + (chunk_end & 1);
    }
    if let Some(data) = format {
        read_stream_format(&mut stream, &data);
    }
    Ok(stream)
}

/// Fills codec, size and audio format from a `strf` chunk: a
/// `BITMAPINFOHEADER` for video, a `WAVEFORMATEX` for audio.
fn read_stream_format(stream: &mut StreamHeader, data: &[u8]) {
    match stream.kind {
        Some(Kind::Video) if data.len() >= 20 => {
            let width = le32(data, 4);
            // A negative height marks a top-down bitmap; the size is its magnitude.
            let height = i32::from_le_bytes([data[8], data[9], data[10], data[11]]).unsigned_abs();
            let compression = [data[16], data[17], data[18], data[19]];
            stream.width = Some(width);
            stream.height = Some(height);
            if stream.codec.is_none() {
                stream.codec = if compression == [0; 4] {
                    Some("rawvideo")
                } else {
                    fourcc_video_codec(compression)
                };
            }
        }
        Some(Kind::Audio) if data.len() >= 16 => {
            let mut tag = le16(data, 0);
            let bits = if data.len() >= 16 { le16(data, 14) } else { 0 };
            // WAVE_FORMAT_EXTENSIBLE keeps the real tag in its sub-format GUID.
            if tag == 0xFFFE && data.len() >= 26 {
                tag = le16(data, 24);
            }
            stream.codec = wave_format_codec(tag, bits);
            stream.channels = Some(u32::from(le16(data, 2)));
            stream.sample_rate = Some(le32(data, 4));
        }
        _ => {}
    }
}

/// Finds the first chunk of video stream `index` (`00dc`, `00db`, ...) from
/// `offset` on, inside `movi` and its `rec ` lists, and returns the profile
/// stated at its start.
fn read_frame_profile<R: Read + Seek>(
    reader: &mut Reader<R>,
    mut offset: u64,
    end: u64,
    index: usize,
    codec: &str,
) -> Result<Option<String>> {
    if index > 99 {
        return Ok(None);
    }
    let digits = format!("{index:02}");
    for _ in 0..MAX_CHUNKS_TO_FIRST_FRAME {
        if offset + 12 > end {
            break;
        }
        reader.seek_to(offset)?;
        let (id, size) = read_chunk_header(reader)?;
        if &id == b"LIST" {
            let list_type: [u8; 4] = reader.read_array()?;
            if &list_type == b"movi" || &list_type == b"rec " {
                offset += 12;
                continue;
            }
        } else if id[..2] == *digits.as_bytes() && matches!(&id[2..], b"dc" | b"db") && size > 0 {
            let count = u64::from(size).min(FIRST_FRAME_READ).min(end - offset - 8);
            let limit = usize::try_from(FIRST_FRAME_READ).unwrap_or(usize::MAX);
            let frame = reader.read_vec(count, limit)?;
            return Ok(es::frame_profile(codec, &frame));
        }
        let chunk_end = offset + 8 + u64::from(size);
        offset = chunk_end + (chunk_end & 1);
    }
    Ok(None)
}

fn read_dmlh<R: Read + Seek>(reader: &mut Reader<R>, start: u64, end: u64) -> Result<Option<u32>> {
    let mut offset = start;
    while offset + 8 <= end {
        reader.seek_to(offset)?;
        let (id, size) = read_chunk_header(reader)?;
        if &id == b"dmlh" && size >= 4 {
            return Ok(Some(reader.read_u32_le()?));
        }
        let chunk_end = offset + 8 + u64::from(size);
        offset = chunk_end + (chunk_end & 1);
    }
    Ok(None)
}

/// Checks that the OpenDML `RIFF AVIX` lists after the first one end inside
/// the file. Bytes after the last list that are no RIFF header are ignored,
/// as players ignore them.
fn following_lists_fit<R: Read + Seek>(reader: &mut Reader<R>, mut offset: u64) -> Result<bool> {
    let len = reader.len();
    for _ in 0..MAX_RIFF_LISTS {
        if offset + 12 > len {
            return Ok(true);
        }
        reader.seek_to(offset)?;
        let (id, size) = read_chunk_header(reader)?;
        let list_type: [u8; 4] = reader.read_array()?;
        if &id != b"RIFF" || &list_type != b"AVIX" {
            return Ok(true);
        }
        let end = offset + 8 + u64::from(size);
        if end > len {
            return Ok(false);
        }
        offset = end + (end & 1);
    }
    Ok(true)
}

impl StreamHeader {
    /// Duration in seconds as ffmpeg 5.1 gives it: only streams without a
    /// fixed sample size (video, VBR audio) have one, and a file cut short
    /// scales it by the share of the first RIFF list present.
    fn duration_s(&self, len: u64, riff_end: u64) -> Option<f64> {
        if self.sample_size != 0 || self.rate == 0 || self.scale == 0 {
            return None;
        }
        let mut length = u64::from(self.length);
        if riff_end > len && riff_end > 0 {
            // av_rescale rounds to the nearest integer.
            length = (length * len + riff_end / 2) / riff_end;
        }
        Some(length as f64 * f64::from(self.scale) / f64::from(self.rate))
    }
}

impl Header {
    fn into_media_info(self, len: u64, riff_end: u64) -> Result<MediaInfo> {
        if self.streams.is_empty() {
            return Err(Error::corrupt(
                "the AVI header list (hdrl) declares no stream (strl)",
            ));
        }
        let count = |kind| {
            let n = self.streams.iter().filter(|s| s.kind == Some(kind)).count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        let Some(video_index) = self
            .streams
            .iter()
            .position(|s| s.kind == Some(Kind::Video))
        else {
            let audio: Vec<&str> = self.streams.iter().filter_map(|s| s.codec).collect();
            return Err(Error::new(
                ErrorKind::NoVideo,
                format!(
                    "the AVI header declares {} stream(s) and none is video (codecs: {})",
                    self.streams.len(),
                    if audio.is_empty() {
                        "unknown".to_owned()
                    } else {
                        audio.join(", ")
                    }
                ),
            ));
        };
        let mut streams = self.streams.clone();
        // OpenDML writers count the frames of all RIFF lists in `dmlh`; some
        // leave the stream header at the frames of the first list only.
        if let Some(total) = self.odml_total_frames {
            let video = &mut streams[video_index];
            video.length = video.length.max(total);
        }
        let duration_s = streams
            .iter()
            .filter_map(|s| s.duration_s(len, riff_end))
            .fold(None, |max: Option<f64>, d| {
                Some(max.map_or(d, |m| m.max(d)))
            })
            .filter(|&d| d > 0.0);
        let video = &streams[video_index];
        let audio = streams.iter().find(|s| s.kind == Some(Kind::Audio));
        let (width, height) = match (video.width.zip(video.height), self.main_size) {
            (Some((w, h)), _) | (None, Some((w, h))) => (Some(w), Some(h)),
            (None, None) => (None, None),
        };

        Ok(MediaInfo {
            container: "avi".to_owned(),
            format_name: "avi".to_owned(),
            duration_s,
            width,
            height,
            rotation: None,
            frame_rate: Rational::new(u64::from(video.rate), u64::from(video.scale)),
            video_codec: video.codec.map(str::to_owned),
            video_profile: None,
            audio_codec: audio.and_then(|a| a.codec).map(str::to_owned),
            audio_channels: audio.and_then(|a| a.channels),
            audio_sample_rate: audio.and_then(|a| a.sample_rate),
            bit_rate: bit_rate(len, duration_s),
            video_streams: count(Kind::Video),
            audio_streams: count(Kind::Audio),
            subtitle_streams: count(Kind::Subtitle),
            complete: true,
        })
    }
}

#[cfg(test)]
// The builders below write sizes known to fit the 32-bit RIFF fields, and
// take chunk IDs as byte-string literals.
#[allow(clippy::cast_possible_truncation, clippy::trivially_copy_pass_by_ref)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn chunk(id: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
        out
    }

    fn list(kind: &[u8; 4], children: &[Vec<u8>]) -> Vec<u8> {
        let mut data = kind.to_vec();
        for child in children {
            data.extend_from_slice(child);
        }
        chunk(b"LIST", &data)
    }

    fn strh(kind: &[u8; 4], scale: u32, rate: u32, length: u32, sample_size: u32) -> Vec<u8> {
        let mut data = vec![0u8; 56];
        data[0..4].copy_from_slice(kind);
        data[20..24].copy_from_slice(&scale.to_le_bytes());
        data[24..28].copy_from_slice(&rate.to_le_bytes());
        data[32..36].copy_from_slice(&length.to_le_bytes());
        data[44..48].copy_from_slice(&sample_size.to_le_bytes());
        chunk(b"strh", &data)
    }

    fn bitmap(width: u32, height: i32, fourcc: &[u8; 4]) -> Vec<u8> {
        let mut data = vec![0u8; 40];
        data[0..4].copy_from_slice(&40u32.to_le_bytes());
        data[4..8].copy_from_slice(&width.to_le_bytes());
        data[8..12].copy_from_slice(&height.to_le_bytes());
        data[16..20].copy_from_slice(fourcc);
        chunk(b"strf", &data)
    }

    fn wave(tag: u16, channels: u16, rate: u32) -> Vec<u8> {
        let mut data = vec![0u8; 18];
        data[0..2].copy_from_slice(&tag.to_le_bytes());
        data[2..4].copy_from_slice(&channels.to_le_bytes());
        data[4..8].copy_from_slice(&rate.to_le_bytes());
        data[14..16].copy_from_slice(&16u16.to_le_bytes());
        chunk(b"strf", &data)
    }

    fn avi(hdrl_children: &[Vec<u8>], movi: usize) -> Vec<u8> {
        let mut body = b"AVI ".to_vec();
        body.extend(list(b"hdrl", hdrl_children));
        body.extend(list(b"movi", &[vec![0u8; movi]]));
        chunk(b"RIFF", &body)
    }

    fn sample(movi: usize) -> Vec<u8> {
        avi(
            &[
                chunk(b"avih", &[0u8; 56]),
                list(
                    b"strl",
                    &[strh(b"vids", 1, 25, 50, 0), bitmap(320, -240, b"XVID")],
                ),
                list(
                    b"strl",
                    &[strh(b"auds", 1152, 44100, 80, 0), wave(0x55, 2, 44100)],
                ),
                list(b"odml", &[chunk(b"dmlh", &[0u8; 248])]),
            ],
            movi,
        )
    }

    fn probe_bytes(data: Vec<u8>) -> Result<MediaInfo> {
        let len = data.len() as u64;
        let mut reader = Reader::new(Cursor::new(data), len, 1 << 20);
        probe(&mut reader)
    }

    /// Builds an AVI whose audio stream comes first, so the video chunks are `01dc`.
    fn audio_first_avi(after_hdrl: &[Vec<u8>]) -> Vec<u8> {
        let mut body = b"AVI ".to_vec();
        body.extend(list(
            b"hdrl",
            &[
                chunk(b"avih", &[0u8; 56]),
                list(
                    b"strl",
                    &[strh(b"auds", 1152, 44100, 80, 0), wave(0x55, 2, 44100)],
                ),
                list(
                    b"strl",
                    &[strh(b"vids", 1, 25, 50, 0), bitmap(320, 240, b"XVID")],
                ),
            ],
        ));
        for chunk in after_hdrl {
            body.extend_from_slice(chunk);
        }
        chunk(b"RIFF", &body)
    }

    #[test]
    fn first_video_chunk_gives_the_profile() {
        // Visual object sequence header with profile_and_level 0x01 (Simple).
        let vos = [0, 0, 1, 0xB0, 0x01, 0, 0, 1, 0xB5];
        let file = audio_first_avi(&[
            chunk(b"JUNK", &[0; 6]),
            list(
                b"movi",
                &[
                    chunk(b"00wb", &[0xFF; 5]),
                    list(b"rec ", &[chunk(b"01dc", &[]), chunk(b"01dc", &vos)]),
                ],
            ),
        ]);

        let info = probe_bytes(file).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("mpeg4"));
        assert_eq!(info.video_profile.as_deref(), Some("Simple Profile"));
    }

    #[test]
    fn avi_without_video_chunks_has_no_profile() {
        let audio_only = audio_first_avi(&[list(b"movi", &[chunk(b"00wb", &[0xFF; 5])])]);
        assert_eq!(probe_bytes(audio_only).unwrap().video_profile, None);

        // A chunk header cut off by the end of the file.
        let mut cut = audio_first_avi(&[list(b"movi", &[chunk(b"01dc", &[0; 64])])]);
        cut.truncate(cut.len() - 60);
        assert_eq!(probe_bytes(cut).unwrap().video_profile, None);
    }

    #[test]
    fn header_list_problems_are_named() {
        let movi_first = {
            let mut body = b"AVI ".to_vec();
            body.extend(list(b"movi", &[vec![0u8; 8]]));
            chunk(b"RIFF", &body)
        };
        let no_hdrl = {
            let mut body = b"AVI ".to_vec();
            body.extend(chunk(b"JUNK", &[0; 8]));
            chunk(b"RIFF", &body)
        };
        let mut cut_short = no_hdrl.clone();
        cut_short[4..8].copy_from_slice(&1000u32.to_le_bytes());
        let short_strh = avi(&[list(b"strl", &[chunk(b"strh", &[0; 20])])], 8);
        let no_streams = avi(&[chunk(b"avih", &[0u8; 56])], 8);
        let cases = [
            (
                movi_first,
                ErrorKind::Corrupt,
                "comes before any header list",
            ),
            (no_hdrl, ErrorKind::Corrupt, "without a header list"),
            (
                cut_short,
                ErrorKind::Incomplete,
                "before the AVI header list",
            ),
            (short_strh, ErrorKind::Corrupt, "fewer than 48"),
            (no_streams, ErrorKind::Corrupt, "declares no stream"),
        ];
        for (file, kind, text) in cases {
            let err = probe_bytes(file).unwrap_err();

            assert_eq!(err.kind(), kind, "{err}");
            assert!(err.message().contains(text), "{err}");
        }
    }

    #[test]
    fn dv_raw_and_extensible_streams_are_named() {
        let mut extensible = vec![0u8; 40];
        extensible[0..2].copy_from_slice(&0xFFFEu16.to_le_bytes());
        extensible[2..4].copy_from_slice(&6u16.to_le_bytes());
        extensible[4..8].copy_from_slice(&48_000u32.to_le_bytes());
        extensible[14..16].copy_from_slice(&24u16.to_le_bytes());
        extensible[24..26].copy_from_slice(&1u16.to_le_bytes()); // PCM sub-format
        let file = avi(
            &[
                chunk(b"avih", &[0u8; 56]),
                list(b"strl", &[strh(b"iavs", 1, 25, 50, 0)]),
                list(
                    b"strl",
                    &[strh(b"vids", 1, 25, 50, 0), bitmap(64, 48, &[0; 4])],
                ),
                list(
                    b"strl",
                    &[strh(b"auds", 1, 48_000, 0, 18), chunk(b"strf", &extensible)],
                ),
                list(b"strl", &[strh(b"txts", 1, 1, 0, 0)]),
            ],
            8,
        );

        let info = probe_bytes(file).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("dvvideo"));
        assert_eq!(info.video_streams, 2);
        assert_eq!(info.audio_codec.as_deref(), Some("pcm_s24le"));
        assert_eq!(info.audio_channels, Some(6));
        assert_eq!(info.subtitle_streams, 1);
    }
    #[test]
    fn hand_built_avi_reads_streams() {
        let info = probe_bytes(sample(1000)).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("mpeg4"));
        assert_eq!((info.width, info.height), (Some(320), Some(240)));
        assert_eq!(info.frame_rate, Rational::new(25, 1));
        assert_eq!(info.audio_codec.as_deref(), Some("mp3"));
        assert_eq!(info.audio_channels, Some(2));
        assert_eq!(info.audio_sample_rate, Some(44100));
        // Audio: 80 * 1152 / 44100 s, longer than the video's 2 s.
        let expected = 80.0 * 1152.0 / 44100.0;
        assert!((info.duration_s.unwrap() - expected).abs() < 1e-9);
        assert!(info.complete);
    }

    #[test]
    fn odml_total_frames_extend_video() {
        let mut dmlh = vec![0u8; 248];
        dmlh[0..4].copy_from_slice(&500u32.to_le_bytes());
        let data = avi(
            &[
                list(
                    b"strl",
                    &[strh(b"vids", 1, 25, 50, 0), bitmap(2, 2, b"MJPG")],
                ),
                list(b"odml", &[chunk(b"dmlh", &dmlh)]),
            ],
            10,
        );
        let info = probe_bytes(data).unwrap();
        assert_eq!(info.duration_s, Some(20.0));
    }

    #[test]
    fn cut_file_scales_duration_and_is_incomplete() {
        let mut data = sample(100_000);
        let full = data.len();
        data.truncate(full / 2);
        let info = probe_bytes(data).unwrap();
        assert!(!info.complete);
        assert!(info.duration_s.unwrap() < 1.2, "{:?}", info.duration_s);
    }

    #[test]
    fn file_cut_inside_header_is_incomplete() {
        let mut data = sample(10);
        data.truncate(100);
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
    }

    #[test]
    fn audio_only_avi_is_no_video() {
        let data = avi(
            &[list(
                b"strl",
                &[strh(b"auds", 1, 8000, 8000, 2), wave(1, 1, 8000)],
            )],
            4,
        );
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoVideo);
        assert!(err.message().contains("pcm_s16le"), "{}", err.message());
    }

    #[test]
    fn oversized_chunk_in_header_is_corrupt() {
        let mut data = sample(10);
        // The avih size field sits after RIFF(12) + LIST header(12) + "avih".
        data[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("avih"), "{}", err.message());
    }

    #[test]
    fn movi_before_header_is_corrupt() {
        let mut body = b"AVI ".to_vec();
        body.extend(list(b"movi", &[vec![0u8; 8]]));
        let err = probe_bytes(chunk(b"RIFF", &body)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn garbage_riff_type_is_corrupt() {
        let err = probe_bytes(b"RIFF\x04\0\0\0AVIXjunkjunk".to_vec()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn truncated_avix_list_is_incomplete() {
        let mut data = sample(10);
        data.extend(chunk(b"RIFF", &[b"AVIX".as_slice(), &[0u8; 100]].concat()));
        data.truncate(data.len() - 50);
        let info = probe_bytes(data).unwrap();
        assert!(!info.complete);
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::super::corpus;
    use super::*;

    #[test]
    fn corpus_avi_files_match_ffprobe() {
        let known = [];
        let report = corpus::run(&[".avi"], &known, probe);
        if report.is_empty() {
            eprintln!("skipped: no AVI file with ffprobe JSON in the corpus folders");
            return;
        }
        let failures: Vec<_> = report.iter().filter(|(_, p)| !p.is_empty()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

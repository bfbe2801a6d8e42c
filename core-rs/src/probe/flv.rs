//! Flash Video (FLV) parser.
//!
//! It reads the file header, then the first tags: the `onMetaData` script tag
//! (AMF0) for the duration, frame rate and fallback picture size, and the
//! first audio and video tags for the codecs. The picture size comes from
//! the codec data where it is cheap to read: the H.264 sequence header's SPS,
//! the Sorenson H.263 picture header, and the VP6 frame header. When the
//! metadata has no duration, the duration is the timestamp of the last tag,
//! which the last `PreviousTagSize` field points to, as in ffmpeg 5.1.
//!
//! Byte budget: 11 bytes per tag header for at most [`MAX_TAGS`] tags, up to
//! [`SCRIPT_LIMIT`] bytes of the script tag, [`CODEC_PREFIX`] bytes of each
//! first audio and video tag, and the last tag's 15 bytes.
//!
//! A file is [`ErrorKind::NoVideo`] when its first tags hold no video tag and
//! either its header's video flag is clear or every tag of the file was read.

use std::io::{Read, Seek};

use super::codecs::parse_audio_specific_config;
use super::es::{self, BitReader};
use super::reader::Reader;
use super::{bit_rate, MediaInfo, Rational};
use crate::error::{Error, ErrorKind, Result};

/// Tags read at most while looking for the first audio and video tags.
const MAX_TAGS: u32 = 256;
/// Bytes of the script tag read at most; long files carry large keyframe
/// tables after the fields used here.
const SCRIPT_LIMIT: u64 = 1024 * 1024;
/// Bytes read of an audio or video tag to find its codec data.
const CODEC_PREFIX: u64 = 64 * 1024;
/// Nesting depth of AMF0 values parsed at most.
const MAX_AMF_DEPTH: u32 = 16;

const TAG_AUDIO: u8 = 8;
const TAG_VIDEO: u8 = 9;
const TAG_SCRIPT: u8 = 18;

#[derive(Debug, Default)]
struct Metadata {
    duration: Option<f64>,
    frame_rate: Option<f64>,
    width: Option<f64>,
    height: Option<f64>,
    video_codec_id: Option<f64>,
}

#[derive(Debug, Default)]
struct VideoInfo {
    codec: Option<&'static str>,
    width: Option<u32>,
    height: Option<u32>,
    profile: Option<&'static str>,
    /// Whether the size comes from codec data, not from a guess.
    complete: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct AudioInfo {
    codec: Option<&'static str>,
    channels: Option<u32>,
    sample_rate: Option<u32>,
    /// Whether the format comes from codec data (AAC config, MP3 header).
    complete: bool,
}

#[derive(Debug, Default)]
struct Scan {
    metadata: Metadata,
    video: Option<VideoInfo>,
    audio: Option<AudioInfo>,
    /// Whether the tags read end exactly at the end of the file.
    read_all_tags: bool,
    /// Offset of a tag that runs past the end of the file.
    cut_tag: Option<u64>,
}

/// Reads the container's headers from offset 0 of `reader`.
pub fn probe<R: Read + Seek>(reader: &mut Reader<R>) -> Result<MediaInfo> {
    reader.seek_to(0)?;
    let header: [u8; 9] = reader.read_array()?;
    if &header[0..3] != b"FLV" {
        return Err(Error::corrupt(
            "the file does not start with the FLV signature",
        ));
    }
    let has_video_flag = header[4] & 0x01 != 0;
    let data_offset = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    if data_offset < 9 {
        return Err(Error::corrupt(format!(
            "the FLV header states a data offset of {data_offset}, inside the 9-byte header"
        )));
    }
    let scan = scan_tags(reader, u64::from(data_offset) + 4)?;
    let (last_timestamp, complete) = read_last_tag(reader)?;
    build_info(scan, has_video_flag, last_timestamp, complete, reader.len())
}

fn scan_tags<R: Read + Seek>(reader: &mut Reader<R>, first_tag: u64) -> Result<Scan> {
    let len = reader.len();
    let mut scan = Scan::default();
    let mut offset = first_tag;
    let mut unknown = 0;
    for _ in 0..MAX_TAGS {
        if offset >= len {
            scan.read_all_tags = offset == len;
            break;
        }
        if offset + 11 > len {
            scan.cut_tag = Some(offset);
            break;
        }
        reader.seek_to(offset)?;
        let tag: [u8; 11] = reader.read_array()?;
        let size = u64::from(u32::from_be_bytes([0, tag[1], tag[2], tag[3]]));
        if offset + 11 + size > len {
            scan.cut_tag = Some(offset);
        }
        // A tag cut short is read as far as the file goes.
        let available = size.min(len - offset - 11);
        // Bit 5 marks an encrypted (filtered) tag; the type is in the low bits.
        match tag[0] & 0x1F {
            TAG_SCRIPT if scan.metadata.duration.is_none() => {
                let data = reader.read_vec(available.min(SCRIPT_LIMIT), 1 << 20)?;
                read_script(&data, &mut scan.metadata);
            }
            TAG_VIDEO if scan.video.as_ref().is_none_or(|v| !v.complete) && available > 0 => {
                let data = reader.read_vec(available.min(CODEC_PREFIX), 1 << 16)?;
                scan.video = Some(read_video(&data));
            }
            TAG_AUDIO if scan.audio.is_none_or(|a| !a.complete) && available > 0 => {
                let data = reader.read_vec(available.min(CODEC_PREFIX), 1 << 16)?;
                scan.audio = Some(read_audio(&data));
            }
            TAG_SCRIPT | TAG_VIDEO | TAG_AUDIO => {}
            other => {
                unknown += 1;
                if unknown >= 3 && scan.video.is_none() && scan.audio.is_none() {
                    return Err(Error::corrupt(format!(
                        "the first FLV tags have unknown types (last: {other} at offset {offset})"
                    )));
                }
            }
        }
        offset += 11 + size + 4;
        let video_done = scan.video.as_ref().is_some_and(|v| v.complete);
        let audio_done = scan.audio.is_some_and(|a| a.complete);
        if video_done && audio_done {
            break;
        }
    }
    Ok(scan)
}

/// Reads the last tag through the final `PreviousTagSize`; returns its
/// timestamp in milliseconds and whether it ends exactly at the end of the file.
fn read_last_tag<R: Read + Seek>(reader: &mut Reader<R>) -> Result<(Option<u32>, bool)> {
    let len = reader.len();
    if len < 13 + 15 {
        return Ok((None, false));
    }
    reader.seek_to(len - 4)?;
    let size = u64::from(reader.read_u32_be()?);
    if size < 11 || size + 4 > len - 13 {
        return Ok((None, false));
    }
    reader.seek_to(len - 4 - size)?;
    let tag: [u8; 8] = reader.read_array()?;
    let data_size = u64::from(u32::from_be_bytes([0, tag[1], tag[2], tag[3]]));
    if data_size + 11 != size || !matches!(tag[0] & 0x1F, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT) {
        return Ok((None, false));
    }
    let timestamp = u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]);
    Ok((Some(timestamp), true))
}

fn read_video(data: &[u8]) -> VideoInfo {
    let codec_id = data[0] & 0x0F;
    let mut info = VideoInfo {
        codec: match codec_id {
            2 => Some("flv1"),
            3 => Some("flashsv"),
            4 => Some("vp6f"),
            5 => Some("vp6a"),
            6 => Some("flashsv2"),
            7 => Some("h264"),
            _ => None,
        },
        ..VideoInfo::default()
    };
    let body = &data[1..];
    let size = match codec_id {
        2 => sorenson_size(body),
        4 => vp6_size(body, 0),
        5 => vp6_size(body, 3),
        7 => {
            // Only the AVC sequence header (packet type 0) carries the SPS;
            // later tags leave the info incomplete so scanning goes on.
            if body.first() == Some(&0) {
                let header = avc_config_sps(body.get(4..).unwrap_or(&[]));
                info.profile = header.as_ref().and_then(|h| h.profile);
                header.map(|h| (h.width, h.height))
            } else {
                None
            }
        }
        _ => None,
    };
    if let Some((width, height)) = size {
        info.width = Some(width);
        info.height = Some(height);
        info.complete = true;
    }
    if !matches!(codec_id, 2 | 4 | 5 | 7) {
        info.complete = true;
    }
    info
}

/// Parses the SPS of an `AVCDecoderConfigurationRecord`.
fn avc_config_sps(record: &[u8]) -> Option<es::VideoHeader> {
    let sps_count = record.get(5)? & 0x1F;
    if sps_count == 0 {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([*record.get(6)?, *record.get(7)?]));
    let nal = record.get(8..8 + length)?;
    es::parse_h264_sps(nal.get(1..)?)
}

/// Reads the picture size in a Sorenson H.263 picture header.
fn sorenson_size(data: &[u8]) -> Option<(u32, u32)> {
    let mut bits = BitReader::new(data);
    if bits.bits(17)? != 1 {
        return None;
    }
    bits.skip(5 + 8)?; // version, temporal reference
    match bits.bits(3)? {
        0 => Some((bits.bits(8)?, bits.bits(8)?)),
        1 => Some((bits.bits(16)?, bits.bits(16)?)),
        2 => Some((352, 288)),
        3 => Some((176, 144)),
        4 => Some((128, 96)),
        5 => Some((320, 240)),
        6 => Some((160, 120)),
        _ => None,
    }
}

/// Reads the picture size of a VP6 keyframe: FLV stores a byte of size
/// adjustments first, and VP6 with alpha `alpha_skip` bytes of alpha offset.
fn vp6_size(data: &[u8], alpha_skip: usize) -> Option<(u32, u32)> {
    let adjust = *data.first()?;
    let frame = data.get(1 + alpha_skip..)?;
    // Only keyframes (top bit clear) carry the size.
    if frame.first()? & 0x80 != 0 {
        return None;
    }
    let separated_coefficients = frame[0] & 0x01 != 0;
    let filter_header = frame.get(1)? & 0x06;
    let fields = if separated_coefficients || filter_header == 0 {
        frame.get(2..)?
    } else {
        frame
    };
    let rows = u32::from(*fields.get(2)?);
    let columns = u32::from(*fields.get(3)?);
    let width = (columns * 16).checked_sub(u32::from(adjust >> 4))?;
    let height = (rows * 16).checked_sub(u32::from(adjust & 0x0F))?;
    (width > 0 && height > 0).then_some((width, height))
}

fn read_audio(data: &[u8]) -> AudioInfo {
    let flags = data[0];
    let format = flags >> 4;
    let rate = [5512, 11025, 22050, 44100][usize::from((flags >> 2) & 0x03)];
    let sixteen_bit = flags & 0x02 != 0;
    let channels = if flags & 0x01 != 0 { 2 } else { 1 };
    let mut info = AudioInfo {
        codec: match format {
            0 | 3 if !sixteen_bit => Some("pcm_u8"),
            0 | 3 => Some("pcm_s16le"),
            1 => Some("adpcm_swf"),
            2 | 14 => Some("mp3"),
            4..=6 => Some("nellymoser"),
            7 => Some("pcm_alaw"),
            8 => Some("pcm_mulaw"),
            10 => Some("aac"),
            11 => Some("speex"),
            _ => None,
        },
        channels: Some(channels),
        sample_rate: Some(match format {
            4 | 11 => 16000,
            5 | 14 => 8000,
            _ => rate,
        }),
        complete: true,
    };
    match format {
        10 => {
            // Only the AAC sequence header (packet type 0) carries the config.
            let config = (data.get(1) == Some(&0))
                .then(|| parse_audio_specific_config(data.get(2..)?))
                .flatten();
            info.complete = config.is_some();
            if let Some(config) = config {
                info.sample_rate = Some(config.sample_rate);
                if config.channels > 0 {
                    info.channels = Some(config.channels);
                }
            }
        }
        2 | 14 => {
            if let Some(frame) = es::parse_mpeg_audio(data.get(1..).unwrap_or(&[])) {
                info.sample_rate = Some(frame.sample_rate);
                info.channels = Some(frame.channels);
            }
        }
        _ => {}
    }
    info
}

/// Reads the `onMetaData` fields used here from a script tag's AMF0 data.
fn read_script(data: &[u8], metadata: &mut Metadata) {
    let mut amf = Amf { data, offset: 0 };
    let Some(AmfValue::String(name)) = amf.value(0) else {
        return;
    };
    if name != b"onMetaData" {
        return;
    }
    let _ = amf.properties_into(metadata);
}

enum AmfValue<'a> {
    Number(f64),
    String(&'a [u8]),
    Other,
}

/// A cursor over AMF0 data; every read returns `None` past the end.
struct Amf<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> Amf<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let bytes = self
            .data
            .get(self.offset..self.offset.checked_add(count)?)?;
        self.offset += count;
        Some(bytes)
    }

    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads the top-level ECMA array or object and keeps the known fields.
    fn properties_into(&mut self, metadata: &mut Metadata) -> Option<()> {
        match self.take(1)?[0] {
            0x08 => {
                self.u32()?; // approximate count; the end marker ends the list
            }
            0x03 => {}
            _ => return None,
        }
        loop {
            let key_length = self.u16()?;
            let key = self.take(key_length)?;
            if key.is_empty() && self.data.get(self.offset) == Some(&0x09) {
                return Some(());
            }
            let AmfValue::Number(number) = self.value(1)? else {
                continue;
            };
            let number = Some(number).filter(|n| n.is_finite() && *n > 0.0);
            match key {
                b"duration" => metadata.duration = number,
                b"framerate" => metadata.frame_rate = number,
                b"width" => metadata.width = number,
                b"height" => metadata.height = number,
                b"videocodecid" => metadata.video_codec_id = number,
                _ => {}
            }
        }
    }

    /// Reads one AMF0 value, skipping the contents of nested ones.
    fn value(&mut self, depth: u32) -> Option<AmfValue<'a>> {
        if depth > MAX_AMF_DEPTH {
            return None;
        }
        let marker = self.take(1)?[0];
        Some(match marker {
            0x00 => {
                let b = self.take(8)?;
                AmfValue::Number(f64::from_be_bytes(b.try_into().ok()?))
            }
            0x01 => {
                self.take(1)?;
                AmfValue::Other
            }
            0x02 => {
                let length = self.u16()?;
                AmfValue::String(self.take(length)?)
            }
            0x03 | 0x08 => {
                if marker == 0x08 {
                    self.u32()?;
                }
                loop {
                    let key_length = self.u16()?;
                    self.take(key_length)?;
                    if key_length == 0 && self.data.get(self.offset) == Some(&0x09) {
                        self.take(1)?;
                        break;
                    }
                    self.value(depth + 1)?;
                }
                AmfValue::Other
            }
            0x0A => {
                let count = self.u32()?;
                for _ in 0..count {
                    self.value(depth + 1)?;
                }
                AmfValue::Other
            }
            0x0B => {
                self.take(10)?;
                AmfValue::Other
            }
            0x0C => {
                let length = usize::try_from(self.u32()?).ok()?;
                self.take(length)?;
                AmfValue::Other
            }
            0x05 | 0x06 => AmfValue::Other,
            _ => return None,
        })
    }
}

/// ffmpeg's `av_d2q(value, 1000)`: the closest fraction with both parts at
/// most 1000, which is how ffmpeg turns the metadata frame rate into a rational.
fn frame_rate_from_f64(value: f64) -> Option<Rational> {
    if !(value.is_finite() && value > 0.0 && value < 1e6) {
        return None;
    }
    // Scale to a large integer fraction first, as av_d2q does.
    let exponent = value.log2().floor().max(0.0);
    let denominator = 2f64.powf(61.0 - exponent);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (num, den) = (
        (value * denominator + 0.5).floor() as u64,
        denominator as u64,
    );
    Rational::approximate(num, den, 1000)
}

fn build_info(
    scan: Scan,
    has_video_flag: bool,
    last_timestamp: Option<u32>,
    complete: bool,
    len: u64,
) -> Result<MediaInfo> {
    let Scan {
        metadata,
        video,
        audio,
        read_all_tags,
        cut_tag,
    } = scan;
    if let (None, Some(offset)) = (&video, cut_tag) {
        return Err(Error::incomplete(format!(
            "the FLV file ends inside the tag at offset {offset}, before any video tag"
        )));
    }
    if video.is_none() && metadata.video_codec_id.is_none() && (!has_video_flag || read_all_tags) {
        return Err(Error::new(
            ErrorKind::NoVideo,
            format!(
                "the FLV file has no video tag in its first tags (audio: {})",
                audio.and_then(|a| a.codec).unwrap_or("none")
            ),
        ));
    }
    let duration_s = metadata.duration.or_else(|| {
        last_timestamp
            .filter(|&t| t > 0)
            .map(|t| f64::from(t) / 1000.0)
    });
    let video = video.unwrap_or_default();
    let from_metadata = |value: Option<f64>| {
        // Sizes in the metadata are whole numbers of pixels.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        value.filter(|v| *v < 65536.0).map(|v| v as u32)
    };

    Ok(MediaInfo {
        container: "flv".to_owned(),
        format_name: "flv".to_owned(),
        duration_s,
        width: video.width.or_else(|| from_metadata(metadata.width)),
        height: video.height.or_else(|| from_metadata(metadata.height)),
        rotation: None,
        frame_rate: metadata.frame_rate.and_then(frame_rate_from_f64),
        video_codec: video.codec.map(str::to_owned),
        video_profile: video.profile.map(str::to_owned),
        audio_codec: audio.and_then(|a| a.codec).map(str::to_owned),
        audio_channels: audio.and_then(|a| a.channels),
        audio_sample_rate: audio.and_then(|a| a.sample_rate),
        bit_rate: bit_rate(len, duration_s),
        video_streams: 1,
        audio_streams: u32::from(audio.is_some()),
        subtitle_streams: 0,
        complete,
    })
}

#[cfg(test)]
// The builders below write sizes known to fit the 24-bit tag size field.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn tag(kind: u8, timestamp: u32, data: &[u8]) -> Vec<u8> {
        let size = data.len() as u32;
        let mut out = vec![kind];
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&timestamp.to_be_bytes()[1..]);
        out.push((timestamp >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(data);
        out.extend_from_slice(&(size + 11).to_be_bytes());
        out
    }

    fn amf_number(key: &str, value: f64) -> Vec<u8> {
        let mut out = (key.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(key.as_bytes());
        out.push(0);
        out.extend_from_slice(&value.to_be_bytes());
        out
    }

    fn metadata(fields: &[(&str, f64)]) -> Vec<u8> {
        let mut out = vec![0x02, 0, 10];
        out.extend_from_slice(b"onMetaData");
        out.push(0x08);
        out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
        // A nested object and a strict array, which the parser must skip.
        out.extend_from_slice(&[0, 4, b'k', b'e', b'y', b's', 0x03, 0, 1, b'a', 0x0A]);
        out.extend_from_slice(&[0, 0, 0, 1, 0x00]);
        out.extend_from_slice(&1.0f64.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0x09]);
        for (key, value) in fields {
            out.extend(amf_number(key, *value));
        }
        out.extend_from_slice(&[0, 0, 0x09]);
        out
    }

    fn sample() -> Vec<u8> {
        let mut data = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
        data.extend(tag(
            18,
            0,
            &metadata(&[("duration", 2.5), ("framerate", 29.97)]),
        ));
        // Sorenson H.263 keyframe, 160x90 (8-bit custom size).
        data.extend(tag(9, 0, &[0x12, 0x00, 0x00, 0x84, 0x00, 0x50, 0x2D, 0x12]));
        // MP3 frame header: MPEG-1 layer 3, 44.1 kHz, mono.
        data.extend(tag(8, 0, &[0x2E, 0xFF, 0xFB, 0x50, 0xC4]));
        data.extend(tag(9, 2480, &[0x22, 0, 0]));
        data
    }

    fn probe_bytes(data: Vec<u8>) -> Result<MediaInfo> {
        let len = data.len() as u64;
        let mut reader = Reader::new(Cursor::new(data), len, 1 << 20);
        probe(&mut reader)
    }

    #[test]
    fn video_tags_give_codec_and_size() {
        // VP6 keyframe: size adjustment byte 0x00, then 9 rows and 10 columns.
        let vp6 = read_video(&[0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 9, 10]);
        assert_eq!(vp6.codec, Some("vp6f"));
        assert_eq!((vp6.width, vp6.height), (Some(160), Some(144)));
        // VP6 with alpha skips 3 bytes of alpha offset first.
        let vp6a = read_video(&[0x15, 0x00, 0, 0, 0, 0x00, 0x00, 0x00, 0x00, 9, 10]);
        assert_eq!(vp6a.codec, Some("vp6a"));
        assert_eq!(vp6a.width, Some(160));
        // An interframe carries no size, and neither does an AVC NAL unit tag.
        assert_eq!(read_video(&[0x24, 0x00, 0x80, 0, 0, 0]).width, None);
        assert!(!read_video(&[0x17, 0x01, 0, 0, 0]).complete);
        for (codec_id, codec) in [(3, "flashsv"), (6, "flashsv2")] {
            let info = read_video(&[0x10 | codec_id, 0]);
            assert_eq!(info.codec, Some(codec));
            assert!(info.complete);
        }
        // Sorenson picture sizes from the 3-bit size code.
        for (code, size) in [
            (2u8, (352, 288)),
            (3, (176, 144)),
            (4, (128, 96)),
            (5, (320, 240)),
            (6, (160, 120)),
        ] {
            // 17-bit start code 1, 5-bit version, 8-bit reference, then the
            // 3-bit code in bits 30 to 32.
            let header = [0x00, 0x00, 0x80, code >> 1, (code & 1) << 7];
            assert_eq!(sorenson_size(&header), Some(size), "{code}");
        }
        assert_eq!(sorenson_size(&[0xFF, 0, 0, 0, 0]), None);
    }

    #[test]
    fn audio_tags_give_codec_rate_and_channels() {
        let cases = [
            (0x00, "pcm_u8", 5512, 1),
            (0x0F, "pcm_s16le", 44100, 2),
            (0x19, "adpcm_swf", 22050, 2),
            (0x4C, "nellymoser", 16000, 1),
            (0x5C, "nellymoser", 8000, 1),
            (0x70, "pcm_alaw", 5512, 1),
            (0x80, "pcm_mulaw", 5512, 1),
            (0xB2, "speex", 16000, 1),
            (0xE3, "mp3", 8000, 2),
        ];
        for (flags, codec, rate, channels) in cases {
            let info = read_audio(&[flags, 0]);

            assert_eq!(info.codec, Some(codec), "{flags:#x}");
            assert_eq!(info.sample_rate, Some(rate), "{flags:#x}");
            assert_eq!(info.channels, Some(channels), "{flags:#x}");
        }
        // An AAC raw frame (packet type 1) does not complete the audio info.
        assert!(!read_audio(&[0xAF, 0x01, 0x12, 0x10]).complete);
    }

    /// Reads `body` as an `onMetaData` object and returns what it kept.
    fn read_properties(body: &[u8]) -> (Option<()>, Metadata) {
        let mut metadata = Metadata::default();
        let mut amf = Amf {
            data: body,
            offset: 0,
        };
        let result = amf.properties_into(&mut metadata);
        (result, metadata)
    }

    #[test]
    fn amf_values_of_every_type_are_skipped() {
        let mut body = vec![0x03];
        let values: [&[u8]; 8] = [
            &[0x01, 1],                            // boolean
            &[0x02, 0, 2, b'h', b'i'],             // string
            &[0x08, 0, 0, 0, 1, 0, 0, 0x09],       // empty ECMA array
            &[0x0A, 0, 0, 0, 2, 0x05, 0x06],       // strict array of null and undefined
            &[0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // date
            &[0x0C, 0, 0, 0, 3, b'a', b'b', b'c'], // long string
            &[0x05],                               // null
            &[0x06],                               // undefined
        ];
        for value in values {
            body.extend_from_slice(&[0, 1, b'x']);
            body.extend_from_slice(value);
        }
        body.extend(amf_number("width", 640.0));
        body.extend(amf_number("height", 360.0));
        body.extend(amf_number("videocodecid", 7.0));
        body.extend_from_slice(&[0, 0, 0x09]);

        let (result, metadata) = read_properties(&body);

        assert_eq!(result, Some(()));
        assert_eq!(metadata.width, Some(640.0));
        assert_eq!(metadata.height, Some(360.0));
        assert_eq!(metadata.video_codec_id, Some(7.0));
    }

    #[test]
    fn amf_unknown_marker_or_deep_nesting_stops_the_read() {
        let unknown = [0x03, 0, 1, b'x', 0x42];
        let (result, _) = read_properties(&unknown);
        assert_eq!(result, None);

        let mut deep = vec![0x03];
        for _ in 0..=MAX_AMF_DEPTH {
            deep.extend_from_slice(&[0, 1, b'x', 0x03]);
        }
        let (result, _) = read_properties(&deep);
        assert_eq!(result, None);

        let (result, _) = read_properties(&[0x02, 0, 0]);
        assert_eq!(result, None);
    }

    #[test]
    fn hand_built_flv_reads_tags_and_metadata() {
        let info = probe_bytes(sample()).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("flv1"));
        assert_eq!((info.width, info.height), (Some(160), Some(90)));
        assert_eq!(info.audio_codec.as_deref(), Some("mp3"));
        assert_eq!(info.audio_channels, Some(1));
        assert_eq!(info.audio_sample_rate, Some(44100));
        assert_eq!(info.duration_s, Some(2.5));
        assert_eq!(info.frame_rate, Rational::new(989, 33));
        assert!(info.complete);
    }

    #[test]
    fn missing_metadata_duration_uses_last_tag() {
        let mut data = b"FLV\x01\x01\0\0\0\x09\0\0\0\0".to_vec();
        data.extend(tag(9, 0, &[0x12, 0x00, 0x00, 0x84, 0x00, 0x50, 0x2D, 0x12]));
        data.extend(tag(9, 1960, &[0x22, 0, 0]));
        let info = probe_bytes(data).unwrap();
        assert_eq!(info.duration_s, Some(1.96));
    }

    #[test]
    fn cut_last_tag_is_incomplete() {
        let mut data = sample();
        data.truncate(data.len() - 3);
        let info = probe_bytes(data).unwrap();
        assert!(!info.complete);
        assert_eq!(info.duration_s, Some(2.5));
    }

    #[test]
    fn audio_only_flv_is_no_video() {
        let mut data = b"FLV\x01\x04\0\0\0\x09\0\0\0\0".to_vec();
        data.extend(tag(8, 0, &[0x2E, 0xFF, 0xFB, 0x50, 0xC4]));
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoVideo);
        assert!(err.message().contains("mp3"), "{}", err.message());
    }

    #[test]
    fn short_header_is_incomplete() {
        let err = probe_bytes(b"FLV\x01\x05\0".to_vec()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
    }

    #[test]
    fn bad_data_offset_is_corrupt() {
        let err = probe_bytes(b"FLV\x01\x05\0\0\0\x02\0\0\0\0".to_vec()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn garbage_tags_are_corrupt() {
        let mut data = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
        for _ in 0..3 {
            data.extend(tag(0x1F, 0, &[1, 2, 3]));
        }
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn oversized_tag_size_is_not_allocated() {
        let mut data = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
        data.extend_from_slice(&[18, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 2, 0]);
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
    }

    #[test]
    fn deep_amf_nesting_stops() {
        let mut data = vec![0x02, 0, 10];
        data.extend_from_slice(b"onMetaData");
        data.extend(std::iter::repeat_n(0x0Au8, 1).chain([0, 0, 0, 1]));
        for _ in 0..100 {
            data.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        let mut metadata = Metadata::default();
        read_script(&data, &mut metadata);
        assert_eq!(metadata.duration, None);
    }

    #[test]
    fn vp6_keyframe_gives_size() {
        // Adjustment 0, keyframe, filter header set, 6 rows by 10 columns.
        assert_eq!(vp6_size(&[0x00, 0x46, 0x06, 6, 10], 0), Some((160, 96)));
        assert_eq!(vp6_size(&[0x06, 0x46, 0x06, 6, 10], 0), Some((160, 90)));
        assert_eq!(vp6_size(&[0x00, 0xC6, 0x06, 6, 10], 0), None);
    }

    #[test]
    fn metadata_frame_rate_follows_av_d2q() {
        assert_eq!(frame_rate_from_f64(25.0), Rational::new(25, 1));
        // ffprobe 5.1 gives avg_frame_rate 989/33 for an FLV written at 30000/1001.
        assert_eq!(
            frame_rate_from_f64(30000.0 / 1001.0),
            Rational::new(989, 33)
        );
        assert_eq!(frame_rate_from_f64(f64::NAN), None);
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::super::corpus;
    use super::*;

    #[test]
    fn corpus_flv_files_match_ffprobe() {
        let known = [];
        let report = corpus::run(&[".flv"], &known, probe);
        if report.is_empty() {
            eprintln!("skipped: no FLV file with ffprobe JSON in the corpus folders");
            return;
        }
        let failures: Vec<_> = report.iter().filter(|(_, p)| !p.is_empty()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

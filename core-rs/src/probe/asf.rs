//! Advanced Systems Format (ASF: `.wmv`, `.wma`, `.asf`) parser.
//!
//! It walks the objects of the header object: the file properties (play
//! duration, preroll, packet size, broadcast flag), each stream properties
//! object (a `BITMAPINFOHEADER` for video, a `WAVEFORMATEX` for audio), and
//! the extended stream properties in the header extension (average time per
//! frame, and stream properties objects nested there). The first data
//! packets then give each stream's first presentation time.
//!
//! The duration follows ffmpeg 5.1: every stream lasts the play duration
//! less the preroll (in whole milliseconds), starting at its first
//! presentation time, and the file lasts from the earliest start to the
//! latest end. A broadcast file (flag bit 0) states no duration.
//!
//! Byte budget: 24 bytes per header object, at most [`OBJECT_LIMIT`] bytes of
//! each object parsed, and at most [`MAX_PACKETS`] data packets of at most
//! [`PACKET_LIMIT`] bytes; typically a few kilobytes.
//!
//! A file is [`ErrorKind::NoVideo`] when its header object was read whole
//! and none of its stream properties objects declares a video stream.

use std::collections::HashMap;
use std::io::{Read, Seek};

use super::codecs::{fourcc_video_codec, wave_format_codec};
use super::reader::Reader;
use super::{bit_rate, MediaInfo, Rational};
use crate::error::{Error, ErrorKind, Result};

const HEADER: [u8; 16] = guid(0x75B2_2630, 0x668E, 0x11CF, 0xA6D9_00AA_0062_CE6C);
const FILE_PROPERTIES: [u8; 16] = guid(0x8CAB_DCA1, 0xA947, 0x11CF, 0x8EE4_00C0_0C20_5365);
const STREAM_PROPERTIES: [u8; 16] = guid(0xB7DC_0791, 0xA9B7, 0x11CF, 0x8EE6_00C0_0C20_5365);
const HEADER_EXTENSION: [u8; 16] = guid(0x5FBF_03B5, 0xA92E, 0x11CF, 0x8EE3_00C0_0C20_5365);
const EXTENDED_STREAM_PROPERTIES: [u8; 16] =
    guid(0x14E6_A5CB, 0xC672, 0x4332, 0x8399_A969_5206_5B5A);
const DATA: [u8; 16] = guid(0x75B2_2636, 0x668E, 0x11CF, 0xA6D9_00AA_0062_CE6C);
const AUDIO_MEDIA: [u8; 16] = guid(0xF869_9E40, 0x5B4D, 0x11CF, 0xA8FD_0080_5F5C_442B);
const VIDEO_MEDIA: [u8; 16] = guid(0xBC19_EFC0, 0x5B4D, 0x11CF, 0xA8FD_0080_5F5C_442B);

/// Bytes of one header object parsed at most; larger objects (metadata with
/// pictures, script commands) are skipped unread.
const OBJECT_LIMIT: u64 = 64 * 1024;
/// Data packets read at most for the first presentation times.
const MAX_PACKETS: u32 = 64;
/// Largest data packet read; ASF packets are at most 64 KiB in practice.
const PACKET_LIMIT: usize = 128 * 1024;

/// Builds a GUID's on-disk bytes from its text form's four groups
/// (the first three little-endian, the last eight bytes big-endian).
const fn guid(a: u32, b: u16, c: u16, d: u64) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    let d = d.to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
    Other,
}

#[derive(Debug, Clone)]
struct Stream {
    number: u8,
    kind: Kind,
    codec: Option<&'static str>,
    width: Option<u32>,
    height: Option<u32>,
    channels: Option<u32>,
    sample_rate: Option<u32>,
}

#[derive(Debug, Default)]
struct FileProperties {
    /// Size of the whole file in bytes; 0 when unknown (broadcast).
    file_size: u64,
    /// Play duration in 100-nanosecond units.
    play_duration: u64,
    preroll_ms: u64,
    broadcast: bool,
    packet_size: u32,
}

#[derive(Debug, Default)]
struct Header {
    file: Option<FileProperties>,
    streams: Vec<Stream>,
    /// Average time per frame in 100-nanosecond units, by stream number.
    frame_times: HashMap<u8, u64>,
}

/// Reads the container's headers from offset 0 of `reader`.
pub fn probe<R: Read + Seek>(reader: &mut Reader<R>) -> Result<MediaInfo> {
    let len = reader.len();
    reader.seek_to(0)?;
    let top: [u8; 30] = reader.read_array()?;
    if top[0..16] != HEADER {
        return Err(Error::corrupt(
            "the file does not start with an ASF header object",
        ));
    }
    let header_size = u64::from_le_bytes(top[16..24].try_into().unwrap_or_default());
    if header_size < 30 {
        return Err(Error::corrupt(format!(
            "the ASF header object states {header_size} bytes, fewer than its own 30-byte header"
        )));
    }
    if header_size > len {
        return Err(Error::incomplete(format!(
            "the ASF header object needs {header_size} bytes but the file has {len}"
        )));
    }
    let mut header = Header::default();
    read_objects(reader, 30, header_size, &mut header, 0)?;
    let file = header
        .file
        .take()
        .ok_or_else(|| Error::corrupt("the ASF header has no file properties object"))?;

    let (data_fits, first_times) = read_data(reader, header_size, &file, &header.streams)?;
    // The file properties state the whole file's size, 0 while broadcasting.
    let complete = data_fits && file.file_size <= len;
    build_info(&header, &file, &first_times, len, complete)
}

/// Walks the objects between `start` and `end`, reading the ones used.
fn read_objects<R: Read + Seek>(
    reader: &mut Reader<R>,
    start: u64,
    end: u64,
    header: &mut Header,
    depth: u32,
) -> Result<()> {
    let mut offset = start;
    while offset + 24 <= end {
        reader.seek_to(offset)?;
        let id: [u8; 16] = reader.read_array()?;
        let size = reader.read_u64_le()?;
        let object_end = offset.checked_add(size).filter(|&e| size >= 24 && e <= end);
        let Some(object_end) = object_end else {
            return Err(Error::corrupt(format!(
                "ASF object of {size} bytes at offset {offset} does not fit its parent ending at {end}"
            )));
        };
        let body_len = size - 24;
        if id == FILE_PROPERTIES {
            let body = reader.read_vec(body_len.min(OBJECT_LIMIT), 1 << 16)?;
            header.file = Some(parse_file_properties(&body, offset)?);
        } else if id == STREAM_PROPERTIES {
            let body = reader.read_vec(body_len.min(OBJECT_LIMIT), 1 << 16)?;
            if let Some(stream) = parse_stream_properties(&body) {
                header.streams.push(stream);
            }
        } else if id == HEADER_EXTENSION && depth == 0 && body_len >= 22 {
            // Reserved GUID and field, then the size of the nested objects.
            read_objects(reader, offset + 24 + 22, object_end, header, depth + 1)?;
        } else if id == EXTENDED_STREAM_PROPERTIES {
            let body = reader.read_vec(body_len.min(OBJECT_LIMIT), 1 << 16)?;
            parse_extended_stream_properties(&body, header);
        }
        offset = object_end;
    }
    Ok(())
}

fn le16(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([data[at], data[at + 1]])
}

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn le64(data: &[u8], at: usize) -> u64 {
    u64::from(le32(data, at)) | (u64::from(le32(data, at + 4)) << 32)
}

fn parse_file_properties(body: &[u8], offset: u64) -> Result<FileProperties> {
    if body.len() < 80 {
        return Err(Error::corrupt(format!(
            "the ASF file properties object at offset {offset} has {} bytes, fewer than 104",
            body.len() + 24
        )));
    }
    Ok(FileProperties {
        file_size: le64(body, 16),
        play_duration: le64(body, 40),
        preroll_ms: le64(body, 56),
        broadcast: le32(body, 64) & 0x01 != 0,
        packet_size: le32(body, 68),
    })
}

fn parse_stream_properties(body: &[u8]) -> Option<Stream> {
    let media = body.get(0..16)?;
    let specific_len = usize::try_from(le32(body.get(..48)?, 40)).ok()?;
    let number = body.get(48)? & 0x7F;
    let specific = body.get(54..54usize.checked_add(specific_len)?)?;
    let mut stream = Stream {
        number,
        kind: Kind::Other,
        codec: None,
        width: None,
        height: None,
        channels: None,
        sample_rate: None,
    };
    if media == AUDIO_MEDIA {
        stream.kind = Kind::Audio;
        if specific.len() >= 16 {
            let tag = le16(specific, 0);
            stream.codec = match tag {
                0x000A => Some("wmavoice"),
                _ => wave_format_codec(tag, le16(specific, 14)),
            };
            stream.channels = Some(u32::from(le16(specific, 2)));
            stream.sample_rate = Some(le32(specific, 4));
        }
    } else if media == VIDEO_MEDIA {
        stream.kind = Kind::Video;
        // Encoded width and height, a reserved byte, the format data size,
        // then a BITMAPINFOHEADER.
        if specific.len() >= 11 + 20 {
            stream.width = Some(le32(specific, 0));
            stream.height = Some(le32(specific, 4));
            let fourcc = [specific[27], specific[28], specific[29], specific[30]];
            stream.codec = match &fourcc {
                b"WMVA" | b"WVC1" => Some("vc1"),
                b"MP4S" | b"M4S2" => Some("mpeg4"),
                b"MSS1" => Some("mss1"),
                b"MSS2" => Some("mss2"),
                b"WMVP" => Some("wmv3image"),
                _ => fourcc_video_codec(fourcc),
            };
        }
    }
    Some(stream)
}

/// Reads the average time per frame and any stream properties object nested
/// at the end of an extended stream properties object.
fn parse_extended_stream_properties(body: &[u8], header: &mut Header) -> Option<()> {
    let number = u8::try_from(le16(body.get(..64)?, 48) & 0x7F).ok()?;
    let frame_time = le64(body, 52);
    if frame_time > 0 {
        header.frame_times.insert(number, frame_time);
    }
    let name_count = le16(body, 60);
    let extension_count = le16(body, 62);
    let mut offset = 64usize;
    for _ in 0..name_count {
        let name_len = usize::from(le16(body.get(..offset + 4)?, offset + 2));
        offset += 4 + name_len;
    }
    for _ in 0..extension_count {
        let info_len = usize::try_from(le32(body.get(..offset + 22)?, offset + 18)).ok()?;
        offset = offset.checked_add(22 + info_len)?;
    }
    let nested = body.get(offset..)?;
    if nested.len() >= 24 && nested[0..16] == STREAM_PROPERTIES {
        if let Some(stream) = parse_stream_properties(&nested[24..]) {
            if !header.streams.iter().any(|s| s.number == stream.number) {
                header.streams.push(stream);
            }
        }
    }
    Some(())
}

/// Checks the data object that follows the header and reads the first
/// presentation time (milliseconds, preroll included) of each stream from
/// its first packets.
fn read_data<R: Read + Seek>(
    reader: &mut Reader<R>,
    header_end: u64,
    file: &FileProperties,
    streams: &[Stream],
) -> Result<(bool, HashMap<u8, u64>)> {
    let len = reader.len();
    let mut first_times = HashMap::new();
    if header_end + 50 > len {
        return Ok((false, first_times));
    }
    reader.seek_to(header_end)?;
    let data_header: [u8; 50] = reader.read_array()?;
    if data_header[0..16] != DATA {
        return Err(Error::corrupt(format!(
            "no ASF data object follows the header at offset {header_end}"
        )));
    }
    let data_size = le64(&data_header, 16);
    // A broadcast file may leave the size at 0 while it is being written.
    let fits = if data_size == 0 {
        file.broadcast
    } else {
        header_end
            .checked_add(data_size)
            .is_some_and(|end| end <= len)
    };
    let packet_size = u64::from(file.packet_size);
    if packet_size == 0 || packet_size > PACKET_LIMIT as u64 {
        return Ok((fits, first_times));
    }
    let mut offset = header_end + 50;
    for _ in 0..MAX_PACKETS {
        if offset + packet_size > len || first_times.len() >= streams.len() {
            break;
        }
        reader.seek_to(offset)?;
        let packet = reader.read_vec(packet_size, PACKET_LIMIT)?;
        for (number, time) in packet_presentation_times(&packet).unwrap_or_default() {
            first_times.entry(number).or_insert(time);
        }
        offset += packet_size;
    }
    Ok((fits, first_times))
}

/// Reads a field whose length is given by a 2-bit length type (0 absent,
/// then 1, 2 or 4 bytes).
fn read_typed(data: &[u8], offset: &mut usize, length_type: u8) -> Option<u32> {
    let size = [0, 1, 2, 4][usize::from(length_type & 0x03)];
    let bytes = data.get(*offset..*offset + size)?;
    *offset += size;
    Some(match size {
        0 => 0,
        1 => u32::from(bytes[0]),
        2 => u32::from(u16::from_le_bytes([bytes[0], bytes[1]])),
        _ => u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
    })
}

/// Lists (stream number, presentation time in ms) for each payload of one
/// data packet.
fn packet_presentation_times(packet: &[u8]) -> Option<Vec<(u8, u64)>> {
    let mut offset = 0;
    let mut flags = *packet.first()?;
    if flags & 0x80 != 0 {
        // Error correction data: its length is in the low four bits.
        offset += 1 + usize::from(flags & 0x0F);
        flags = *packet.get(offset)?;
    }
    let properties = *packet.get(offset + 1)?;
    offset += 2;
    read_typed(packet, &mut offset, flags >> 5)?; // packet length
    read_typed(packet, &mut offset, flags >> 1)?; // sequence
    read_typed(packet, &mut offset, flags >> 3)?; // padding length
    offset += 6; // send time, duration
    let multiple = flags & 0x01 != 0;
    let (count, length_type) = if multiple {
        let payload_flags = *packet.get(offset)?;
        offset += 1;
        (payload_flags & 0x3F, payload_flags >> 6)
    } else {
        (1, 0)
    };
    let mut times = Vec::new();
    for _ in 0..count {
        let number = *packet.get(offset)? & 0x7F;
        offset += 1;
        read_typed(packet, &mut offset, properties >> 4)?; // media object number
        let object_offset = read_typed(packet, &mut offset, properties >> 2)?;
        let replicated_len = usize::try_from(read_typed(packet, &mut offset, properties)?).ok()?;
        let time = if replicated_len == 1 {
            // Compressed payloads keep the presentation time in the offset field.
            u64::from(object_offset)
        } else {
            let replicated = packet.get(offset..offset + replicated_len)?;
            u64::from(le32(replicated.get(..8)?, 4))
        };
        offset += replicated_len;
        times.push((number, time));
        if !multiple {
            break;
        }
        let payload_len = usize::try_from(read_typed(packet, &mut offset, length_type)?).ok()?;
        offset = offset.checked_add(payload_len)?;
    }
    Some(times)
}

fn build_info(
    header: &Header,
    file: &FileProperties,
    first_times: &HashMap<u8, u64>,
    len: u64,
    complete: bool,
) -> Result<MediaInfo> {
    let count = |kind| {
        u32::try_from(header.streams.iter().filter(|s| s.kind == kind).count()).unwrap_or(u32::MAX)
    };
    let Some(video) = header.streams.iter().find(|s| s.kind == Kind::Video) else {
        let codecs: Vec<&str> = header
            .streams
            .iter()
            .map(|s| s.codec.unwrap_or("unknown"))
            .collect();
        return Err(Error::new(
            ErrorKind::NoVideo,
            format!(
                "the ASF header declares no video stream (streams: {})",
                if codecs.is_empty() {
                    "none".to_owned()
                } else {
                    codecs.join(", ")
                }
            ),
        ));
    };
    let audio = header.streams.iter().find(|s| s.kind == Kind::Audio);
    let duration_s = duration_s(header, file, first_times);
    let frame_rate = header
        .frame_times
        .get(&video.number)
        .and_then(|&time| Rational::new(10_000_000, time));

    Ok(MediaInfo {
        container: "asf".to_owned(),
        format_name: "asf".to_owned(),
        duration_s,
        width: video.width,
        height: video.height,
        rotation: None,
        frame_rate,
        video_codec: video.codec.map(str::to_owned),
        video_profile: None,
        audio_codec: audio.and_then(|a| a.codec).map(str::to_owned),
        audio_channels: audio.and_then(|a| a.channels),
        audio_sample_rate: audio.and_then(|a| a.sample_rate),
        bit_rate: bit_rate(len, duration_s),
        video_streams: count(Kind::Video),
        audio_streams: count(Kind::Audio),
        subtitle_streams: 0,
        complete,
    })
}

/// Computes the play duration less the preroll, widened by the spread of the
/// streams' first presentation times.
fn duration_s(
    header: &Header,
    file: &FileProperties,
    first_times: &HashMap<u8, u64>,
) -> Option<f64> {
    if file.broadcast {
        return None;
    }
    let play_ms = (file.play_duration / 10_000).checked_sub(file.preroll_ms)?;
    let starts: Vec<u64> = header
        .streams
        .iter()
        .filter_map(|s| first_times.get(&s.number).copied())
        .collect();
    let spread = match (starts.iter().min(), starts.iter().max()) {
        (Some(min), Some(max)) => max - min,
        _ => 0,
    };
    let total_ms = play_ms + spread;
    (total_ms > 0).then(|| total_ms as f64 / 1000.0)
}

#[cfg(test)]
// The builders below write sizes known to fit their fields, and take FourCCs
// as byte-string literals.
#[allow(clippy::cast_possible_truncation, clippy::trivially_copy_pass_by_ref)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn object(id: [u8; 16], body: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.extend_from_slice(&(body.len() as u64 + 24).to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    fn file_properties(play_ms: u64, preroll_ms: u64, packet_size: u32) -> Vec<u8> {
        let mut body = vec![0u8; 80];
        body[40..48].copy_from_slice(&(play_ms * 10_000).to_le_bytes());
        body[56..64].copy_from_slice(&preroll_ms.to_le_bytes());
        body[64..68].copy_from_slice(&2u32.to_le_bytes());
        body[68..72].copy_from_slice(&packet_size.to_le_bytes());
        body[72..76].copy_from_slice(&packet_size.to_le_bytes());
        object(FILE_PROPERTIES, &body)
    }

    fn stream_properties(media: [u8; 16], number: u8, specific: &[u8]) -> Vec<u8> {
        let mut body = media.to_vec();
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&(specific.len() as u32).to_le_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&[number, 0, 0, 0, 0, 0]);
        body.extend_from_slice(specific);
        object(STREAM_PROPERTIES, &body)
    }

    fn video_specific(width: u32, height: u32, fourcc: &[u8; 4]) -> Vec<u8> {
        let mut out = width.to_le_bytes().to_vec();
        out.extend_from_slice(&height.to_le_bytes());
        out.push(2);
        out.extend_from_slice(&40u16.to_le_bytes());
        let mut bitmap = vec![0u8; 40];
        bitmap[16..20].copy_from_slice(fourcc);
        out.extend_from_slice(&bitmap);
        out
    }

    fn audio_specific(tag: u16, channels: u16, rate: u32) -> Vec<u8> {
        let mut out = tag.to_le_bytes().to_vec();
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&[0; 10]);
        out
    }

    /// Builds a single-payload packet for `number` at `time_ms`, padded to `size`.
    fn packet(number: u8, time_ms: u32, size: usize) -> Vec<u8> {
        // No error correction, single payload, no length fields; replicated
        // data length is a byte, offset a dword, object number a byte.
        let mut out = vec![0x00, 0x5D, 0, 0, 0, 0, 0, 0];
        out.push(0x80 | number);
        out.push(0); // media object number
        out.extend_from_slice(&0u32.to_le_bytes());
        out.push(8);
        out.extend_from_slice(&100u32.to_le_bytes());
        out.extend_from_slice(&time_ms.to_le_bytes());
        out.resize(size, 0);
        out
    }

    fn sample(data_size_extra: u64) -> Vec<u8> {
        let mut objects = file_properties(2046 + 3100, 3100, 64);
        objects.extend(stream_properties(
            VIDEO_MEDIA,
            1,
            &video_specific(160, 90, b"WMV2"),
        ));
        objects.extend(stream_properties(
            AUDIO_MEDIA,
            2,
            &audio_specific(0x161, 1, 44100),
        ));
        let mut out = HEADER.to_vec();
        out.extend_from_slice(&(30 + objects.len() as u64).to_le_bytes());
        out.extend_from_slice(&[2, 0, 0, 0, 1, 2]);
        out.extend(objects);
        let packets = [packet(2, 3100, 64), packet(1, 3146, 64)].concat();
        let data_size = (50 + packets.len()) as u64 + data_size_extra;
        out.extend_from_slice(&DATA);
        out.extend_from_slice(&data_size.to_le_bytes());
        out.extend_from_slice(&[0; 26]);
        out.extend(packets);
        out
    }

    fn probe_bytes(data: Vec<u8>) -> Result<MediaInfo> {
        let len = data.len() as u64;
        let mut reader = Reader::new(Cursor::new(data), len, 1 << 20);
        probe(&mut reader)
    }

    /// The body of a stream properties object (without its 24-byte header).
    fn stream_properties_body(media: [u8; 16], number: u8, specific: &[u8]) -> Vec<u8> {
        stream_properties(media, number, specific)[24..].to_vec()
    }

    #[test]
    fn video_fourccs_specific_to_asf_are_named() {
        let cases = [
            (b"WMVA", "vc1"),
            (b"WVC1", "vc1"),
            (b"MP4S", "mpeg4"),
            (b"M4S2", "mpeg4"),
            (b"MSS1", "mss1"),
            (b"MSS2", "mss2"),
            (b"WMVP", "wmv3image"),
            (b"WMV3", "wmv3"),
        ];
        for (fourcc, codec) in cases {
            let body = stream_properties_body(VIDEO_MEDIA, 3, &video_specific(640, 480, fourcc));

            let stream = parse_stream_properties(&body).unwrap();

            assert_eq!(stream.kind, Kind::Video);
            assert_eq!(stream.codec, Some(codec), "{fourcc:?}");
            assert_eq!((stream.width, stream.height), (Some(640), Some(480)));
        }
        let voice = stream_properties_body(AUDIO_MEDIA, 4, &audio_specific(0x000A, 1, 8000));
        let stream = parse_stream_properties(&voice).unwrap();
        assert_eq!(stream.codec, Some("wmavoice"));
        assert_eq!(stream.sample_rate, Some(8000));
    }

    #[test]
    fn extended_stream_properties_give_frame_time_and_nested_stream() {
        let mut body = vec![0u8; 64];
        body[48..50].copy_from_slice(&5u16.to_le_bytes()); // stream number
        body[52..60].copy_from_slice(&400_000u64.to_le_bytes()); // 25 fps
        body[60..62].copy_from_slice(&1u16.to_le_bytes()); // one stream name
        body[62..64].copy_from_slice(&1u16.to_le_bytes()); // one payload extension
        body.extend_from_slice(&[0, 0, 4, 0, b'n', 0, b'a', 0]); // language, name
        let mut extension = vec![0u8; 22];
        extension[18..22].copy_from_slice(&3u32.to_le_bytes());
        extension.extend_from_slice(&[1, 2, 3]);
        body.extend(extension);
        body.extend(stream_properties(
            VIDEO_MEDIA,
            5,
            &video_specific(320, 240, b"WMV2"),
        ));
        let mut header = Header::default();

        let parsed = parse_extended_stream_properties(&body, &mut header);

        assert_eq!(parsed, Some(()));
        assert_eq!(header.frame_times.get(&5), Some(&400_000));
        assert_eq!(header.streams.len(), 1);
        assert_eq!(header.streams[0].codec, Some("wmv2"));
        assert_eq!(
            parse_extended_stream_properties(&body[..40], &mut header),
            None
        );
    }
    #[test]
    fn hand_built_asf_reads_streams_and_duration() {
        let info = probe_bytes(sample(0)).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("wmv2"));
        assert_eq!((info.width, info.height), (Some(160), Some(90)));
        assert_eq!(info.audio_codec.as_deref(), Some("wmav2"));
        assert_eq!(info.audio_channels, Some(1));
        assert_eq!(info.audio_sample_rate, Some(44100));
        // 2.046 s of play plus the video's 46 ms later start.
        assert_eq!(info.duration_s, Some(2.092));
        assert!(info.complete);
    }

    #[test]
    fn data_object_past_end_is_incomplete() {
        let info = probe_bytes(sample(1000)).unwrap();
        assert!(!info.complete);
    }

    #[test]
    fn cut_header_is_incomplete() {
        let mut data = sample(0);
        data.truncate(100);
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
    }

    #[test]
    fn oversized_object_is_corrupt() {
        let mut data = sample(0);
        // The file properties object's size field follows its GUID at byte 30.
        data[46..54].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn audio_only_asf_is_no_video() {
        let mut objects = file_properties(1000, 0, 64);
        objects.extend(stream_properties(
            AUDIO_MEDIA,
            1,
            &audio_specific(0x161, 2, 48000),
        ));
        let mut data = HEADER.to_vec();
        data.extend_from_slice(&(30 + objects.len() as u64).to_le_bytes());
        data.extend_from_slice(&[1, 0, 0, 0, 1, 2]);
        data.extend(objects);
        let err = probe_bytes(data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoVideo);
        assert!(err.message().contains("wmav2"), "{}", err.message());
    }

    #[test]
    fn garbage_packet_gives_no_times() {
        assert_eq!(packet_presentation_times(&[0x80]), None);
        assert_eq!(packet_presentation_times(&[0x01, 0x5D, 0xFF]), None);
    }

    #[test]
    fn guid_bytes_follow_the_mixed_endian_layout() {
        assert_eq!(
            HEADER,
            [
                0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62,
                0xCE, 0x6C
            ]
        );
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::super::corpus;
    use super::*;

    #[test]
    fn corpus_asf_files_match_ffprobe() {
        // ASF states no frame rate. ffprobe averages the packet timestamps
        // (25/1 for the generated clip) or, with too few frames, guesses
        // from the millisecond time base (1000/1 for the fixture).
        let known = [
            ("wmv_wmv2_wmav2.wmv", "frame_rate"),
            ("fixture.wmv.asf", "frame_rate"),
        ];
        let report = corpus::run(&[".wmv", ".asf", ".wma"], &known, probe);
        if report.is_empty() {
            eprintln!("skipped: no ASF file with ffprobe JSON in the corpus folders");
            return;
        }
        let failures: Vec<_> = report.iter().filter(|(_, p)| !p.is_empty()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

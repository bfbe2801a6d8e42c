//! Matroska and WebM (EBML) header parser.
//!
//! Walks the Segment's top-level elements with seeks, reads `Info`, `Tracks`
//! and `SeekHead` into memory and stops at the first `Cluster` once it has
//! both. A `SeekHead` leads to `Info` or `Tracks` stored after the clusters.
//! Only when the track header does not state the video profile (VP8 and VP9
//! never do) are media blocks read: the first [`FRAME_HEAD_READ`] bytes of
//! the video track's first frame in the first `Cluster`.

use std::io::{Read, Seek};

use super::bytes::ByteCursor;
use super::codecs;
use super::es;
use super::reader::Reader;
use super::{MediaInfo, Rational};
use crate::error::{Error, ErrorKind, Result};

/// ffprobe's `format_name` for Matroska and WebM alike.
pub const FORMAT_NAME: &str = "matroska,webm";

const ID_EBML: u32 = 0x1A45_DFA3;
const ID_DOC_TYPE: u32 = 0x4282;
const ID_SEGMENT: u32 = 0x1853_8067;
const ID_SEEK_HEAD: u32 = 0x114D_9B74;
const ID_SEEK: u32 = 0x4DBB;
const ID_SEEK_ID: u32 = 0x53AB;
const ID_SEEK_POSITION: u32 = 0x53AC;
const ID_INFO: u32 = 0x1549_A966;
const ID_TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const ID_DURATION: u32 = 0x4489;
const ID_TRACKS: u32 = 0x1654_AE6B;
const ID_TRACK_ENTRY: u32 = 0xAE;
const ID_TRACK_NUMBER: u32 = 0xD7;
const ID_TRACK_TYPE: u32 = 0x83;
const ID_CODEC_ID: u32 = 0x86;
const ID_CODEC_PRIVATE: u32 = 0x63A2;
const ID_DEFAULT_DURATION: u32 = 0x23_E383;
const ID_VIDEO: u32 = 0xE0;
const ID_PIXEL_WIDTH: u32 = 0xB0;
const ID_PIXEL_HEIGHT: u32 = 0xBA;
const ID_PROJECTION: u32 = 0x7670;
const ID_PROJECTION_TYPE: u32 = 0x7671;
const ID_PROJECTION_POSE_YAW: u32 = 0x7673;
const ID_PROJECTION_POSE_PITCH: u32 = 0x7674;
const ID_PROJECTION_POSE_ROLL: u32 = 0x7675;
const ID_CONTENT_ENCODINGS: u32 = 0x6D80;
const ID_AUDIO: u32 = 0xE1;
const ID_SAMPLING_FREQUENCY: u32 = 0xB5;
const ID_OUTPUT_SAMPLING_FREQUENCY: u32 = 0x78B5;
const ID_CHANNELS: u32 = 0x9F;
const ID_BIT_DEPTH: u32 = 0x6264;
const ID_CLUSTER: u32 = 0x1F43_B675;
const ID_SIMPLE_BLOCK: u32 = 0xA3;
const ID_BLOCK_GROUP: u32 = 0xA0;
const ID_BLOCK: u32 = 0xA1;

const TRACK_TYPE_VIDEO: u64 = 1;
const TRACK_TYPE_AUDIO: u64 = 2;
const TRACK_TYPE_SUBTITLE: u64 = 0x11;

/// Largest EBML header body read; real ones are under 64 bytes.
const MAX_EBML_HEADER: usize = 4096;
/// Largest `SeekHead` or `Info` body read.
const MAX_SMALL_ELEMENT: usize = 1024 * 1024;
/// Largest `Tracks` body read; codec private data can be large (Vorbis headers).
const MAX_TRACKS: usize = 8 * 1024 * 1024;
/// Top-level elements walked before the scan gives up looking for `Tracks`.
const MAX_TOP_LEVEL_ELEMENTS: u32 = 10_000;
/// The default `TimestampScale`: timestamps in milliseconds.
const DEFAULT_TIMESTAMP_SCALE: u64 = 1_000_000;
/// ffmpeg reduces a frame rate from `DefaultDuration` to parts of at most this.
const FRAME_RATE_MAX_PART: u64 = 30_000;
/// Blocks of the first Cluster looked at to find the video track's first
/// frame when the track header lacks the codec profile.
const MAX_BLOCKS_TO_FIRST_FRAME: u32 = 64;
/// Bytes read from the start of a block. The codec headers that carry the
/// profile (VP8 and VP9 frame headers, the AV1 sequence header, an H.264 SPS
/// after an access unit delimiter) come within the first few dozen bytes.
const FRAME_HEAD_READ: u64 = 1024;
const FRAME_HEAD_LIMIT: usize = 1024;

/// Reads the container's headers from offset 0 of `reader`.
pub fn probe<R: Read + Seek>(reader: &mut Reader<R>) -> Result<MediaInfo> {
    let len = reader.len();
    let header = read_header(reader, 0)?;
    if header.id != ID_EBML {
        return Err(Error::corrupt(
            "the file does not start with an EBML header",
        ));
    }
    let Some(size) = header.size else {
        return Err(Error::corrupt("the EBML header has an unknown size"));
    };
    let body = reader.read_vec(size, MAX_EBML_HEADER)?;
    let doc_type = parse_doc_type(&body)?;
    let container = match doc_type.as_str() {
        "matroska" => "matroska",
        "webm" => "webm",
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("unsupported container (EBML document type '{other}')"),
            ))
        }
    };
    let segment = find_segment(reader, header.data_offset + size)?;
    let mut scan = scan_segment(reader, &segment)?;
    let complete = scan.complete && segment.size.is_none_or(|s| segment.data_offset + s <= len);
    read_sought_elements(reader, &segment, &mut scan)?;
    let Some(tracks) = scan.tracks.as_deref() else {
        if !complete {
            return Err(Error::incomplete(
                "the file ends before its Tracks element; it is still being written or was cut short",
            ));
        }
        return Err(Error::corrupt("the Matroska segment has no Tracks element"));
    };
    let tracks = parse_tracks(tracks)?;
    let mut info = MediaInfo {
        container: container.to_owned(),
        format_name: FORMAT_NAME.to_owned(),
        complete,
        ..MediaInfo::default()
    };
    if let Some(segment_info) = scan.info.as_deref() {
        info.duration_s = parse_duration(segment_info)?;
    }
    fill_tracks(&mut info, &tracks);
    if info.video_profile.is_none() {
        if let (Some(video), Some(cluster)) = (first_video(&tracks), scan.first_cluster) {
            // A damaged or missing first frame costs the profile, not the probe.
            info.video_profile = read_frame_profile(reader, cluster, video).ok().flatten();
        }
    }

    Ok(info)
}

// ---------------------------------------------------------------------------
// Elements in the file

struct ElementHeader {
    id: u32,
    /// `None` for the reserved "unknown size" value.
    size: Option<u64>,
    data_offset: u64,
}

fn read_header<R: Read + Seek>(reader: &mut Reader<R>, offset: u64) -> Result<ElementHeader> {
    reader.seek_to(offset)?;
    let id = read_vint(reader, true)?;
    let id = u32::try_from(id).map_err(|_| {
        Error::corrupt(format!(
            "element ID at offset {offset} is longer than 4 bytes"
        ))
    })?;
    let size = read_vint(reader, false)?;
    Ok(ElementHeader {
        id,
        size: (size != u64::MAX).then_some(size),
        data_offset: reader.position(),
    })
}

/// Reads an EBML variable-length integer. IDs keep their length marker bits;
/// sizes drop them, and a size of all ones becomes `u64::MAX` (unknown).
fn read_vint<R: Read + Seek>(reader: &mut Reader<R>, is_id: bool) -> Result<u64> {
    let first = reader.read_u8()?;
    let extra = first.leading_zeros();
    if extra >= 8 || (is_id && extra >= 4) {
        return Err(Error::corrupt(format!(
            "invalid EBML {} at offset {}: first byte 0x{first:02x}",
            if is_id { "element ID" } else { "element size" },
            reader.position() - 1,
        )));
    }
    let mut bytes = [0u8; 8];
    let rest = &mut bytes[..extra as usize];
    reader.read_exact(rest)?;
    Ok(vint_value(first, extra, rest, is_id))
}

/// Assembles a vint from its first byte, the number of bytes after it and
/// those bytes.
fn vint_value(first: u8, extra: u32, rest: &[u8], is_id: bool) -> u64 {
    // Computed in u64: for an 8-byte vint the mask shift is 8, which would
    // overflow a u8.
    let mask = 0xFF_u64 >> (extra + 1);
    let marker = if is_id {
        u64::from(first)
    } else {
        u64::from(first) & mask
    };
    let mut value = marker;
    let mut all_ones = marker == mask;
    for &byte in rest {
        value = (value << 8) | u64::from(byte);
        all_ones &= byte == 0xFF;
    }
    if !is_id && all_ones {
        return u64::MAX;
    }
    value
}

struct Segment {
    data_offset: u64,
    size: Option<u64>,
}

fn find_segment<R: Read + Seek>(reader: &mut Reader<R>, mut offset: u64) -> Result<Segment> {
    // Void or CRC elements may sit between the EBML header and the Segment.
    for _ in 0..16 {
        if offset >= reader.len() {
            break;
        }
        let header = read_header(reader, offset)?;
        if header.id == ID_SEGMENT {
            return Ok(Segment {
                data_offset: header.data_offset,
                size: header.size,
            });
        }
        let Some(size) = header.size else { break };
        offset = header.data_offset.saturating_add(size);
    }
    if offset >= reader.len() {
        return Err(Error::incomplete(
            "the file ends before its Segment element; it is still being written or was cut short",
        ));
    }
    Err(Error::corrupt("no Segment element after the EBML header"))
}

#[derive(Default)]
struct SegmentScan {
    info: Option<Vec<u8>>,
    tracks: Option<Vec<u8>>,
    /// Offsets (from the segment's data start) that the `SeekHead` gives.
    info_position: Option<u64>,
    tracks_position: Option<u64>,
    /// Offset of the first Cluster's header.
    first_cluster: Option<u64>,
    complete: bool,
}

fn scan_segment<R: Read + Seek>(reader: &mut Reader<R>, segment: &Segment) -> Result<SegmentScan> {
    let len = reader.len();
    let end = segment
        .size
        .map_or(len, |s| segment.data_offset.saturating_add(s).min(len));
    let mut scan = SegmentScan {
        complete: true,
        ..SegmentScan::default()
    };
    let mut offset = segment.data_offset;
    let mut count = 0;
    while offset < end && count < MAX_TOP_LEVEL_ELEMENTS {
        count += 1;
        let header = match read_header(reader, offset) {
            Ok(header) => header,
            Err(err) if err.kind() == ErrorKind::Incomplete => {
                scan.complete = false;
                break;
            }
            Err(err) => return Err(err),
        };
        if header.id == ID_CLUSTER {
            scan.first_cluster.get_or_insert(offset);
        }
        if header.id == ID_CLUSTER && scan.info.is_some() && scan.tracks.is_some() {
            break;
        }
        let Some(size) = header.size else {
            // Only a live Cluster has an unknown size; nothing after it can be
            // reached without reading its blocks.
            break;
        };
        let element_end = header.data_offset.saturating_add(size);
        if element_end > len {
            scan.complete = false;
        }
        match header.id {
            ID_SEEK_HEAD => {
                let body = reader.read_vec(size, MAX_SMALL_ELEMENT)?;
                parse_seek_head(&body, &mut scan)?;
            }
            ID_INFO if scan.info.is_none() => {
                scan.info = Some(reader.read_vec(size, MAX_SMALL_ELEMENT)?);
            }
            ID_TRACKS if scan.tracks.is_none() => {
                scan.tracks = Some(reader.read_vec(size, MAX_TRACKS)?);
            }
            ID_CLUSTER if scan.info_position.is_some() || scan.tracks_position.is_some() => {
                // The SeekHead gives the offsets of the rest, so clusters need no walk.
                break;
            }
            _ => {}
        }
        if element_end > len {
            break;
        }
        offset = element_end;
    }
    Ok(scan)
}

fn read_sought_elements<R: Read + Seek>(
    reader: &mut Reader<R>,
    segment: &Segment,
    scan: &mut SegmentScan,
) -> Result<()> {
    if scan.info.is_none() {
        if let Some(position) = scan.info_position {
            scan.info = read_element_at(reader, segment, position, ID_INFO, MAX_SMALL_ELEMENT)?;
        }
    }
    if scan.tracks.is_none() {
        if let Some(position) = scan.tracks_position {
            scan.tracks = read_element_at(reader, segment, position, ID_TRACKS, MAX_TRACKS)?;
        }
    }
    Ok(())
}

fn read_element_at<R: Read + Seek>(
    reader: &mut Reader<R>,
    segment: &Segment,
    position: u64,
    id: u32,
    limit: usize,
) -> Result<Option<Vec<u8>>> {
    let offset = segment.data_offset.saturating_add(position);
    if offset >= reader.len() {
        return Ok(None);
    }
    let header = read_header(reader, offset)?;
    match header.size {
        Some(size) if header.id == id => Ok(Some(reader.read_vec(size, limit)?)),
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------
// Elements in memory

/// Iterates over the child elements in `data`. A child whose size runs past
/// its parent, or that has an unknown size, is cut at the parent's end.
struct Children<'a> {
    cursor: ByteCursor<'a>,
    failed: bool,
}

fn children(data: &[u8]) -> Children<'_> {
    Children {
        cursor: ByteCursor::new(data, "EBML element"),
        failed: false,
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<(u32, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.cursor.remaining() == 0 {
            return None;
        }
        let item = self.read_child();
        self.failed = item.is_err();
        Some(item)
    }
}

impl<'a> Children<'a> {
    fn read_child(&mut self) -> Result<(u32, &'a [u8])> {
        let id = parse_vint(&mut self.cursor, true)?;
        let size = parse_vint(&mut self.cursor, false)?;
        let available = self.cursor.remaining();
        let size = usize::try_from(size).unwrap_or(usize::MAX).min(available);
        let body = self.cursor.take(size)?;
        // IDs are at most four bytes, as `parse_vint` checks.
        Ok((u32::try_from(id).unwrap_or(u32::MAX), body))
    }
}

fn parse_vint(cursor: &mut ByteCursor<'_>, is_id: bool) -> Result<u64> {
    let offset = cursor.position();
    let first = cursor.u8()?;
    let extra = first.leading_zeros();
    if extra >= 8 || (is_id && extra >= 4) {
        return Err(Error::corrupt(format!(
            "invalid EBML {} at offset {offset} of its parent: first byte 0x{first:02x}",
            if is_id { "element ID" } else { "element size" },
        )));
    }
    let rest = cursor.take(extra as usize)?;
    Ok(vint_value(first, extra, rest, is_id))
}

fn read_uint(body: &[u8]) -> u64 {
    body.iter()
        .take(8)
        .fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

fn read_float(body: &[u8]) -> Option<f64> {
    match body.len() {
        4 => Some(f64::from(f32::from_be_bytes(body.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(body.try_into().ok()?)),
        _ => None,
    }
}

fn parse_doc_type(ebml_header: &[u8]) -> Result<String> {
    for child in children(ebml_header) {
        let (id, body) = child?;
        if id == ID_DOC_TYPE {
            let text = body.split(|&b| b == 0).next().unwrap_or_default();
            return Ok(String::from_utf8_lossy(text).into_owned());
        }
    }
    // The EBML specification makes "matroska" the default DocType.
    Ok("matroska".to_owned())
}

fn parse_seek_head(body: &[u8], scan: &mut SegmentScan) -> Result<()> {
    for child in children(body) {
        let (id, seek) = child?;
        if id != ID_SEEK {
            continue;
        }
        let (mut target, mut position) = (None, None);
        for field in children(seek) {
            let (id, value) = field?;
            match id {
                ID_SEEK_ID => target = u32::try_from(read_uint(value)).ok(),
                ID_SEEK_POSITION => position = Some(read_uint(value)),
                _ => {}
            }
        }
        match (target, position) {
            (Some(ID_INFO), Some(p)) => scan.info_position = Some(p),
            (Some(ID_TRACKS), Some(p)) => scan.tracks_position = Some(p),
            _ => {}
        }
    }
    Ok(())
}

fn parse_duration(segment_info: &[u8]) -> Result<Option<f64>> {
    let mut scale = DEFAULT_TIMESTAMP_SCALE;
    let mut duration = None;
    for child in children(segment_info) {
        let (id, body) = child?;
        match id {
            ID_TIMESTAMP_SCALE => scale = read_uint(body),
            ID_DURATION => duration = read_float(body),
            _ => {}
        }
    }
    if scale == 0 {
        scale = DEFAULT_TIMESTAMP_SCALE;
    }
    Ok(duration
        .filter(|d| d.is_finite() && *d > 0.0)
        .map(|d| d * scale as f64 / 1e9))
}

#[derive(Debug, Default)]
struct TrackEntry {
    number: u64,
    track_type: u64,
    codec_id: String,
    codec_private: Vec<u8>,
    default_duration: u64,
    width: u64,
    height: u64,
    sample_rate: Option<f64>,
    output_sample_rate: Option<f64>,
    channels: u64,
    bit_depth: u64,
    /// Compressed or encrypted frames, whose bytes the probe cannot read.
    has_content_encodings: bool,
    projection: Projection,
}

/// The `Projection` of a video track: its type and pose in degrees.
#[derive(Debug, Default)]
struct Projection {
    /// 0 (the default) is rectangular, a flat picture.
    kind: u64,
    yaw: f64,
    pitch: f64,
    roll: f64,
}

fn parse_tracks(tracks: &[u8]) -> Result<Vec<TrackEntry>> {
    let mut entries = Vec::new();
    for child in children(tracks) {
        let (id, body) = child?;
        if id == ID_TRACK_ENTRY {
            entries.push(parse_track_entry(body)?);
        }
    }
    Ok(entries)
}

fn parse_track_entry(body: &[u8]) -> Result<TrackEntry> {
    let mut track = TrackEntry {
        channels: 1,
        ..TrackEntry::default()
    };
    for child in children(body) {
        let (id, value) = child?;
        match id {
            ID_TRACK_NUMBER => track.number = read_uint(value),
            ID_TRACK_TYPE => track.track_type = read_uint(value),
            ID_CONTENT_ENCODINGS => track.has_content_encodings = true,
            ID_CODEC_ID => {
                let text = value.split(|&b| b == 0).next().unwrap_or_default();
                track.codec_id = String::from_utf8_lossy(text).into_owned();
            }
            // Only the configuration record's first bytes are needed.
            ID_CODEC_PRIVATE => track.codec_private = value[..value.len().min(256)].to_vec(),
            ID_DEFAULT_DURATION => track.default_duration = read_uint(value),
            ID_VIDEO => {
                for field in children(value) {
                    let (id, value) = field?;
                    match id {
                        ID_PIXEL_WIDTH => track.width = read_uint(value),
                        ID_PIXEL_HEIGHT => track.height = read_uint(value),
                        ID_PROJECTION => track.projection = parse_projection(value)?,
                        _ => {}
                    }
                }
            }
            ID_AUDIO => {
                for field in children(value) {
                    let (id, value) = field?;
                    match id {
                        ID_SAMPLING_FREQUENCY => track.sample_rate = read_float(value),
                        ID_OUTPUT_SAMPLING_FREQUENCY => {
                            track.output_sample_rate = read_float(value);
                        }
                        ID_CHANNELS => track.channels = read_uint(value),
                        ID_BIT_DEPTH => track.bit_depth = read_uint(value),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(track)
}

fn parse_projection(body: &[u8]) -> Result<Projection> {
    let mut projection = Projection::default();
    for child in children(body) {
        let (id, value) = child?;
        let angle = || read_float(value).unwrap_or(0.0);
        match id {
            ID_PROJECTION_TYPE => projection.kind = read_uint(value),
            ID_PROJECTION_POSE_YAW => projection.yaw = angle(),
            ID_PROJECTION_POSE_PITCH => projection.pitch = angle(),
            ID_PROJECTION_POSE_ROLL => projection.roll = angle(),
            _ => {}
        }
    }
    Ok(projection)
}

/// Computes the rotation ffprobe 5.1 reports for a projection. ffmpeg turns
/// the roll of a rectangular projection into a display matrix, mirrored when
/// the yaw is 180 degrees, and ignores any other pose.
// ffmpeg compares the angles exactly, and 180 is exact in a float.
#[allow(clippy::float_cmp)]
fn projection_rotation(projection: &Projection) -> i32 {
    let Projection {
        kind,
        yaw,
        pitch,
        roll,
    } = *projection;

    let flipped = yaw == 180.0 || yaw == -180.0;
    if kind != 0 || pitch != 0.0 || (yaw != 0.0 && !flipped) || !roll.is_finite() {
        return 0;
    }

    // ffmpeg stores the matrix in 16.16 fixed point, truncating, and ffprobe
    // truncates the angle it reads back: a roll of 30 prints as 29.
    #[allow(clippy::cast_possible_truncation)]
    let fixed = |x: f64| (x * 65536.0) as i32;
    // av_display_rotation_set takes the clockwise angle: minus the roll,
    // which counts counter-clockwise, unless the mirror turns it around.
    let angle = if flipped { roll } else { -roll };
    let (sin, cos) = (-angle * std::f64::consts::PI / 180.0).sin_cos();
    let (mut a, b, mut c, d) = (fixed(cos), fixed(-sin), fixed(sin), fixed(cos));
    if flipped {
        (a, c) = (-a, -c);
    }

    super::mp4::rotation_from_matrix([a, b, c, d])
}

/// Returns the profile of the video track from its `CodecPrivate` or, when
/// that states none, from the start of its first frame.
fn read_frame_profile<R: Read + Seek>(
    reader: &mut Reader<R>,
    cluster_offset: u64,
    video: &TrackEntry,
) -> Result<Option<String>> {
    let Some(codec) = codecs::matroska_codec(&video.codec_id, &video.codec_private, 0) else {
        return Ok(None);
    };
    // MPEG-1/2 and MPEG-4 Visual tracks keep their sequence header here.
    if let Some(profile) = es::frame_profile(codec, &video.codec_private) {
        return Ok(Some(profile));
    }
    // With a configuration record, H.264 and HEVC frames carry length
    // prefixes, not start codes, so a start-code search would misread them.
    let length_prefixed = matches!(codec, "h264" | "hevc") && !video.codec_private.is_empty();
    if video.has_content_encodings || video.number == 0 || length_prefixed {
        return Ok(None);
    }

    let head = read_first_frame_head(reader, cluster_offset, video.number)?;
    Ok(head.and_then(|head| es::frame_profile(codec, block_frame(&head, video.number)?)))
}

/// Walks the blocks of the Cluster at `cluster_offset` and returns the first
/// [`FRAME_HEAD_READ`] bytes of the first block of `track`.
fn read_first_frame_head<R: Read + Seek>(
    reader: &mut Reader<R>,
    cluster_offset: u64,
    track: u64,
) -> Result<Option<Vec<u8>>> {
    let cluster = read_header(reader, cluster_offset)?;
    if cluster.id != ID_CLUSTER {
        return Ok(None);
    }
    let len = reader.len();
    let end = cluster.size.map_or(len, |size| {
        cluster.data_offset.saturating_add(size).min(len)
    });
    let mut offset = cluster.data_offset;
    for _ in 0..MAX_BLOCKS_TO_FIRST_FRAME {
        if offset >= end {
            break;
        }
        let child = read_header(reader, offset)?;
        let Some(size) = child.size else { break };
        let block = match child.id {
            ID_SIMPLE_BLOCK => Some((child.data_offset, size)),
            ID_BLOCK_GROUP => find_block(reader, child.data_offset, size)?,
            _ => None,
        };
        if let Some((block_offset, block_size)) = block {
            let count = block_size
                .min(FRAME_HEAD_READ)
                .min(len.saturating_sub(block_offset));
            reader.seek_to(block_offset)?;
            let head = reader.read_vec(count, FRAME_HEAD_LIMIT)?;
            if block_frame(&head, track).is_some() {
                return Ok(Some(head));
            }
        }
        offset = child.data_offset.saturating_add(size);
    }
    Ok(None)
}

/// Finds the `Block` among a `BlockGroup`'s children: (offset, size).
fn find_block<R: Read + Seek>(
    reader: &mut Reader<R>,
    mut offset: u64,
    size: u64,
) -> Result<Option<(u64, u64)>> {
    let end = offset.saturating_add(size).min(reader.len());
    // Muxers write the Block first; a few other children may precede it.
    for _ in 0..8 {
        if offset >= end {
            break;
        }
        let child = read_header(reader, offset)?;
        let Some(size) = child.size else { break };
        if child.id == ID_BLOCK {
            return Ok(Some((child.data_offset, size)));
        }
        offset = child.data_offset.saturating_add(size);
    }
    Ok(None)
}

/// Returns the frame data at the start of `block` when the block belongs to
/// `track`. Laced frames give an empty slice, because the lace sizes come
/// first and the probe does not decode them.
fn block_frame(block: &[u8], track: u64) -> Option<&[u8]> {
    let mut cursor = ByteCursor::new(block, "Matroska block");
    if parse_vint(&mut cursor, false).ok()? != track {
        return None;
    }
    // A 16-bit relative timestamp, then the flags with the lacing bits.
    let [_, _, flags] = cursor.array().ok()?;
    if flags & 0x06 != 0 {
        return Some(&[]);
    }
    Some(cursor.rest())
}

fn first_video(tracks: &[TrackEntry]) -> Option<&TrackEntry> {
    tracks.iter().find(|t| t.track_type == TRACK_TYPE_VIDEO)
}

// ---------------------------------------------------------------------------
// Result

fn fill_tracks(info: &mut MediaInfo, tracks: &[TrackEntry]) {
    for track in tracks {
        match track.track_type {
            TRACK_TYPE_VIDEO => info.video_streams += 1,
            TRACK_TYPE_AUDIO => info.audio_streams += 1,
            TRACK_TYPE_SUBTITLE => info.subtitle_streams += 1,
            _ => {}
        }
    }
    if let Some(video) = first_video(tracks) {
        fill_video(info, video);
    }
    if let Some(audio) = tracks.iter().find(|t| t.track_type == TRACK_TYPE_AUDIO) {
        fill_audio(info, audio);
    }
}

fn fill_video(info: &mut MediaInfo, video: &TrackEntry) {
    let codec = codecs::matroska_codec(&video.codec_id, &video.codec_private, 0);
    info.video_codec =
        Some(codec.map_or_else(|| format!("unknown ({})", video.codec_id), str::to_owned));
    info.video_profile = match codec {
        Some("h264") => codecs::avc_profile(&video.codec_private),
        Some("hevc") => codecs::hevc_profile(&video.codec_private),
        Some("av1") => codecs::av1_profile(&video.codec_private),
        _ => None,
    };
    info.width = u32::try_from(video.width).ok().filter(|&w| w > 0);
    info.height = u32::try_from(video.height).ok().filter(|&h| h > 0);
    info.rotation = Some(projection_rotation(&video.projection));
    if video.default_duration > 0 {
        info.frame_rate =
            Rational::approximate(1_000_000_000, video.default_duration, FRAME_RATE_MAX_PART);
    }
}

fn fill_audio(info: &mut MediaInfo, audio: &TrackEntry) {
    let bit_depth = u32::try_from(audio.bit_depth).unwrap_or(0);
    let codec = codecs::matroska_codec(&audio.codec_id, &audio.codec_private, bit_depth);
    info.audio_codec =
        Some(codec.map_or_else(|| format!("unknown ({})", audio.codec_id), str::to_owned));
    info.audio_channels = u32::try_from(audio.channels).ok().filter(|&c| c > 0);
    let rate = audio
        .output_sample_rate
        .or(audio.sample_rate)
        .unwrap_or(0.0);
    if (1.0..1e7).contains(&rate) {
        // The range check above keeps the conversion exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rounded = rate.round() as u32;
        info.audio_sample_rate = Some(rounded);
    }
    if codec == Some("opus") {
        // Opus always decodes at 48 kHz, whatever rate the header stores.
        info.audio_sample_rate = Some(48_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn id_bytes(id: u32) -> Vec<u8> {
        let bytes = id.to_be_bytes();
        let skip = bytes.iter().position(|&b| b != 0).unwrap_or(3);
        bytes[skip..].to_vec()
    }

    /// An element with an 8-byte size, as some muxers write.
    fn element(id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = id_bytes(id);
        let size = body.len() as u64 | (1 << 56);
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn unknown_size(id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = id_bytes(id);
        out.push(0xFF);
        out.extend_from_slice(body);
        out
    }

    fn uint(id: u32, value: u64) -> Vec<u8> {
        element(id, &value.to_be_bytes())
    }

    fn header(doc_type: &str) -> Vec<u8> {
        element(ID_EBML, &element(ID_DOC_TYPE, doc_type.as_bytes()))
    }

    fn info(duration_ms: Option<f64>) -> Vec<u8> {
        let mut body = uint(ID_TIMESTAMP_SCALE, 1_000_000);
        if let Some(duration) = duration_ms {
            body.extend(element(ID_DURATION, &duration.to_be_bytes()));
        }
        element(ID_INFO, &body)
    }

    fn tracks() -> Vec<u8> {
        let video = [
            uint(ID_TRACK_NUMBER, 1),
            uint(ID_TRACK_TYPE, 1),
            element(ID_CODEC_ID, b"V_VP9"),
            uint(ID_DEFAULT_DURATION, 33_366_667),
            element(
                ID_VIDEO,
                &[uint(ID_PIXEL_WIDTH, 640), uint(ID_PIXEL_HEIGHT, 360)].concat(),
            ),
        ]
        .concat();
        let audio = [
            uint(ID_TRACK_NUMBER, 2),
            uint(ID_TRACK_TYPE, 2),
            element(ID_CODEC_ID, b"A_OPUS"),
            element(
                ID_AUDIO,
                &[
                    element(ID_SAMPLING_FREQUENCY, &44_100f64.to_be_bytes()),
                    uint(ID_CHANNELS, 2),
                ]
                .concat(),
            ),
        ]
        .concat();
        let subtitle = [
            uint(ID_TRACK_TYPE, 0x11),
            element(ID_CODEC_ID, b"S_TEXT/UTF8"),
        ]
        .concat();
        element(
            ID_TRACKS,
            &[
                element(ID_TRACK_ENTRY, &video),
                element(ID_TRACK_ENTRY, &audio),
                element(ID_TRACK_ENTRY, &subtitle),
            ]
            .concat(),
        )
    }

    fn probe_bytes(data: Vec<u8>) -> Result<MediaInfo> {
        let len = data.len() as u64;
        let mut reader = Reader::new(Cursor::new(data), len, 1 << 20);
        probe(&mut reader)
    }

    #[test]
    fn broken_headers_and_missing_elements_are_named() {
        let void = element(0xEC, &[0; 4]);
        let no_tracks = element(ID_SEGMENT, &info(Some(1000.0)));
        // A Segment that declares 100 bytes more than the file holds after its Info.
        let cut_before_tracks = {
            let body = info(None);
            let mut segment = id_bytes(ID_SEGMENT);
            segment.extend_from_slice(&((body.len() as u64 + 100) | (1 << 56)).to_be_bytes());
            segment.extend(body);
            segment
        };
        let mut unknown_ebml_size = id_bytes(ID_EBML);
        unknown_ebml_size.push(0xFF);
        let cases: [(Vec<u8>, ErrorKind, &str); 7] = [
            (element(ID_SEGMENT, &[]), ErrorKind::Corrupt, "EBML header"),
            (unknown_ebml_size, ErrorKind::Corrupt, "unknown size"),
            (header("mkv3d"), ErrorKind::Unsupported, "'mkv3d'"),
            (
                [header("matroska"), void].concat(),
                ErrorKind::Incomplete,
                "Segment",
            ),
            (
                [header("matroska"), unknown_size(0xEC, &[0; 8])].concat(),
                ErrorKind::Corrupt,
                "no Segment",
            ),
            (
                [header("matroska"), no_tracks].concat(),
                ErrorKind::Corrupt,
                "no Tracks",
            ),
            (
                [header("matroska"), cut_before_tracks].concat(),
                ErrorKind::Incomplete,
                "before its Tracks",
            ),
        ];
        for (file, kind, text) in cases {
            let err = probe_bytes(file).unwrap_err();

            assert_eq!(err.kind(), kind, "{err}");
            assert!(err.message().contains(text), "{err}");
        }
    }

    #[test]
    fn webm_headers_give_every_field() {
        let cluster = element(ID_CLUSTER, &[0; 64]);
        let segment = element(
            ID_SEGMENT,
            &[info(Some(2500.0)), tracks(), cluster].concat(),
        );
        let info = probe_bytes([header("webm"), segment].concat()).unwrap();
        assert_eq!(info.container, "webm");
        assert_eq!(info.format_name, FORMAT_NAME);
        assert_eq!(info.duration_s, Some(2.5));
        assert_eq!((info.width, info.height), (Some(640), Some(360)));
        assert_eq!(info.frame_rate, Rational::new(30000, 1001));
        assert_eq!(info.video_codec.as_deref(), Some("vp9"));
        assert_eq!(info.audio_codec.as_deref(), Some("opus"));
        assert_eq!(info.audio_sample_rate, Some(48_000));
        assert_eq!(info.audio_channels, Some(2));
        assert_eq!(
            (
                info.video_streams,
                info.audio_streams,
                info.subtitle_streams
            ),
            (1, 1, 1)
        );
        assert!(info.complete);
    }

    /// Builds a block of `track` (numbers below 127) with `flags` and `frame`.
    fn block(track: u8, flags: u8, frame: &[u8]) -> Vec<u8> {
        [&[0x80 | track, 0, 0, flags][..], frame].concat()
    }

    fn webm_with_cluster(tracks: Vec<u8>, cluster: Vec<u8>) -> Result<MediaInfo> {
        let segment = element(ID_SEGMENT, &[info(Some(1000.0)), tracks, cluster].concat());
        probe_bytes([header("webm"), segment].concat())
    }

    #[test]
    fn first_video_frame_gives_the_profile() {
        // An audio block, a BlockGroup with only a BlockDuration, then a
        // BlockGroup whose Block after its BlockDuration contains a VP9 profile 2
        // frame.
        let block_duration = uint(0x9B, 40);
        let cluster = [
            uint(0xE7, 0),
            element(ID_SIMPLE_BLOCK, &block(2, 0x80, &[0xFC; 8])),
            element(ID_BLOCK_GROUP, &block_duration),
            element(
                ID_BLOCK_GROUP,
                &[
                    block_duration.clone(),
                    element(ID_BLOCK, &block(1, 0, &[0x90, 0, 0])),
                ]
                .concat(),
            ),
        ]
        .concat();

        let info = webm_with_cluster(tracks(), element(ID_CLUSTER, &cluster)).unwrap();
        assert_eq!(info.video_profile.as_deref(), Some("Profile 2"));

        let live = webm_with_cluster(tracks(), unknown_size(ID_CLUSTER, &cluster)).unwrap();
        assert_eq!(live.video_profile.as_deref(), Some("Profile 2"));
    }

    #[test]
    fn codec_private_sequence_header_gives_the_profile() {
        // MPEG-4 Visual object sequence header, profile_and_level 0xF5.
        let video = [
            uint(ID_TRACK_NUMBER, 1),
            uint(ID_TRACK_TYPE, 1),
            element(ID_CODEC_ID, b"V_MPEG4/ISO/ASP"),
            element(ID_CODEC_PRIVATE, &[0, 0, 1, 0xB0, 0xF5, 0, 0, 1, 0xB5]),
        ]
        .concat();
        let tracks = element(ID_TRACKS, &element(ID_TRACK_ENTRY, &video));

        let info = webm_with_cluster(tracks, element(ID_CLUSTER, &[])).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("mpeg4"));
        assert_eq!(
            info.video_profile.as_deref(),
            Some("Advanced Simple Profile")
        );
    }

    #[test]
    fn length_prefixed_h264_frames_are_not_searched() {
        // An avcC with an unnamed profile_idc (1), and a frame whose 4-byte
        // length prefix 00 00 01 67 looks like a start code and an SPS.
        let video = [
            uint(ID_TRACK_NUMBER, 1),
            uint(ID_TRACK_TYPE, 1),
            element(ID_CODEC_ID, b"V_MPEG4/ISO/AVC"),
            element(ID_CODEC_PRIVATE, &[1, 1, 0, 10, 0xFF, 0xE0, 0]),
        ]
        .concat();
        let tracks = element(ID_TRACKS, &element(ID_TRACK_ENTRY, &video));
        let mut frame = vec![0, 0, 1, 0x67];
        frame.extend_from_slice(&[
            0x64, 0x00, 0x0B, 0xAC, 0xD9, 0x42, 0x8D, 0xF9, 0x30, 0x11, 0x00, 0x00, 0x03, 0x00,
            0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0F, 0x14, 0x29, 0x96,
        ]);
        let cluster = element(ID_SIMPLE_BLOCK, &block(1, 0x80, &frame));

        let info = webm_with_cluster(tracks, element(ID_CLUSTER, &cluster)).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("h264"));
        assert_eq!(info.video_profile, None);
    }

    #[test]
    fn unreadable_first_frames_give_no_profile() {
        let vp9 = [0x90, 0, 0];
        let laced = element(ID_SIMPLE_BLOCK, &block(1, 0x82, &vp9));
        let info = webm_with_cluster(tracks(), element(ID_CLUSTER, &laced)).unwrap();
        assert_eq!(info.video_profile, None);

        let audio_only = element(ID_SIMPLE_BLOCK, &block(2, 0x80, &vp9));
        let info = webm_with_cluster(tracks(), element(ID_CLUSTER, &audio_only)).unwrap();
        assert_eq!(info.video_profile, None);

        // Header-stripped or encrypted frames do not start with the codec header.
        let video = [
            uint(ID_TRACK_NUMBER, 1),
            uint(ID_TRACK_TYPE, 1),
            element(ID_CODEC_ID, b"V_VP9"),
            element(ID_CONTENT_ENCODINGS, &[]),
        ]
        .concat();
        let encoded = element(ID_TRACKS, &element(ID_TRACK_ENTRY, &video));
        let frame = element(ID_SIMPLE_BLOCK, &block(1, 0x80, &vp9));
        let info = webm_with_cluster(encoded, element(ID_CLUSTER, &frame)).unwrap();
        assert_eq!(info.video_profile, None);
        assert_eq!(info.video_codec.as_deref(), Some("vp9"));
    }

    #[test]
    fn projection_roll_gives_ffprobes_rotation() {
        let pose = |kind, yaw, pitch, roll| Projection {
            kind,
            yaw,
            pitch,
            roll,
        };
        let cases = [
            (pose(0, 0.0, 0.0, 90.0), 90),
            (pose(0, 0.0, 0.0, 270.0), -90),
            // sin(180°) truncates to 0 in 16.16, so atan2 lands on -180.
            (pose(0, 0.0, 0.0, 180.0), -180),
            // The 16.16 matrix stores 29.998 degrees, which ffprobe truncates.
            (pose(0, 0.0, 0.0, 30.0), 29),
            // A mirrored picture: ffmpeg negates the roll.
            (pose(0, 180.0, 0.0, 90.0), -90),
            (pose(0, -180.0, 0.0, 90.0), -90),
            // Poses that are no flat rotation, and non-rectangular projections.
            (pose(0, 0.0, 10.0, 90.0), 0),
            (pose(0, 90.0, 0.0, 90.0), 0),
            (pose(1, 0.0, 0.0, 90.0), 0),
            (pose(0, 0.0, 0.0, f64::NAN), 0),
            (pose(0, 0.0, 0.0, 0.0), 0),
        ];
        for (projection, rotation) in cases {
            assert_eq!(projection_rotation(&projection), rotation, "{projection:?}");
        }
    }

    #[test]
    fn projection_element_sets_the_rotation() {
        let projection = element(
            ID_PROJECTION,
            &[
                uint(ID_PROJECTION_TYPE, 0),
                element(ID_PROJECTION_POSE_YAW, &0f32.to_be_bytes()),
                element(ID_PROJECTION_POSE_PITCH, &0f64.to_be_bytes()),
                element(ID_PROJECTION_POSE_ROLL, &90f32.to_be_bytes()),
            ]
            .concat(),
        );
        let video = [
            uint(ID_TRACK_NUMBER, 1),
            uint(ID_TRACK_TYPE, 1),
            element(ID_CODEC_ID, b"V_VP9"),
            element(ID_VIDEO, &[uint(ID_PIXEL_WIDTH, 64), projection].concat()),
        ]
        .concat();
        let tracks = element(ID_TRACKS, &element(ID_TRACK_ENTRY, &video));

        let info = webm_with_cluster(tracks, element(ID_CLUSTER, &[])).unwrap();

        assert_eq!(info.rotation, Some(90));
    }

    #[test]
    fn live_recording_without_duration_is_complete_with_no_duration() {
        let cluster = unknown_size(ID_CLUSTER, &[0; 64]);
        let segment = unknown_size(ID_SEGMENT, &[info(None), tracks(), cluster].concat());
        let info = probe_bytes([header("matroska"), segment].concat()).unwrap();
        assert_eq!(info.container, "matroska");
        assert_eq!(info.duration_s, None);
        assert!(info.complete);
    }

    #[test]
    fn segment_larger_than_the_file_is_incomplete() {
        let cluster = element(ID_CLUSTER, &[0; 640]);
        let mut file = [
            header("matroska"),
            element(
                ID_SEGMENT,
                &[info(Some(1000.0)), tracks(), cluster].concat(),
            ),
        ]
        .concat();
        file.truncate(file.len() - 300);
        let info = probe_bytes(file).unwrap();
        assert!(!info.complete);
    }

    #[test]
    fn file_cut_before_tracks_is_incomplete() {
        let mut file = [
            header("matroska"),
            element(ID_SEGMENT, &[info(Some(1000.0)), tracks()].concat()),
        ]
        .concat();
        file.truncate(80);
        let err = probe_bytes(file).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
    }

    #[test]
    fn tracks_after_clusters_are_found_through_the_seek_head() {
        let seek_entry = |id: u32, position: u64| {
            element(
                ID_SEEK,
                &[
                    element(ID_SEEK_ID, &id_bytes(id)),
                    uint(ID_SEEK_POSITION, position),
                ]
                .concat(),
            )
        };
        let info_element = info(Some(1000.0));
        let cluster = element(ID_CLUSTER, &[0; 100]);
        // SeekHead with two 8-byte-size entries has a fixed length here.
        let placeholder = element(
            ID_SEEK_HEAD,
            &[seek_entry(ID_INFO, 0), seek_entry(ID_TRACKS, 0)].concat(),
        );
        let info_at = placeholder.len() as u64;
        let tracks_at = info_at + (info_element.len() + cluster.len()) as u64;
        let seek_head = element(
            ID_SEEK_HEAD,
            &[
                seek_entry(ID_INFO, info_at),
                seek_entry(ID_TRACKS, tracks_at),
            ]
            .concat(),
        );
        assert_eq!(seek_head.len(), placeholder.len());
        let segment = element(
            ID_SEGMENT,
            &[seek_head, info_element, cluster, tracks()].concat(),
        );
        let info = probe_bytes([header("matroska"), segment].concat()).unwrap();
        assert_eq!(info.video_codec.as_deref(), Some("vp9"));
        assert_eq!(info.duration_s, Some(1.0));
    }

    #[test]
    fn zero_byte_vint_is_corrupt() {
        let mut file = header("matroska");
        // The first byte of the header's size: zero is no valid vint length.
        file[4] = 0;
        let err = probe_bytes(file).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("invalid EBML"), "{err}");
    }

    #[test]
    fn other_doc_types_are_unsupported() {
        let err = probe_bytes(header("hdmvsubs")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("hdmvsubs"), "{err}");
    }

    #[test]
    fn huge_tracks_length_is_rejected_before_allocation() {
        let mut tracks_header = id_bytes(ID_TRACKS);
        tracks_header.extend_from_slice(&(0x00FF_FFFF_FFFF_FFF0u64 | (1 << 56)).to_be_bytes());
        let segment = unknown_size(ID_SEGMENT, &tracks_header);
        let err = probe_bytes([header("webm"), segment].concat()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn garbage_after_the_magic_does_not_panic() {
        let mut file = vec![0x1A, 0x45, 0xDF, 0xA3];
        file.extend((0..2000u32).map(|i| u8::try_from(i * 7919 % 251).unwrap()));
        assert!(probe_bytes(file).is_err());
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::super::corpus;

    #[test]
    fn corpus_matroska_files_match_ffprobe() {
        // Without DefaultDuration ffprobe estimates the rate from the first
        // packets' timestamps; the probe reports none.
        let known = [
            ("annex-b-avc.mkv", "frame_rate"),
            ("bbb-vp9-opus.webm", "frame_rate"),
            ("chrome57.webm", "frame_rate"),
        ];
        let report = corpus::run(&[".mkv", ".webm"], &known, crate::probe::probe_reader);
        if report.is_empty() {
            eprintln!("skipped: no Matroska file with ffprobe JSON in the corpus folders");
            return;
        }
        let failures: Vec<_> = report.iter().filter(|(_, p)| !p.is_empty()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

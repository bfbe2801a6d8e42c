//! ISO base media (mp4, mov, m4v, 3gp, fragmented mp4) header parser.
//!
//! The top level is walked box by box with seeks, reading only each box
//! header, so `mdat` is never read. The `moov` box is read whole (bounded by
//! the read budget) and parsed in memory; `moof` boxes of fragmented files are
//! read while a smaller fragment budget lasts, and the last one is always
//! read so the duration covers the whole file.

use std::io::{Read, Seek};

use super::bytes::ByteCursor;
use super::codecs;
use super::reader::Reader;
use super::{MediaInfo, Rational};
use crate::error::{Error, Result};

/// ffprobe's `format_name` for every file of the family.
pub const FORMAT_NAME: &str = "mov,mp4,m4a,3gp,3g2,mj2";

/// Largest `moov` body read into memory.
const MAX_MOOV_BYTES: usize = 12 * 1024 * 1024;
/// Largest `moof` body read into memory.
const MAX_MOOF_BYTES: usize = 1024 * 1024;
/// Bytes of `moof` bodies read before the scan reads only the last one.
const FRAGMENT_BUDGET: u64 = 2 * 1024 * 1024;
/// Top-level boxes walked before giving up on reaching the end of the file.
const MAX_TOP_LEVEL_BOXES: u32 = 200_000;

/// A value that means "unknown" in 32- and 64-bit duration fields.
const UNKNOWN_DURATION_32: u64 = 0xFFFF_FFFF;

/// Reads the container's headers from offset 0 of `reader`.
pub fn probe<R: Read + Seek>(reader: &mut Reader<R>) -> Result<MediaInfo> {
    let scan = scan_top_level(reader)?;
    let Some(moov) = scan.moov.as_deref() else {
        return Err(missing_moov(&scan));
    };
    let mut movie = parse_moov(moov)?;
    for moof in &scan.moofs {
        parse_moof(moof, &mut movie)?;
    }
    Ok(build_info(&scan, &movie))
}

// ---------------------------------------------------------------------------
// Top level

#[derive(Default)]
struct TopLevel {
    major_brand: Option<[u8; 4]>,
    compatible_brands: Vec<[u8; 4]>,
    moov: Option<Vec<u8>>,
    moofs: Vec<Vec<u8>>,
    moof_count: u32,
    complete: bool,
    /// The box that runs past the end of the file, with its offset.
    truncated_box: Option<([u8; 4], u64)>,
}

fn scan_top_level<R: Read + Seek>(reader: &mut Reader<R>) -> Result<TopLevel> {
    let len = reader.len();
    let mut scan = TopLevel {
        complete: true,
        ..TopLevel::default()
    };
    let mut pos = 0u64;
    let mut fragment_bytes = 0u64;
    let mut skipped_moof: Option<(u64, u64)> = None;
    let mut count = 0u32;
    while pos < len {
        count += 1;
        if count > MAX_TOP_LEVEL_BOXES {
            // Completeness stays unproven; the caller still gets the headers.
            break;
        }
        if len - pos < 8 {
            scan.complete = false;
            scan.truncated_box = Some((*b"????", pos));
            break;
        }
        reader.seek_to(pos)?;
        let header: [u8; 8] = reader.read_array()?;
        let kind = [header[4], header[5], header[6], header[7]];
        if !is_box_type(kind) {
            if scan.moov.is_some() {
                // Trailing bytes after a whole movie: players ignore them too.
                break;
            }
            return Err(Error::corrupt(format!(
                "invalid box type {} at offset {pos}; the file is not ISO base media or is damaged",
                fourcc_display(kind)
            )));
        }
        let size32 = u64::from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let (header_len, size) = match size32 {
            0 => (8, len - pos),
            1 => {
                if len - pos < 16 {
                    scan.complete = false;
                    scan.truncated_box = Some((kind, pos));
                    break;
                }
                (16, reader.read_u64_be()?)
            }
            n => (8, n),
        };
        if size < header_len {
            return Err(Error::corrupt(format!(
                "box {} at offset {pos} declares {size} bytes, less than its own header",
                fourcc_display(kind)
            )));
        }
        let end = pos.saturating_add(size);
        let whole = end <= len;
        if !whole {
            scan.complete = false;
            scan.truncated_box = Some((kind, pos));
        }
        let body_len = size - header_len;
        match &kind {
            b"ftyp" if scan.major_brand.is_none() => {
                let body = reader.read_vec(body_len.min(len - pos - header_len).min(1024), 1024)?;
                parse_ftyp(&body, &mut scan);
            }
            b"moov" if scan.moov.is_none() => {
                if !whole {
                    return Err(Error::incomplete(format!(
                        "the moov box at offset {pos} declares {size} bytes but the file ends \
                         at {len}; the file is still being written or was cut short"
                    )));
                }
                scan.moov = Some(read_moov(reader, pos + header_len, body_len)?);
            }
            b"moof" if whole => {
                scan.moof_count += 1;
                if fragment_bytes + body_len <= FRAGMENT_BUDGET {
                    fragment_bytes += body_len;
                    scan.moofs.push(reader.read_vec(body_len, MAX_MOOF_BYTES)?);
                    skipped_moof = None;
                } else {
                    skipped_moof = Some((pos + header_len, body_len));
                }
            }
            _ => {}
        }
        if !whole {
            break;
        }
        pos = end;
    }
    if let Some((offset, body_len)) = skipped_moof {
        // The last fragment's decode time plus its length gives the end time
        // even when the fragments in between were not read.
        reader.seek_to(offset)?;
        scan.moofs.push(reader.read_vec(body_len, MAX_MOOF_BYTES)?);
    }
    Ok(scan)
}

/// Reads the children of `moov` that the probe uses, skipping user data
/// (`udta`, `meta`: iTunes tags and cover art, often most of the box) and
/// padding. Returns them re-assembled as a box list.
fn read_moov<R: Read + Seek>(reader: &mut Reader<R>, start: u64, len: u64) -> Result<Vec<u8>> {
    let end = start + len;
    let mut out = Vec::new();
    let mut pos = start;
    while end - pos >= 8 {
        reader.seek_to(pos)?;
        let header: [u8; 8] = reader.read_array()?;
        let kind = [header[4], header[5], header[6], header[7]];
        let size32 = u64::from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let (header_len, size) = match size32 {
            0 => (8, end - pos),
            1 if end - pos >= 16 => (16, reader.read_u64_be()?),
            n => (8, n),
        };
        if size < header_len {
            return Err(Error::corrupt(format!(
                "box {} at offset {pos} declares {size} bytes, less than its own header",
                fourcc_display(kind)
            )));
        }
        // A child that overruns its parent is cut at the parent's end.
        let size = size.min(end - pos);
        if !matches!(&kind, b"udta" | b"meta" | b"free" | b"skip" | b"wide") {
            let room = MAX_MOOV_BYTES.saturating_sub(out.len());
            let body = reader.read_vec(size - header_len, room.saturating_sub(8))?;
            let boxed_len = u32::try_from(body.len() + 8).map_err(|_| {
                Error::corrupt(format!(
                    "box {} at offset {pos} is too large",
                    fourcc_display(kind)
                ))
            })?;
            out.extend_from_slice(&boxed_len.to_be_bytes());
            out.extend_from_slice(&kind);
            out.extend_from_slice(&body);
        }
        pos += size;
    }
    Ok(out)
}

fn missing_moov(scan: &TopLevel) -> Error {
    if let Some((kind, offset)) = scan.truncated_box {
        return Error::incomplete(format!(
            "the file ends inside the {} box at offset {offset} before any moov box; it is \
             still being written or was cut short",
            fourcc_display(kind)
        ));
    }
    if scan.moof_count > 0 {
        return Error::corrupt(
            "no moov box: this is a media segment (moof) without its initialization segment; \
             probe the initialization segment or the two joined",
        );
    }
    Error::corrupt("no moov box: the file has no movie header")
}

fn parse_ftyp(body: &[u8], scan: &mut TopLevel) {
    if body.len() >= 4 {
        scan.major_brand = Some([body[0], body[1], body[2], body[3]]);
    }
    for chunk in body.get(8..).unwrap_or_default().chunks_exact(4) {
        scan.compatible_brands
            .push([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
}

/// Checks that four bytes look like a box type: printable ASCII (or the
/// 0xA9 that QuickTime metadata types start with).
fn is_box_type(kind: [u8; 4]) -> bool {
    kind.iter()
        .all(|&b| (0x20..=0x7E).contains(&b) || b == 0xA9)
}

fn fourcc_display(kind: [u8; 4]) -> String {
    let text: String = kind
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    format!("'{text}'")
}

// ---------------------------------------------------------------------------
// Box trees in memory

/// Iterates over the child boxes in `data`. A child whose size runs past its
/// parent is cut at the parent's end, as players do.
struct Children<'a> {
    data: &'a [u8],
    pos: usize,
}

fn children(data: &[u8]) -> Children<'_> {
    Children { data, pos: 0 }
}

impl<'a> Iterator for Children<'a> {
    type Item = ([u8; 4], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..)?;
        if rest.len() < 8 {
            return None;
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (header_len, size) = match size32 {
            0 => (8usize, rest.len()),
            1 => {
                let large = rest.get(8..16)?;
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(large);
                let size = usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX);
                (16, size)
            }
            n => (8, usize::try_from(n).unwrap_or(usize::MAX)),
        };
        if size < header_len {
            self.pos = self.data.len();
            return None;
        }
        let size = size.min(rest.len());
        self.pos += size;
        Some((kind, &rest[header_len..size]))
    }
}

fn find_child(data: &[u8], kind: [u8; 4]) -> Option<&[u8]> {
    children(data)
        .find(|(k, _)| *k == kind)
        .map(|(_, body)| body)
}

// ---------------------------------------------------------------------------
// moov

#[derive(Debug, Default)]
struct Movie {
    timescale: u32,
    duration: u64,
    fragment_duration: Option<u64>,
    tracks: Vec<Track>,
    trex_durations: Vec<(u32, u32)>,
}

#[derive(Debug, Default)]
struct Track {
    id: u32,
    handler: [u8; 4],
    timescale: u32,
    media_duration: u64,
    tkhd_width: u32,
    tkhd_height: u32,
    matrix: [i32; 4],
    entry: SampleEntry,
    stts_samples: u64,
    stts_duration: u64,
    frag_samples: u64,
    frag_duration: u64,
    frag_end: Option<u64>,
}

#[derive(Debug, Default)]
struct SampleEntry {
    fourcc: [u8; 4],
    codec: Option<&'static str>,
    profile: Option<String>,
    width: u32,
    height: u32,
    channels: u32,
    sample_rate: u32,
}

fn parse_moov(moov: &[u8]) -> Result<Movie> {
    let mut movie = Movie::default();
    for (kind, body) in children(moov) {
        match &kind {
            b"mvhd" => parse_mvhd(body, &mut movie)?,
            b"trak" => {
                if let Some(track) = parse_trak(body)? {
                    movie.tracks.push(track);
                }
            }
            b"mvex" => parse_mvex(body, &mut movie)?,
            _ => {}
        }
    }
    if movie.timescale == 0 {
        return Err(Error::corrupt(
            "the moov box has no valid mvhd (movie header)",
        ));
    }
    Ok(movie)
}

fn parse_mvhd(body: &[u8], movie: &mut Movie) -> Result<()> {
    let mut cur = ByteCursor::new(body, "mvhd box");
    let version = cur.u8()?;
    cur.skip(3)?;
    if version == 1 {
        cur.skip(16)?;
        movie.timescale = cur.u32_be()?;
        movie.duration = cur.u64_be()?;
        if movie.duration == u64::MAX {
            movie.duration = 0;
        }
    } else {
        cur.skip(8)?;
        movie.timescale = cur.u32_be()?;
        movie.duration = u64::from(cur.u32_be()?);
        if movie.duration == UNKNOWN_DURATION_32 {
            movie.duration = 0;
        }
    }
    Ok(())
}

fn parse_mvex(body: &[u8], movie: &mut Movie) -> Result<()> {
    for (kind, child) in children(body) {
        let mut cur = ByteCursor::new(child, "mvex child box");
        match &kind {
            b"mehd" => {
                let version = cur.u8()?;
                cur.skip(3)?;
                let value = if version == 1 {
                    cur.u64_be()?
                } else {
                    u64::from(cur.u32_be()?)
                };
                movie.fragment_duration = Some(value);
            }
            b"trex" => {
                cur.skip(4)?;
                let track_id = cur.u32_be()?;
                cur.skip(4)?;
                let default_duration = cur.u32_be()?;
                movie.trex_durations.push((track_id, default_duration));
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_trak(body: &[u8]) -> Result<Option<Track>> {
    let mut track = Track {
        matrix: [0x1_0000, 0, 0, 0x1_0000],
        ..Track::default()
    };
    let Some(mdia) = find_child(body, *b"mdia") else {
        return Ok(None);
    };
    if let Some(tkhd) = find_child(body, *b"tkhd") {
        parse_tkhd(tkhd, &mut track)?;
    }
    if let Some(hdlr) = find_child(mdia, *b"hdlr") {
        let mut cur = ByteCursor::new(hdlr, "hdlr box");
        cur.skip(8)?;
        track.handler = cur.array()?;
    }
    if let Some(mdhd) = find_child(mdia, *b"mdhd") {
        parse_mdhd(mdhd, &mut track)?;
    }
    let stbl = find_child(mdia, *b"minf").and_then(|minf| find_child(minf, *b"stbl"));
    if let Some(stbl) = stbl {
        if let Some(stsd) = find_child(stbl, *b"stsd") {
            track.entry = parse_stsd(stsd, track.handler)?;
        }
        if let Some(stts) = find_child(stbl, *b"stts") {
            parse_stts(stts, &mut track)?;
        }
        check_chunk_tables(stbl, track.id)?;
    }
    Ok(Some(track))
}

/// Rejects a track whose sample-to-chunk table (`stsc`) starts its last run
/// at a chunk that the chunk offset table (`stco` or `co64`) does not list:
/// no player can locate those samples, and ffprobe 5.1 fails on the file
/// ("contradictionary STSC and STCO"). Reads two counts and one entry, so
/// the check costs the same for a table of any size.
fn check_chunk_tables(stbl: &[u8], track_id: u32) -> Result<()> {
    let Some(stsc) = find_child(stbl, *b"stsc") else {
        return Ok(());
    };
    let offsets = find_child(stbl, *b"stco")
        .map(|body| (body, "stco"))
        .or_else(|| find_child(stbl, *b"co64").map(|body| (body, "co64")));
    let Some((offsets, offsets_name)) = offsets else {
        return Ok(());
    };
    let mut cur = ByteCursor::new(stsc, "stsc box");
    cur.skip(4)?;
    let declared = cur.u32_be()?;
    // The last entry the box has bytes for; each entry is three u32 fields.
    let present = usize::try_from(declared)
        .unwrap_or(usize::MAX)
        .min(cur.remaining() / 12);
    if present == 0 {
        return Ok(());
    }
    cur.skip((present - 1) * 12)?;
    let last_first_chunk = cur.u32_be()?;
    // The declared chunk count, as ffprobe takes it: trusting it over the
    // box size can only let a damaged file through, never reject a good one.
    let mut cur = ByteCursor::new(offsets, "chunk offset box");
    cur.skip(4)?;
    let chunks = cur.u32_be()?;
    if last_first_chunk > chunks {
        return Err(Error::corrupt(format!(
            "track {track_id}: the sample-to-chunk table (stsc) starts a run at chunk \
             {last_first_chunk}, but the chunk offset table ({offsets_name}) has only \
             {chunks} entries; the sample table is damaged, so re-mux the file from its source"
        )));
    }
    Ok(())
}

fn parse_tkhd(body: &[u8], track: &mut Track) -> Result<()> {
    let mut cur = ByteCursor::new(body, "tkhd box");
    let version = cur.u8()?;
    cur.skip(3)?;
    if version == 1 {
        cur.skip(16)?;
        track.id = cur.u32_be()?;
        cur.skip(4 + 8)?;
    } else {
        cur.skip(8)?;
        track.id = cur.u32_be()?;
        cur.skip(4 + 4)?;
    }
    // reserved(8), layer(2), alternate_group(2), volume(2), reserved(2)
    cur.skip(16)?;
    let a = cur.i32_be()?;
    let b = cur.i32_be()?;
    cur.skip(4)?;
    let c = cur.i32_be()?;
    let d = cur.i32_be()?;
    cur.skip(16)?;
    track.matrix = [a, b, c, d];
    track.tkhd_width = cur.u32_be()? >> 16;
    track.tkhd_height = cur.u32_be()? >> 16;
    Ok(())
}

fn parse_mdhd(body: &[u8], track: &mut Track) -> Result<()> {
    let mut cur = ByteCursor::new(body, "mdhd box");
    let version = cur.u8()?;
    cur.skip(3)?;
    if version == 1 {
        cur.skip(16)?;
        track.timescale = cur.u32_be()?;
        track.media_duration = cur.u64_be()?;
        if track.media_duration == u64::MAX {
            track.media_duration = 0;
        }
    } else {
        cur.skip(8)?;
        track.timescale = cur.u32_be()?;
        track.media_duration = u64::from(cur.u32_be()?);
        if track.media_duration == UNKNOWN_DURATION_32 {
            track.media_duration = 0;
        }
    }
    Ok(())
}

fn parse_stts(body: &[u8], track: &mut Track) -> Result<()> {
    let mut cur = ByteCursor::new(body, "stts box");
    cur.skip(4)?;
    let entries = cur.u32_be()?;
    // The entry count is only trusted as far as the box has bytes for it.
    for _ in 0..entries.min(u32::try_from(cur.remaining() / 8).unwrap_or(u32::MAX)) {
        let count = u64::from(cur.u32_be()?);
        let delta = u64::from(cur.u32_be()?);
        track.stts_samples = track.stts_samples.saturating_add(count);
        track.stts_duration = track
            .stts_duration
            .saturating_add(count.saturating_mul(delta));
    }
    Ok(())
}

fn parse_stsd(body: &[u8], handler: [u8; 4]) -> Result<SampleEntry> {
    let mut cur = ByteCursor::new(body, "stsd box");
    cur.skip(8)?;
    let Some((fourcc, entry)) = children(cur.rest()).next() else {
        return Ok(SampleEntry::default());
    };
    let mut sample = SampleEntry {
        fourcc,
        ..SampleEntry::default()
    };
    match &handler {
        b"vide" => parse_visual_entry(entry, &mut sample)?,
        b"soun" => parse_audio_entry(entry, &mut sample)?,
        _ => sample.codec = codecs::iso_subtitle_codec(fourcc),
    }
    Ok(sample)
}

fn parse_visual_entry(entry: &[u8], sample: &mut SampleEntry) -> Result<()> {
    let mut cur = ByteCursor::new(entry, "visual sample entry");
    // reserved(6), data_reference_index(2), pre_defined/reserved(16)
    cur.skip(24)?;
    sample.width = u32::from(cur.u16_be()?);
    sample.height = u32::from(cur.u16_be()?);
    // resolution(8), reserved(4), frame_count(2), compressorname(32), depth(2), pre_defined(2)
    cur.skip(50)?;
    let mut fourcc = sample.fourcc;
    let boxes = cur.rest();
    if let Some(sinf) = find_child(boxes, *b"sinf") {
        // Encrypted entries (`encv`) name the real codec in `sinf/frma`.
        if let Some(frma) = find_child(sinf, *b"frma").filter(|f| f.len() >= 4) {
            fourcc = [frma[0], frma[1], frma[2], frma[3]];
        }
    }
    sample.codec = codecs::iso_video_codec(fourcc);
    sample.profile = codecs::prores_profile(fourcc).map(str::to_owned);
    for (kind, child) in children(boxes) {
        match &kind {
            b"avcC" => sample.profile = codecs::avc_profile(child),
            b"hvcC" => sample.profile = codecs::hevc_profile(child),
            b"av1C" => sample.profile = codecs::av1_profile(child),
            b"vpcC" => sample.profile = codecs::vpx_profile(child),
            b"esds" => {
                if let Some(esds) = parse_esds(child) {
                    sample.codec = codecs::mp4_object_type(esds.object_type).or(sample.codec);
                    if sample.codec == Some("mpeg4") {
                        sample.profile = codecs::mpeg4_visual_profile(esds.decoder_specific);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_audio_entry(entry: &[u8], sample: &mut SampleEntry) -> Result<()> {
    let mut cur = ByteCursor::new(entry, "audio sample entry");
    cur.skip(8)?;
    let version = cur.u16_be()?;
    cur.skip(6)?;
    sample.channels = u32::from(cur.u16_be()?);
    let sample_size = cur.u16_be()?;
    cur.skip(4)?;
    sample.sample_rate = cur.u32_be()? >> 16;
    match version {
        // QuickTime sound description v1 adds four 32-bit fields.
        1 => cur.skip(16)?,
        // Version 2 stores the rate as a float and the channel count again.
        2 => {
            cur.skip(4)?;
            let rate = f64::from_bits(cur.u64_be()?);
            sample.channels = cur.u32_be()?;
            cur.skip(20)?;
            if rate.is_finite() && rate > 0.0 && rate < 1e7 {
                // The range check above makes the conversion exact enough.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let rounded = rate.round() as u32;
                sample.sample_rate = rounded;
            }
        }
        _ => {}
    }
    let boxes = cur.rest();
    let mut fourcc = sample.fourcc;
    if let Some(frma) = find_child(boxes, *b"sinf")
        .and_then(|sinf| find_child(sinf, *b"frma"))
        .filter(|f| f.len() >= 4)
    {
        fourcc = [frma[0], frma[1], frma[2], frma[3]];
    }
    let little_endian = find_child(boxes, *b"wave")
        .and_then(|wave| find_child(wave, *b"enda"))
        .is_some_and(|enda| enda.last() == Some(&1));
    sample.codec = codecs::iso_audio_codec(fourcc, sample_size, little_endian);
    // QuickTime wraps the MPEG-4 descriptor in a `wave` box.
    let esds = find_child(boxes, *b"esds")
        .or_else(|| find_child(boxes, *b"wave").and_then(|wave| find_child(wave, *b"esds")));
    if let Some(esds) = esds.and_then(parse_esds) {
        sample.codec = codecs::mp4_object_type(esds.object_type).or(sample.codec);
        if sample.codec == Some("aac") {
            if let Some(config) = codecs::parse_audio_specific_config(esds.decoder_specific) {
                if config.sample_rate > 0 {
                    sample.sample_rate = config.sample_rate;
                }
                if config.channels > 0 {
                    sample.channels = config.channels;
                }
            }
        }
    }
    if let Some(pcm) = find_child(boxes, *b"pcmC") {
        sample.codec = codecs::iso_pcm_codec(pcm, &fourcc).or(sample.codec);
    }
    match sample.codec {
        // Opus always decodes at 48 kHz, whatever rate the entry stores.
        Some("opus") => sample.sample_rate = 48_000,
        Some("amr_nb") => (sample.sample_rate, sample.channels) = (8_000, 1),
        Some("amr_wb") => (sample.sample_rate, sample.channels) = (16_000, 1),
        _ => {}
    }
    Ok(())
}

struct Esds<'a> {
    object_type: u8,
    decoder_specific: &'a [u8],
}

/// Parses an `esds` body: the MPEG-4 ES descriptor with its decoder config.
fn parse_esds(body: &[u8]) -> Option<Esds<'_>> {
    let mut cur = ByteCursor::new(body.get(4..)?, "esds box");
    let (tag, len) = read_descriptor_header(&mut cur)?;
    let mut es = ByteCursor::new(cur.take(len.min(cur.remaining())).ok()?, "ES descriptor");
    if tag != 0x03 {
        return None;
    }
    es.skip(2).ok()?;
    let flags = es.u8().ok()?;
    if flags & 0x80 != 0 {
        es.skip(2).ok()?;
    }
    if flags & 0x40 != 0 {
        let url_len = es.u8().ok()?;
        es.skip(usize::from(url_len)).ok()?;
    }
    if flags & 0x20 != 0 {
        es.skip(2).ok()?;
    }
    let (tag, len) = read_descriptor_header(&mut es)?;
    if tag != 0x04 {
        return None;
    }
    let mut config = ByteCursor::new(es.take(len.min(es.remaining())).ok()?, "decoder config");
    let object_type = config.u8().ok()?;
    config.skip(12).ok()?;
    let mut decoder_specific: &[u8] = &[];
    if let Some((0x05, len)) = read_descriptor_header(&mut config) {
        decoder_specific = config.take(len.min(config.remaining())).ok()?;
    }
    Some(Esds {
        object_type,
        decoder_specific,
    })
}

fn read_descriptor_header(cur: &mut ByteCursor<'_>) -> Option<(u8, usize)> {
    let tag = cur.u8().ok()?;
    let mut len = 0usize;
    for _ in 0..4 {
        let byte = cur.u8().ok()?;
        len = (len << 7) | usize::from(byte & 0x7F);
        if byte & 0x80 == 0 {
            break;
        }
    }
    Some((tag, len))
}

// ---------------------------------------------------------------------------
// Fragments

fn parse_moof(moof: &[u8], movie: &mut Movie) -> Result<()> {
    for (kind, traf) in children(moof) {
        if &kind == b"traf" {
            parse_traf(traf, movie)?;
        }
    }
    Ok(())
}

fn parse_traf(traf: &[u8], movie: &mut Movie) -> Result<()> {
    let Some(tfhd) = find_child(traf, *b"tfhd") else {
        return Ok(());
    };
    let mut cur = ByteCursor::new(tfhd, "tfhd box");
    let flags = cur.u32_be()? & 0x00FF_FFFF;
    let track_id = cur.u32_be()?;
    if flags & 0x01 != 0 {
        cur.skip(8)?;
    }
    if flags & 0x02 != 0 {
        cur.skip(4)?;
    }
    let trex_default = movie
        .trex_durations
        .iter()
        .find(|(id, _)| *id == track_id)
        .map_or(0, |(_, duration)| *duration);
    let default_duration = if flags & 0x08 != 0 {
        cur.u32_be()?
    } else {
        trex_default
    };
    let Some(track) = movie.tracks.iter_mut().find(|t| t.id == track_id) else {
        return Ok(());
    };
    let mut base_time = None;
    let (mut samples, mut duration) = (0u64, 0u64);
    for (kind, child) in children(traf) {
        match &kind {
            b"tfdt" => {
                let mut cur = ByteCursor::new(child, "tfdt box");
                let version = cur.u8()?;
                cur.skip(3)?;
                base_time = Some(if version == 1 {
                    cur.u64_be()?
                } else {
                    u64::from(cur.u32_be()?)
                });
            }
            b"trun" => {
                let (count, total) = parse_trun(child, default_duration)?;
                samples = samples.saturating_add(count);
                duration = duration.saturating_add(total);
            }
            _ => {}
        }
    }
    track.frag_samples = track.frag_samples.saturating_add(samples);
    track.frag_duration = track.frag_duration.saturating_add(duration);
    if let Some(base) = base_time {
        let end = base.saturating_add(duration);
        track.frag_end = Some(track.frag_end.map_or(end, |e| e.max(end)));
    }
    Ok(())
}

/// Returns the sample count and summed sample durations of one `trun`.
fn parse_trun(body: &[u8], default_duration: u32) -> Result<(u64, u64)> {
    let mut cur = ByteCursor::new(body, "trun box");
    let flags = cur.u32_be()? & 0x00FF_FFFF;
    let count = cur.u32_be()?;
    if flags & 0x01 != 0 {
        cur.skip(4)?;
    }
    if flags & 0x04 != 0 {
        cur.skip(4)?;
    }
    let per_sample = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count()
        * 4;
    if flags & 0x100 == 0 {
        return Ok((
            u64::from(count),
            u64::from(count) * u64::from(default_duration),
        ));
    }
    // Only as many samples as the box has bytes for are counted.
    let present = u32::try_from(cur.remaining() / per_sample).unwrap_or(u32::MAX);
    let mut total = 0u64;
    for _ in 0..count.min(present) {
        let sample = cur.take(per_sample)?;
        total += u64::from(u32::from_be_bytes([
            sample[0], sample[1], sample[2], sample[3],
        ]));
    }
    Ok((u64::from(count.min(present)), total))
}

// ---------------------------------------------------------------------------
// Result

fn build_info(scan: &TopLevel, movie: &Movie) -> MediaInfo {
    let mut info = MediaInfo {
        container: container_name(scan).to_owned(),
        format_name: FORMAT_NAME.to_owned(),
        complete: scan.complete,
        ..MediaInfo::default()
    };
    for track in &movie.tracks {
        match &track.handler {
            b"vide" => info.video_streams += 1,
            b"soun" => info.audio_streams += 1,
            b"sbtl" | b"subt" | b"text" | b"clcp" => info.subtitle_streams += 1,
            _ => {}
        }
    }
    if let Some(video) = movie.tracks.iter().find(|t| &t.handler == b"vide") {
        fill_video(&mut info, video);
    }
    if let Some(audio) = movie.tracks.iter().find(|t| &t.handler == b"soun") {
        info.audio_codec = audio.entry.codec.map(str::to_owned);
        info.audio_channels = Some(audio.entry.channels).filter(|&c| c > 0);
        info.audio_sample_rate = Some(audio.entry.sample_rate).filter(|&r| r > 0);
    }
    info.duration_s = movie_duration(movie);

    info
}

fn fill_video(info: &mut MediaInfo, video: &Track) {
    let entry = &video.entry;
    let (width, height) = if entry.width > 0 && entry.height > 0 {
        (entry.width, entry.height)
    } else {
        (video.tkhd_width, video.tkhd_height)
    };
    info.width = Some(width).filter(|&w| w > 0);
    info.height = Some(height).filter(|&h| h > 0);
    info.rotation = Some(rotation_from_matrix(video.matrix));
    info.video_codec = Some(entry.codec.map_or_else(
        || {
            format!(
                "unknown ({})",
                fourcc_display(entry.fourcc).trim_matches('\'')
            )
        },
        str::to_owned,
    ));
    info.video_profile.clone_from(&entry.profile);
    // ffprobe's avg_frame_rate for this family: every sample over the summed
    // sample durations, from the sample table and the fragments alike.
    let samples = video.stts_samples.saturating_add(video.frag_samples);
    let duration = video.stts_duration.saturating_add(video.frag_duration);
    info.frame_rate = Rational::new(u64::from(video.timescale).saturating_mul(samples), duration);
}

/// The rotation in degrees, counter-clockwise positive, that ffprobe 5.1
/// derives from a display matrix (a, b, c, d in 16.16 fixed point).
pub(crate) fn rotation_from_matrix(matrix: [i32; 4]) -> i32 {
    let [a, b, c, d] = matrix.map(|v| f64::from(v) / 65536.0);
    let scale_x = a.hypot(c);
    let scale_y = b.hypot(d);
    if scale_x == 0.0 || scale_y == 0.0 {
        return 0;
    }
    // The same operations as av_display_rotation_get, so an exact quarter
    // turn gives exactly 90. ffprobe prints the angle as an integer, which
    // truncates: a matrix for 30 degrees, rounded into 16.16, prints as 29.
    let degrees = -(b / scale_y).atan2(a / scale_x) * 180.0 / std::f64::consts::PI;
    // Within [-180, 180], so it fits an i32.
    #[allow(clippy::cast_possible_truncation)]
    let truncated = degrees as i32;
    truncated
}

fn movie_duration(movie: &Movie) -> Option<f64> {
    if movie.duration > 0 {
        return Some(movie.duration as f64 / f64::from(movie.timescale));
    }
    let fragmented = movie.tracks.iter().any(|t| t.frag_samples > 0);
    if fragmented {
        let end = movie
            .tracks
            .iter()
            .filter(|t| t.timescale > 0)
            .map(|t| {
                let end = t
                    .frag_end
                    .unwrap_or_else(|| t.media_duration.saturating_add(t.frag_duration));
                end as f64 / f64::from(t.timescale)
            })
            .fold(0.0, f64::max);
        return Some(end).filter(|&d| d > 0.0);
    }
    if let Some(fragment_duration) = movie.fragment_duration.filter(|&d| d > 0) {
        return Some(fragment_duration as f64 / f64::from(movie.timescale));
    }
    let longest = movie
        .tracks
        .iter()
        .filter(|t| t.timescale > 0)
        .map(|t| t.media_duration as f64 / f64::from(t.timescale))
        .fold(0.0, f64::max);
    Some(longest).filter(|&d| d > 0.0)
}

fn container_name(scan: &TopLevel) -> &'static str {
    let Some(major) = scan.major_brand else {
        return "mov";
    };
    match &major {
        b"qt  " => "mov",
        b"M4V " | b"M4VH" | b"M4VP" => "m4v",
        [b'3', b'g', b'p' | b'2', _] => "3gp",
        _ => "mp4",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::io::Cursor;

    fn boxed(kind: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(body.len() + 8)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(&kind);
        out.extend_from_slice(body);
        out
    }

    fn full(version_flags: u32, body: &[u8]) -> Vec<u8> {
        let mut out = version_flags.to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    fn mvhd(timescale: u32, duration: u32) -> Vec<u8> {
        let mut body = vec![0; 8];
        body.extend_from_slice(&timescale.to_be_bytes());
        body.extend_from_slice(&duration.to_be_bytes());
        body.extend_from_slice(&[0; 80]);
        boxed(*b"mvhd", &full(0, &body))
    }

    fn tkhd(id: u32, matrix: [i32; 4]) -> Vec<u8> {
        let mut body = vec![0; 8];
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&[0; 8 + 16]);
        let [a, b, c, d] = matrix;
        for value in [a, b, 0, c, d, 0, 0, 0, 0x4000_0000] {
            body.extend_from_slice(&value.to_be_bytes());
        }
        body.extend_from_slice(&(640u32 << 16).to_be_bytes());
        body.extend_from_slice(&(360u32 << 16).to_be_bytes());
        boxed(*b"tkhd", &full(0, &body))
    }

    fn avc1_entry(width: u16, height: u16) -> Vec<u8> {
        let mut entry = vec![0; 24];
        entry.extend_from_slice(&width.to_be_bytes());
        entry.extend_from_slice(&height.to_be_bytes());
        entry.extend_from_slice(&[0; 50]);
        // avcC: version 1, profile 100 (High), no constraint flags, level 31.
        entry.extend(boxed(*b"avcC", &[1, 100, 0, 31, 0xFF, 0xE0, 0]));
        boxed(*b"avc1", &entry)
    }

    fn video_trak(id: u32, timescale: u32, samples: u32, delta: u32, matrix: [i32; 4]) -> Vec<u8> {
        video_trak_with(id, timescale, samples, delta, matrix, &[])
    }

    /// A video track whose `stbl` also holds the boxes in `more_stbl`.
    fn video_trak_with(
        id: u32,
        timescale: u32,
        samples: u32,
        delta: u32,
        matrix: [i32; 4],
        more_stbl: &[u8],
    ) -> Vec<u8> {
        let entry = avc1_entry(640, 360);
        video_trak_entry(id, timescale, samples, delta, matrix, &entry, more_stbl)
    }

    /// A video track with `entry` (a whole box) as its sample description.
    fn video_trak_entry(
        id: u32,
        timescale: u32,
        samples: u32,
        delta: u32,
        matrix: [i32; 4],
        entry: &[u8],
        more_stbl: &[u8],
    ) -> Vec<u8> {
        let mut mdhd = vec![0; 8];
        mdhd.extend_from_slice(&timescale.to_be_bytes());
        mdhd.extend_from_slice(&(samples * delta).to_be_bytes());
        mdhd.extend_from_slice(&[0; 4]);
        let mut hdlr = vec![0; 4];
        hdlr.extend_from_slice(b"vide");
        hdlr.extend_from_slice(&[0; 13]);
        let mut stsd = 1u32.to_be_bytes().to_vec();
        stsd.extend_from_slice(entry);
        let mut stts = 1u32.to_be_bytes().to_vec();
        stts.extend_from_slice(&samples.to_be_bytes());
        stts.extend_from_slice(&delta.to_be_bytes());
        let stbl = [
            boxed(*b"stsd", &full(0, &stsd)),
            boxed(*b"stts", &full(0, &stts)),
            more_stbl.to_vec(),
        ]
        .concat();
        let minf = boxed(*b"stbl", &stbl);
        let mdia = [
            boxed(*b"mdhd", &full(0, &mdhd)),
            boxed(*b"hdlr", &full(0, &hdlr)),
            boxed(*b"minf", &minf),
        ]
        .concat();
        boxed(
            *b"trak",
            &[tkhd(id, matrix), boxed(*b"mdia", &mdia)].concat(),
        )
    }

    const IDENTITY: [i32; 4] = [0x1_0000, 0, 0, 0x1_0000];

    fn movie(matrix: [i32; 4]) -> Vec<u8> {
        // 30 samples of 1001 ticks at 30000 Hz: 29.97 fps for 1.001 s.
        let moov = [mvhd(1000, 1001), video_trak(1, 30000, 30, 1001, matrix)].concat();
        boxed(*b"moov", &moov)
    }

    fn ftyp(brand: [u8; 4]) -> Vec<u8> {
        boxed(*b"ftyp", &[&brand[..], &[0, 0, 0, 0], b"isom"].concat())
    }

    fn probe_bytes(data: Vec<u8>) -> Result<MediaInfo> {
        let len = data.len() as u64;
        let mut reader = Reader::new(Cursor::new(data), len, 1 << 20);
        probe(&mut reader)
    }

    #[test]
    fn faststart_file_gives_every_field() {
        let file = [ftyp(*b"mp42"), movie(IDENTITY), boxed(*b"mdat", &[0; 100])].concat();
        let info = probe_bytes(file).unwrap();
        assert_eq!(info.container, "mp4");
        assert_eq!(info.format_name, FORMAT_NAME);
        assert_eq!(info.duration_s, Some(1.001));
        assert_eq!((info.width, info.height), (Some(640), Some(360)));
        assert_eq!(info.frame_rate, Rational::new(30000, 1001));
        assert_eq!(info.video_codec.as_deref(), Some("h264"));
        assert_eq!(info.video_profile.as_deref(), Some("High"));
        assert_eq!(info.rotation, Some(0));
        assert_eq!(info.audio_codec, None);
        assert_eq!(info.video_streams, 1);
        assert!(info.complete);
    }

    #[test]
    fn moov_after_mdat_is_found() {
        let file = [ftyp(*b"qt  "), boxed(*b"mdat", &[0; 5000]), movie(IDENTITY)].concat();
        let info = probe_bytes(file).unwrap();
        assert_eq!(info.container, "mov");
        assert_eq!(info.duration_s, Some(1.001));
    }

    #[test]
    fn file_cut_inside_mdat_before_moov_is_incomplete() {
        let mut file = [ftyp(*b"isom"), boxed(*b"mdat", &[0; 5000]), movie(IDENTITY)].concat();
        file.truncate(3000);
        let err = probe_bytes(file).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
        assert!(err.message().contains("mdat"), "{err}");
    }

    #[test]
    fn truncated_mdat_after_moov_marks_the_file_incomplete() {
        let mut file = [ftyp(*b"isom"), movie(IDENTITY), boxed(*b"mdat", &[0; 5000])].concat();
        file.truncate(file.len() - 100);
        let info = probe_bytes(file).unwrap();
        assert!(!info.complete);
        assert_eq!(info.duration_s, Some(1.001));
    }

    #[test]
    fn portrait_matrix_reads_as_minus_90() {
        // (a, b, c, d) = (0, 1, -1, 0): ffprobe 5.1 shows -90.
        let file = [ftyp(*b"isom"), movie([0, 0x1_0000, -0x1_0000, 0])].concat();
        assert_eq!(probe_bytes(file).unwrap().rotation, Some(-90));
        let file = [ftyp(*b"isom"), movie([0, -0x1_0000, 0x1_0000, 0])].concat();
        assert_eq!(probe_bytes(file).unwrap().rotation, Some(90));
    }

    #[test]
    fn oblique_matrix_truncates_like_ffprobe() {
        // ffmpeg writes 60 degrees as (0.5, sin 60, -sin 60, 0.5) with the sine
        // truncated to 56755 / 65536, which reads back as 59.9998 degrees.
        let file = [ftyp(*b"isom"), movie([0x8000, 56755, -56755, 0x8000])].concat();
        assert_eq!(probe_bytes(file).unwrap().rotation, Some(-59));
        let file = [ftyp(*b"isom"), movie([0x8000, -56755, 56755, 0x8000])].concat();
        assert_eq!(probe_bytes(file).unwrap().rotation, Some(59));
    }

    #[test]
    fn brands_name_the_container() {
        for (brand, name) in [(*b"M4V ", "m4v"), (*b"3gp5", "3gp"), (*b"isom", "mp4")] {
            let file = [ftyp(brand), movie(IDENTITY)].concat();
            assert_eq!(probe_bytes(file).unwrap().container, name);
        }
    }

    #[test]
    fn fragments_give_duration_and_rate() {
        let mut trex = 1u32.to_be_bytes().to_vec();
        trex.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0x0B, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mvex = boxed(*b"mvex", &boxed(*b"trex", &full(0, &trex)));
        let trak = video_trak(1, 90000, 0, 3000, IDENTITY);
        let moov = boxed(*b"moov", &[mvhd(1000, 0), trak, mvex].concat());
        let mut fragments = Vec::new();
        for index in 0..4u32 {
            let tfhd = boxed(*b"tfhd", &full(0x02_0000, &1u32.to_be_bytes()));
            let tfdt = boxed(*b"tfdt", &full(0, &(index * 30 * 3000).to_be_bytes()));
            // 30 samples, default duration from trex (3000 ticks at 90 kHz).
            let trun = boxed(*b"trun", &full(0, &30u32.to_be_bytes()));
            let fragment = boxed(*b"traf", &[tfhd, tfdt, trun].concat());
            fragments.extend(boxed(*b"moof", &fragment));
            fragments.extend(boxed(*b"mdat", &[0; 64]));
        }
        let info = probe_bytes([ftyp(*b"iso5"), moov, fragments].concat()).unwrap();
        assert_eq!(info.duration_s, Some(4.0));
        assert_eq!(info.frame_rate, Rational::new(30, 1));
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut file = ftyp(*b"isom");
        file.extend_from_slice(&[
            0, 0, 0, 0x10, 0x01, 0x02, 0xFF, 0xFE, 9, 9, 9, 9, 9, 9, 9, 9,
        ]);
        let err = probe_bytes(file).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("invalid box type"), "{err}");
    }

    #[test]
    fn box_smaller_than_its_header_is_corrupt() {
        let mut file = ftyp(*b"isom");
        file.extend_from_slice(&[0, 0, 0, 4, b'm', b'o', b'o', b'v']);
        let err = probe_bytes(file).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("less than its own header"), "{err}");
    }

    #[test]
    fn oversized_moov_length_is_incomplete_not_an_allocation() {
        let mut file = ftyp(*b"isom");
        file.extend_from_slice(&[0, 0, 0, 1, b'm', b'o', b'o', b'v']);
        file.extend_from_slice(&u64::MAX.to_be_bytes());
        let err = probe_bytes(file).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
    }

    #[test]
    fn lying_child_sizes_do_not_panic() {
        let mut moov = movie(IDENTITY);
        // Make the trak claim far more bytes than the moov holds.
        let trak_at = moov.windows(4).position(|w| w == b"trak").unwrap() - 4;
        moov[trak_at..trak_at + 4].copy_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
        let info = probe_bytes([ftyp(*b"isom"), moov].concat()).unwrap();
        assert_eq!(info.video_codec.as_deref(), Some("h264"));
    }

    /// A file whose one track has `stsc` runs starting at `first_chunks`
    /// (one sample per chunk) and a chunk offset box `offsets_kind` that
    /// declares `chunks` entries.
    fn file_with_chunk_tables(first_chunks: &[u32], offsets_kind: [u8; 4], chunks: u32) -> Vec<u8> {
        let mut stsc = u32::try_from(first_chunks.len())
            .unwrap()
            .to_be_bytes()
            .to_vec();
        for first in first_chunks {
            for field in [*first, 1, 1] {
                stsc.extend_from_slice(&field.to_be_bytes());
            }
        }
        let entry_len = if &offsets_kind == b"co64" { 8 } else { 4 };
        let mut offsets = chunks.to_be_bytes().to_vec();
        offsets.resize(4 + entry_len * chunks as usize, 0);
        let tables = [
            boxed(*b"stsc", &full(0, &stsc)),
            boxed(offsets_kind, &full(0, &offsets)),
        ]
        .concat();
        let trak = video_trak_with(1, 30000, 30, 1001, IDENTITY, &tables);
        [
            ftyp(*b"isom"),
            boxed(*b"moov", &[mvhd(1000, 1001), trak].concat()),
        ]
        .concat()
    }

    #[test]
    fn stsc_beyond_stco_is_corrupt() {
        // The shape of a damaged file ffprobe rejects: stsc's only run starts
        // at chunk 0x01000001, and stco lists one chunk.
        let file = file_with_chunk_tables(&[0x0100_0001], *b"stco", 1);

        let err = probe_bytes(file).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("chunk 16777217"), "{err}");
        assert!(err.message().contains("(stco) has only 1 entries"), "{err}");
    }

    #[test]
    fn stsc_last_run_beyond_co64_is_corrupt() {
        let file = file_with_chunk_tables(&[1, 5, 9], *b"co64", 8);

        let err = probe_bytes(file).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("(co64) has only 8 entries"), "{err}");
    }

    #[test]
    fn consistent_chunk_tables_are_accepted() {
        for (first_chunks, kind, chunks) in [
            (&[1u32, 5, 9][..], *b"stco", 9),
            (&[1, 5, 9][..], *b"co64", 30),
            // An empty stsc, as in the init segment of a fragmented file.
            (&[][..], *b"stco", 0),
        ] {
            let file = file_with_chunk_tables(first_chunks, kind, chunks);

            let info = probe_bytes(file).unwrap();

            assert_eq!(info.video_codec.as_deref(), Some("h264"));
        }
    }

    #[test]
    fn stsc_count_beyond_its_box_uses_the_entries_present() {
        let mut file = file_with_chunk_tables(&[1, 2], *b"stco", 2);
        // Claim 0xFFFF entries; only the two present ones are read.
        let count_at = file.windows(4).position(|w| w == b"stsc").unwrap() + 8;
        file[count_at..count_at + 4].copy_from_slice(&0xFFFFu32.to_be_bytes());

        let info = probe_bytes(file).unwrap();

        assert_eq!(info.duration_s, Some(1.001));
    }

    /// A sound track whose sample description holds `entry` (a whole box).
    fn audio_trak(entry: Vec<u8>) -> Vec<u8> {
        let mut mdhd = vec![0; 8];
        mdhd.extend_from_slice(&48_000u32.to_be_bytes());
        mdhd.extend_from_slice(&96_000u32.to_be_bytes());
        mdhd.extend_from_slice(&[0; 4]);
        let mut hdlr = vec![0; 4];
        hdlr.extend_from_slice(b"soun");
        hdlr.extend_from_slice(&[0; 13]);
        let mut stsd = 1u32.to_be_bytes().to_vec();
        stsd.extend(entry);
        let stbl = boxed(*b"stbl", &boxed(*b"stsd", &full(0, &stsd)));
        let mdia = [
            boxed(*b"mdhd", &full(0, &mdhd)),
            boxed(*b"hdlr", &full(0, &hdlr)),
            boxed(*b"minf", &stbl),
        ]
        .concat();
        boxed(
            *b"trak",
            &[tkhd(2, IDENTITY), boxed(*b"mdia", &mdia)].concat(),
        )
    }

    /// An audio sample entry of sound description `version` with `extra`
    /// after the fixed fields (version-specific fields, then child boxes).
    fn audio_entry(
        kind: [u8; 4],
        version: u16,
        channels: u16,
        sample_size: u16,
        rate: u32,
        extra: &[u8],
    ) -> Vec<u8> {
        let mut entry = vec![0; 8];
        entry.extend_from_slice(&version.to_be_bytes());
        entry.extend_from_slice(&[0; 6]);
        entry.extend_from_slice(&channels.to_be_bytes());
        entry.extend_from_slice(&sample_size.to_be_bytes());
        entry.extend_from_slice(&[0; 4]);
        entry.extend_from_slice(&(rate << 16).to_be_bytes());
        entry.extend_from_slice(extra);
        boxed(kind, &entry)
    }

    /// An `esds` box for `object_type` with `config` as decoder specific info.
    fn esds(object_type: u8, config: &[u8]) -> Vec<u8> {
        let config_len = u8::try_from(config.len()).unwrap();
        let mut decoder = vec![0x04, 13 + 2 + config_len, object_type];
        decoder.extend_from_slice(&[0; 12]);
        decoder.extend_from_slice(&[0x05, config_len]);
        decoder.extend_from_slice(config);
        // ES_ID, then flags with a dependsOn ES_ID, a URL and an OCR ES_ID.
        let mut es = vec![0, 1, 0xE0, 0, 2, 3, b'u', b'r', b'l', 0, 3];
        es.extend(decoder);
        // A two-byte length (0x80 continues it), as some muxers write.
        let mut body = vec![0x03, 0x80, u8::try_from(es.len()).unwrap()];
        body.extend(es);
        boxed(*b"esds", &full(0, &body))
    }

    fn audio_info(entry: Vec<u8>) -> MediaInfo {
        let moov = boxed(*b"moov", &[mvhd(1000, 2000), audio_trak(entry)].concat());
        probe_bytes([ftyp(*b"isom"), moov].concat()).unwrap()
    }

    #[test]
    fn aac_config_in_esds_sets_rate_and_channels() {
        // AudioSpecificConfig: AAC LC, 44.1 kHz, stereo.
        let entry = audio_entry(*b"mp4a", 0, 1, 16, 22_050, &esds(0x40, &[0x12, 0x10]));

        let info = audio_info(entry);

        assert_eq!(info.audio_codec.as_deref(), Some("aac"));
        assert_eq!(info.audio_channels, Some(2));
        assert_eq!(info.audio_sample_rate, Some(44_100));
        assert_eq!(info.audio_streams, 1);
    }

    #[test]
    fn quicktime_sound_versions_give_codec_and_rate() {
        // Version 1 adds four 32-bit fields before the child boxes.
        let v1 = audio_entry(*b"twos", 1, 2, 16, 32_000, &[0; 16]);
        // Version 2 stores the rate as a float and the channel count again,
        // and a `wave/enda` flag makes `lpcm` little-endian.
        let mut v2_fields = vec![0; 4];
        v2_fields.extend_from_slice(&96_000f64.to_bits().to_be_bytes());
        v2_fields.extend_from_slice(&6u32.to_be_bytes());
        v2_fields.extend_from_slice(&[0; 20]);
        v2_fields.extend(boxed(*b"wave", &boxed(*b"enda", &[0, 1])));
        let v2 = audio_entry(*b"lpcm", 2, 3, 16, 1, &v2_fields);
        let cases = [
            (v1, "pcm_s16be", 2, 32_000),
            (v2, "pcm_s16le", 6, 96_000),
            (
                audio_entry(*b"Opus", 0, 2, 16, 44_100, &[]),
                "opus",
                2,
                48_000,
            ),
            (
                audio_entry(*b"samr", 0, 2, 16, 44_100, &[]),
                "amr_nb",
                1,
                8_000,
            ),
            (
                audio_entry(*b"sawb", 0, 2, 16, 44_100, &[]),
                "amr_wb",
                1,
                16_000,
            ),
        ];
        for (entry, codec, channels, rate) in cases {
            let info = audio_info(entry);

            assert_eq!(info.audio_codec.as_deref(), Some(codec));
            assert_eq!(info.audio_channels, Some(channels), "{codec}");
            assert_eq!(info.audio_sample_rate, Some(rate), "{codec}");
        }
    }

    #[test]
    fn encrypted_entries_name_the_original_codec() {
        let sinf = boxed(*b"sinf", &boxed(*b"frma", b"mp4a"));
        let audio = audio_entry(*b"enca", 0, 2, 16, 48_000, &sinf);
        assert_eq!(audio_info(audio).audio_codec.as_deref(), Some("aac"));

        let mut entry = vec![0; 24];
        entry.extend_from_slice(&320u16.to_be_bytes());
        entry.extend_from_slice(&240u16.to_be_bytes());
        entry.extend_from_slice(&[0; 50]);
        entry.extend(boxed(*b"sinf", &boxed(*b"frma", b"hvc1")));
        entry.extend(boxed(*b"hvcC", &[1, 0x02]));
        let trak = video_trak_entry(1, 30000, 30, 1001, IDENTITY, &boxed(*b"encv", &entry), &[]);
        let moov = boxed(*b"moov", &[mvhd(1000, 1001), trak].concat());

        let info = probe_bytes([ftyp(*b"isom"), moov].concat()).unwrap();

        assert_eq!(info.video_codec.as_deref(), Some("hevc"));
        assert_eq!(info.video_profile.as_deref(), Some("Main 10"));
        assert_eq!((info.width, info.height), (Some(320), Some(240)));
    }

    #[test]
    fn version_1_headers_and_64_bit_sizes_are_read() {
        let mut mvhd_body = vec![0; 16];
        mvhd_body.extend_from_slice(&1000u32.to_be_bytes());
        mvhd_body.extend_from_slice(&2500u64.to_be_bytes());
        mvhd_body.extend_from_slice(&[0; 80]);
        let mvhd = boxed(*b"mvhd", &full(0x0100_0000, &mvhd_body));
        let moov = boxed(
            *b"moov",
            &[mvhd, video_trak(1, 30000, 30, 1001, IDENTITY)].concat(),
        );
        // A `free` box with a 64-bit size, and an `mdat` whose size 0 runs to the end.
        let mut large = 1u32.to_be_bytes().to_vec();
        large.extend_from_slice(b"free");
        large.extend_from_slice(&24u64.to_be_bytes());
        large.extend_from_slice(&[0; 8]);
        let mdat = [&0u32.to_be_bytes()[..], b"mdat", &[0; 32]].concat();

        let info = probe_bytes([ftyp(*b"isom"), large, moov, mdat].concat()).unwrap();

        assert_eq!(info.duration_s, Some(2.5));
        assert!(info.complete);
    }

    #[test]
    fn movie_extends_header_gives_duration_without_fragments() {
        let mut mehd = vec![0; 4];
        mehd.extend_from_slice(&4000u32.to_be_bytes());
        let mvex = boxed(*b"mvex", &boxed(*b"mehd", &mehd));
        let trak = video_trak(1, 90000, 0, 3000, IDENTITY);
        let moov = boxed(*b"moov", &[mvhd(1000, 0), trak, mvex].concat());

        let info = probe_bytes([ftyp(*b"iso5"), moov].concat()).unwrap();

        assert_eq!(info.duration_s, Some(4.0));
        assert_eq!(info.frame_rate, None);
    }

    #[test]
    fn moov_without_mvhd_is_corrupt() {
        let moov = boxed(*b"moov", &video_trak(1, 30000, 30, 1001, IDENTITY));

        let err = probe_bytes([ftyp(*b"isom"), moov].concat()).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("no valid mvhd"), "{err}");
    }

    #[test]
    fn media_segment_without_moov_is_corrupt() {
        let traf = boxed(*b"traf", &boxed(*b"tfhd", &full(0, &1u32.to_be_bytes())));
        let file = [boxed(*b"styp", b"msdh"), boxed(*b"moof", &traf)].concat();
        let err = probe_bytes(file).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("initialization segment"), "{err}");
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::super::corpus;

    #[test]
    fn corpus_iso_files_match_ffprobe() {
        // ffprobe guesses 90000/1 for an init segment that holds no samples.
        let known = [("mp4ff-V300-init.mp4", "frame_rate")];
        let report = corpus::run(
            &[".mp4", ".mov", ".m4v", ".3gp"],
            &known,
            crate::probe::probe_reader,
        );
        if report.is_empty() {
            eprintln!("skipped: no ISO base media file with ffprobe JSON in the corpus folders");
            return;
        }
        let failures: Vec<_> = report
            .iter()
            .filter(|(_, problems)| !problems.is_empty())
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

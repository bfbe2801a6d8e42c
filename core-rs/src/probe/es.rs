//! Codec headers found inside elementary streams: H.264 and HEVC sequence
//! parameter sets, MPEG-1/2 video sequence headers, and the frame headers of
//! ADTS AAC, MPEG audio and AC-3/E-AC-3. The transport stream, program stream
//! and FLV parsers use them where the container itself does not state the
//! picture size, the codec profile or the audio format. [`frame_profile`]
//! reads the profile from a container's first video frame (Matroska, AVI).
//!
//! Every function takes a byte slice the caller has already read within its
//! budget and returns `None` on anything it cannot parse, so a damaged codec
//! header costs a field, never the whole probe.

use super::codecs::{av1_profile_name, h264_profile_name, hevc_profile_name, mpeg4_visual_profile};
use super::Rational;

/// Picture size, profile and stated frame rate from a video codec header.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct VideoHeader {
    pub codec: &'static str,
    pub width: u32,
    pub height: u32,
    pub profile: Option<&'static str>,
    pub frame_rate: Option<Rational>,
}

/// One audio frame header: its codec, format, and how much it spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AudioFrame {
    pub codec: &'static str,
    pub sample_rate: u32,
    pub channels: u32,
    /// Frame length in bytes, header included.
    pub length: usize,
    /// Samples per channel that the frame decodes to.
    pub samples: u32,
}

/// Reads bits most-significant first, as every MPEG and ITU bitstream is written.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, bit: 0 }
    }

    /// Reads `count` bits (at most 32).
    pub fn bits(&mut self, count: u32) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = *self.data.get(self.bit / 8)?;
            let bit = (byte >> (7 - self.bit % 8)) & 1;
            value = (value << 1) | u32::from(bit);
            self.bit += 1;
        }
        Some(value)
    }

    pub fn flag(&mut self) -> Option<bool> {
        Some(self.bits(1)? == 1)
    }

    pub fn skip(&mut self, count: usize) -> Option<()> {
        self.bit = self.bit.checked_add(count)?;
        (self.bit <= self.data.len() * 8).then_some(())
    }

    /// Reads an unsigned Exp-Golomb code (`ue(v)`).
    pub fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.flag()? {
            zeros += 1;
            // A 32-bit value never needs more than 31 leading zeros.
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        u32::try_from((1u64 << zeros) - 1 + u64::from(rest)).ok()
    }

    /// Reads a signed Exp-Golomb code (`se(v)`).
    pub fn se(&mut self) -> Option<i64> {
        let code = i64::from(self.ue()?);
        Some(if code % 2 == 1 {
            (code + 1) / 2
        } else {
            -(code / 2)
        })
    }
}

/// Removes the emulation-prevention bytes (`00 00 03`) from a NAL unit payload.
pub(crate) fn unescape_nal(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// Yields the NAL units of an Annex-B byte stream (start codes `00 00 01`).
pub(crate) fn annex_b_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| s - 3)
        .chain(std::iter::once(data.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |(start, end)| &data[start..end.max(start)])
}

/// Finds the first H.264 SPS in an Annex-B stream and parses it.
pub(crate) fn find_h264_sps(data: &[u8]) -> Option<VideoHeader> {
    annex_b_units(data)
        .find(|nal| nal.first().is_some_and(|b| b & 0x1F == 7))
        .and_then(|nal| parse_h264_sps(&nal[1..]))
}

/// Finds the first HEVC SPS in an Annex-B stream and parses it.
pub(crate) fn find_hevc_sps(data: &[u8]) -> Option<VideoHeader> {
    annex_b_units(data)
        .find(|nal| nal.first().is_some_and(|b| (b >> 1) & 0x3F == 33))
        .and_then(|nal| parse_hevc_sps(nal.get(2..)?))
}

/// Parses an H.264 sequence parameter set (the NAL payload after its
/// one-byte header, still escaped).
pub(crate) fn parse_h264_sps(escaped: &[u8]) -> Option<VideoHeader> {
    let rbsp = unescape_nal(escaped);
    let mut bits = BitReader::new(&rbsp);
    let profile_idc = bits.bits(8)?;
    let constraints = bits.bits(8)?;
    bits.skip(8)?; // level_idc
    bits.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = bits.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = bits.flag()?;
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for index in 0..lists {
                if bits.flag()? {
                    skip_scaling_list(&mut bits, if index < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.skip(1)?;
            bits.se()?;
            bits.se()?;
            let cycle = bits.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                bits.se()?;
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(bits.ue()?) + 1;
    let height_map_units = u64::from(bits.ue()?) + 1;
    let frame_mbs_only = bits.flag()?;
    if !frame_mbs_only {
        bits.skip(1)?; // mb_adaptive_frame_field_flag
    }
    bits.skip(1)?; // direct_8x8_inference_flag
    let mut crop = [0u64; 4];
    if bits.flag()? {
        for value in &mut crop {
            *value = u64::from(bits.ue()?);
        }
    }
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (sub_width, sub_height) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let crop_x = sub_width * (crop[0] + crop[1]);
    let crop_y = sub_height * field_factor * (crop[2] + crop[3]);
    let width = (width_mbs * 16).checked_sub(crop_x)?;
    let height = (height_map_units * 16 * field_factor).checked_sub(crop_y)?;
    let frame_rate = if bits.flag()? {
        h264_vui_frame_rate(&mut bits)
    } else {
        None
    };

    Some(VideoHeader {
        codec: "h264",
        width: u32::try_from(width).ok()?,
        height: u32::try_from(height).ok()?,
        profile: h264_profile_name(
            u8::try_from(profile_idc).ok()?,
            u8::try_from(constraints).ok()?,
        ),
        frame_rate,
    })
}

fn skip_scaling_list(bits: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + bits.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Reads the VUI up to its timing info; the frame rate is `time_scale / (2 *
/// num_units_in_tick)` because H.264 counts fields.
fn h264_vui_frame_rate(bits: &mut BitReader<'_>) -> Option<Rational> {
    if bits.flag()? && bits.bits(8)? == 255 {
        bits.skip(32)?; // sar_width, sar_height
    }
    if bits.flag()? {
        bits.skip(1)?; // overscan_appropriate_flag
    }
    if bits.flag()? {
        bits.skip(4)?; // video_format, video_full_range_flag
        if bits.flag()? {
            bits.skip(24)?; // colour primaries, transfer, matrix
        }
    }
    if bits.flag()? {
        bits.ue()?;
        bits.ue()?;
    }
    if !bits.flag()? {
        return None;
    }
    let units_in_tick = bits.bits(32)?;
    let time_scale = bits.bits(32)?;
    Rational::new(u64::from(time_scale), 2 * u64::from(units_in_tick))
}

/// Parses an HEVC sequence parameter set (the NAL payload after its two-byte
/// header, still escaped). The frame rate sits deep in the VUI and is left out.
pub(crate) fn parse_hevc_sps(escaped: &[u8]) -> Option<VideoHeader> {
    let rbsp = unescape_nal(escaped);
    let mut bits = BitReader::new(&rbsp);
    bits.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = bits.bits(3)?;
    bits.skip(1)?; // sps_temporal_id_nesting_flag
    bits.skip(3)?; // general_profile_space, general_tier_flag
    let profile_idc = bits.bits(5)?;
    let compatibility = bits.bits(32)?;
    bits.skip(48)?; // source flags and reserved bits
    bits.skip(8)?; // general_level_idc
    let mut sub_layer_flags = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        sub_layer_flags.push((bits.flag()?, bits.flag()?));
    }
    if max_sub_layers_minus1 > 0 {
        bits.skip(2 * (8 - max_sub_layers_minus1 as usize))?;
    }
    for (profile_present, level_present) in sub_layer_flags {
        if profile_present {
            bits.skip(88)?;
        }
        if level_present {
            bits.skip(8)?;
        }
    }
    bits.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = bits.ue()?;
    let mut separate_colour_plane = false;
    if chroma_format_idc == 3 {
        separate_colour_plane = bits.flag()?;
    }
    let width = u64::from(bits.ue()?);
    let height = u64::from(bits.ue()?);
    let mut crop = [0u64; 4];
    if bits.flag()? {
        for value in &mut crop {
            *value = u64::from(bits.ue()?);
        }
    }
    let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let width = width.checked_sub(sub_width * (crop[0] + crop[1]))?;
    let height = height.checked_sub(sub_height * (crop[2] + crop[3]))?;
    // A profile_idc of 0 defers to the first compatibility flag set.
    let effective = if profile_idc == 0 {
        (1..=4).find(|i| compatibility & (1 << (31 - i)) != 0)?
    } else {
        profile_idc
    };
    let profile = hevc_profile_name(u8::try_from(effective).ok()?);

    Some(VideoHeader {
        codec: "hevc",
        width: u32::try_from(width).ok()?,
        height: u32::try_from(height).ok()?,
        profile,
        frame_rate: None,
    })
}

const MPEG12_FRAME_RATES: [(u64, u64); 8] = [
    (24000, 1001),
    (24, 1),
    (25, 1),
    (30000, 1001),
    (30, 1),
    (50, 1),
    (60000, 1001),
    (60, 1),
];

/// Finds an MPEG-1/2 video sequence header (`00 00 01 B3`) and parses it and
/// the sequence extension that follows it in MPEG-2. Without that extension
/// the stream is MPEG-1, which is how ffmpeg's parser distinguishes the two.
pub(crate) fn find_mpeg12_sequence(data: &[u8]) -> Option<VideoHeader> {
    let start = find_start_code(data, 0xB3)?;
    let header = data.get(start..start + 8)?;
    let width = (u32::from(header[0]) << 4) | (u32::from(header[1]) >> 4);
    let height = ((u32::from(header[1]) & 0x0F) << 8) | u32::from(header[2]);
    let rate_code = usize::from(header[3] & 0x0F);
    let mut ext_start = start + 8;
    // The intra and non-intra quantiser matrices are 64 bytes each, flagged
    // by the last bit of byte 7 and the last bit of the intra matrix.
    if header[7] & 0x02 != 0 {
        ext_start += 64;
    }
    let non_intra_flag_byte = if header[7] & 0x02 != 0 {
        data.get(start + 7 + 64).copied()
    } else {
        Some(header[7])
    };
    if non_intra_flag_byte? & 0x01 != 0 {
        ext_start += 64;
    }
    let (num, den) = *MPEG12_FRAME_RATES.get(rate_code.checked_sub(1)?)?;
    let mut video = VideoHeader {
        codec: "mpeg1video",
        width,
        height,
        profile: None,
        frame_rate: Rational::new(num, den),
    };
    // Without the 10 bytes after the header, MPEG-1 and MPEG-2 look alike.
    let rest = data.get(ext_start..ext_start + 10)?;
    if rest[..4] == [0, 0, 1, 0xB5] && rest[4] >> 4 == 1 {
        video.codec = "mpeg2video";
        let profile_level = ((rest[4] & 0x0F) << 4) | (rest[5] >> 4);
        video.profile = mpeg2_profile_name(profile_level);
        video.width |= ((u32::from(rest[5]) & 0x01) << 13) | ((u32::from(rest[6]) >> 7) << 12);
        video.height |= ((u32::from(rest[6]) >> 5) & 0x03) << 12;
        let ext_n = u64::from((rest[9] >> 5) & 0x03) + 1;
        let ext_d = u64::from(rest[9] & 0x1F) + 1;
        video.frame_rate = Rational::new(num * ext_n, den * ext_d);
    }

    Some(video)
}

fn mpeg2_profile_name(profile_level: u8) -> Option<&'static str> {
    if profile_level & 0x80 != 0 {
        return matches!(profile_level, 0x82 | 0x85).then_some("4:2:2");
    }
    match (profile_level >> 4) & 0x07 {
        1 => Some("High"),
        2 => Some("Spatially Scalable"),
        3 => Some("SNR Scalable"),
        4 => Some("Main"),
        5 => Some("Simple"),
        _ => None,
    }
}

/// Returns the offset just past the first `00 00 01 code` in `data`.
pub(crate) fn find_start_code(data: &[u8], code: u8) -> Option<usize> {
    data.windows(4)
        .position(|w| w == [0, 0, 1, code])
        .map(|p| p + 4)
}

/// Reads the profile of `codec` from the start of the stream's first frame
/// and names it as ffprobe 5.1 prints it. The profile comes from the frame
/// header of VP8 and VP9, the AV1 sequence header OBU, the H.264 or HEVC SPS
/// of an Annex-B frame, the MPEG-1/2 or MPEG-4 Visual sequence header, or
/// the JPEG start-of-frame marker of MJPEG.
pub(crate) fn frame_profile(codec: &str, frame: &[u8]) -> Option<String> {
    match codec {
        // ffmpeg 5.1 has no names for VP8 profiles, so ffprobe prints the number.
        "vp8" => Some(((frame.first()? >> 1) & 7).to_string()),
        "vp9" => vp9_profile(frame),
        "av1" => av1_obu_profile(frame),
        "h264" => find_h264_sps(frame)?.profile.map(str::to_owned),
        "hevc" => find_hevc_sps(frame)?.profile.map(str::to_owned),
        "mpeg4" => mpeg4_visual_profile(&frame[find_start_code(frame, 0xB0)? - 4..]),
        "mpeg1video" | "mpeg2video" => find_mpeg12_sequence(frame)?.profile.map(str::to_owned),
        "mjpeg" => jpeg_profile(frame).map(str::to_owned),
        _ => None,
    }
}

/// Reads the profile from a VP9 uncompressed frame header: a 2-bit frame
/// marker, then the profile's low and high bits, and a reserved bit in profile 3.
fn vp9_profile(frame: &[u8]) -> Option<String> {
    let mut bits = BitReader::new(frame);
    if bits.bits(2)? != 2 {
        return None;
    }
    let low = bits.bits(1)?;
    let high = bits.bits(1)?;
    let mut profile = low | (high << 1);
    if profile == 3 {
        profile += bits.bits(1)?;
    }
    (profile <= 3).then(|| format!("Profile {profile}"))
}

/// Reads the `seq_profile` of the first sequence header OBU in a temporal
/// unit of OBUs that carry their sizes, as Matroska and MP4 store AV1.
fn av1_obu_profile(mut data: &[u8]) -> Option<String> {
    const OBU_SEQUENCE_HEADER: u8 = 1;
    while let Some(&header) = data.first() {
        let has_extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let mut at = 1 + usize::from(has_extension);
        let size = if has_size {
            let (size, length) = leb128(data.get(at..)?)?;
            at += length;
            usize::try_from(size).ok()?
        } else {
            data.len().checked_sub(at)?
        };
        let payload = data.get(at..)?;
        if (header >> 3) & 0x0F == OBU_SEQUENCE_HEADER {
            return av1_profile_name(payload.first()? >> 5).map(str::to_owned);
        }
        data = payload.get(size..)?;
    }
    None
}

/// Decodes an unsigned LEB128 number of at most 8 bytes: (value, length).
fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in data.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// ffmpeg's MJPEG profile, named after the first start-of-frame marker.
fn jpeg_profile(data: &[u8]) -> Option<&'static str> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    while let (Some(0xFF), Some(&marker)) = (data.get(at), data.get(at + 1)) {
        match marker {
            0xC0 => return Some("Baseline"),
            0xC1 => return Some("Sequential"),
            0xC2 => return Some("Progressive"),
            0xC3 => return Some("Lossless"),
            0xF7 => return Some("JPEG LS"),
            _ => {}
        }
        // Every other segment before the frame header states its length.
        let length = u16::from_be_bytes([*data.get(at + 2)?, *data.get(at + 3)?]);
        at += 2 + usize::from(length);
    }
    None
}

const AAC_SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Parses an ADTS header at the start of `data`.
pub(crate) fn parse_adts(data: &[u8]) -> Option<AudioFrame> {
    let h = data.get(..7)?;
    if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
        return None;
    }
    let rate_index = usize::from((h[2] >> 2) & 0x0F);
    let channel_config = (u32::from(h[2] & 0x01) << 2) | u32::from(h[3] >> 6);
    let length =
        (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    let blocks = u32::from(h[6] & 0x03) + 1;
    if length < 7 {
        return None;
    }

    Some(AudioFrame {
        codec: "aac",
        sample_rate: *AAC_SAMPLE_RATES.get(rate_index)?,
        channels: aac_channels(channel_config)?,
        length,
        samples: 1024 * blocks,
    })
}

/// Channel count of an AAC channel configuration; 0 means "in the program
/// config element", which a header-only probe does not read.
pub(crate) fn aac_channels(config: u32) -> Option<u32> {
    match config {
        1..=6 => Some(config),
        7 => Some(8),
        _ => None,
    }
}

/// Bit rates in kbit/s by [MPEG-1 or not][layer 1, 2, 3][index].
const MPA_BIT_RATES: [[[u16; 15]; 3]; 2] = [
    [
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ],
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    ],
    [
        [
            0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ],
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ],
        [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ],
    ],
];

/// Parses an MPEG audio (layer 1, 2 or 3) frame header at the start of `data`.
pub(crate) fn parse_mpeg_audio(data: &[u8]) -> Option<AudioFrame> {
    let h = data.get(..4)?;
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    let version = (h[1] >> 3) & 0x03; // 0: 2.5, 2: 2, 3: 1
    let layer = 4 - ((h[1] >> 1) & 0x03); // 1, 2 or 3; 4 is reserved
    let rate_index = usize::from(h[2] >> 4);
    let sample_index = usize::from((h[2] >> 2) & 0x03);
    let padding = usize::from((h[2] >> 1) & 0x01);
    if version == 1 || layer == 4 || rate_index == 0 || rate_index == 15 || sample_index == 3 {
        return None;
    }
    let base_rate = [44100, 48000, 32000][sample_index];
    let sample_rate = match version {
        3 => base_rate,
        2 => base_rate / 2,
        _ => base_rate / 4,
    };
    let mpeg1 = usize::from(version == 3);
    let kbps = usize::from(MPA_BIT_RATES[mpeg1][usize::from(layer - 1)][rate_index]);
    let rate = sample_rate as usize;
    let (samples, length) = match layer {
        1 => (384, (12_000 * kbps / rate + padding) * 4),
        2 => (1152, 144_000 * kbps / rate + padding),
        _ if mpeg1 == 1 => (1152, 144_000 * kbps / rate + padding),
        _ => (576, 72_000 * kbps / rate + padding),
    };

    Some(AudioFrame {
        codec: ["mp1", "mp2", "mp3"][usize::from(layer - 1)],
        sample_rate,
        channels: if h[3] >> 6 == 3 { 1 } else { 2 },
        length,
        samples,
    })
}

const AC3_BIT_RATES: [usize; 19] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640,
];

/// Front channels by `acmod`, before the LFE channel.
const AC3_CHANNELS: [u32; 8] = [2, 1, 2, 3, 3, 4, 4, 5];

/// Parses an AC-3 or E-AC-3 sync frame header at the start of `data`.
pub(crate) fn parse_ac3(data: &[u8]) -> Option<AudioFrame> {
    let h = data.get(..8)?;
    if h[0] != 0x0B || h[1] != 0x77 {
        return None;
    }
    let bsid = h[5] >> 3;
    if bsid > 10 {
        return parse_eac3(h);
    }
    let fscod = usize::from(h[4] >> 6);
    let size_code = usize::from(h[4] & 0x3F);
    let kbps = *AC3_BIT_RATES.get(size_code / 2)?;
    let length = match fscod {
        0 => kbps * 4,
        1 => 2 * (kbps * 320 / 147 + (size_code & 1)),
        2 => kbps * 6,
        _ => return None,
    };
    let mut bits = BitReader::new(&h[6..]);
    let acmod = bits.bits(3)?;
    if acmod & 1 != 0 && acmod != 1 {
        bits.skip(2)?; // cmixlev
    }
    if acmod & 4 != 0 {
        bits.skip(2)?; // surmixlev
    }
    if acmod == 2 {
        bits.skip(2)?; // dsurmod
    }
    let lfe = bits.bits(1)?;

    Some(AudioFrame {
        codec: "ac3",
        sample_rate: [48000, 44100, 32000][fscod],
        channels: AC3_CHANNELS[acmod as usize] + lfe,
        length,
        samples: 1536,
    })
}

fn parse_eac3(h: &[u8]) -> Option<AudioFrame> {
    let mut bits = BitReader::new(&h[2..]);
    bits.skip(5)?; // strmtyp, substreamid
    let frame_words = bits.bits(11)? as usize + 1;
    let fscod = bits.bits(2)? as usize;
    let (sample_rate, blocks) = if fscod == 3 {
        let fscod2 = bits.bits(2)? as usize;
        (*[24000, 22050, 16000].get(fscod2)?, 6)
    } else {
        let blocks = [1, 2, 3, 6][bits.bits(2)? as usize];
        ([48000, 44100, 32000][fscod], blocks)
    };
    let acmod = bits.bits(3)?;
    let lfe = bits.bits(1)?;

    Some(AudioFrame {
        codec: "eac3",
        sample_rate,
        channels: AC3_CHANNELS[acmod as usize] + lfe,
        length: frame_words * 2,
        samples: 256 * blocks,
    })
}

/// Parses the audio frame header of `codec` at the start of `data`.
pub(crate) fn parse_audio_frame(codec: &str, data: &[u8]) -> Option<AudioFrame> {
    match codec {
        "aac" => parse_adts(data),
        "mp1" | "mp2" | "mp3" => parse_mpeg_audio(data),
        "ac3" | "eac3" => parse_ac3(data),
        _ => None,
    }
}

/// Finds the first audio frame of `codec` in `data`, checking that the next
/// frame header follows at the end the first one's length gives (when `data` holds it).
pub(crate) fn find_audio_frame(codec: &str, data: &[u8]) -> Option<AudioFrame> {
    (0..data.len()).find_map(|offset| {
        let frame = parse_audio_frame(codec, &data[offset..])?;
        let next = offset + frame.length;
        if next + 4 <= data.len() && parse_audio_frame(codec, &data[next..]).is_none() {
            return None;
        }
        Some(frame)
    })
}

/// Counts the samples of the whole frames that start in `data`, which begins
/// at a frame boundary (the start of a PES payload).
pub(crate) fn count_audio_samples(codec: &str, data: &[u8]) -> Option<u64> {
    let mut offset = 0;
    let mut samples = 0u64;
    while offset < data.len() {
        let Some(frame) = parse_audio_frame(codec, &data[offset..]) else {
            break;
        };
        samples += u64::from(frame.samples);
        offset += frame.length.max(1);
    }
    (samples > 0).then_some(samples)
}

/// Reads a 33-bit PES timestamp (PTS or DTS) from its 5-byte field.
pub(crate) fn pes_timestamp(field: &[u8]) -> Option<u64> {
    let f = field.get(..5)?;
    // Each part ends in a marker bit that must be set.
    if f[0] & 1 == 0 || f[2] & 1 == 0 || f[4] & 1 == 0 {
        return None;
    }
    Some(
        (u64::from(f[0] >> 1) & 0x07) << 30
            | u64::from(f[1]) << 22
            | u64::from(f[2] >> 1) << 15
            | u64::from(f[3]) << 7
            | u64::from(f[4] >> 1),
    )
}

/// Reads the PTS of an MPEG-2 PES packet header starting at `00 00 01 id`.
pub(crate) fn pes_pts(pes: &[u8]) -> Option<u64> {
    if pes.get(..3)? != [0, 0, 1] {
        return None;
    }
    // MPEG-2 PES headers start with binary 10 in byte 6.
    if pes.get(6)? & 0xC0 != 0x80 || pes.get(7)? & 0x80 == 0 {
        return None;
    }
    pes_timestamp(pes.get(9..14)?)
}

/// Length of an MPEG-2 PES header (up to its payload), if it is one.
pub(crate) fn pes_header_length(pes: &[u8]) -> Option<usize> {
    if pes.get(6)? & 0xC0 != 0x80 {
        return None;
    }
    Some(9 + usize::from(*pes.get(8)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_codes_decode() {
        // 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut bits = BitReader::new(&data);
        assert_eq!(bits.ue(), Some(0));
        assert_eq!(bits.ue(), Some(1));
        assert_eq!(bits.ue(), Some(2));
        assert_eq!(bits.ue(), Some(3));
    }

    #[test]
    fn exp_golomb_on_zeros_fails() {
        let mut bits = BitReader::new(&[0; 8]);
        assert_eq!(bits.ue(), None);
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(unescape_nal(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }

    #[test]
    fn vp8_and_vp9_frames_give_their_profile() {
        // VP8 frame tag: keyframe bit 0, version (profile) 3 in bits 1-3.
        assert_eq!(
            frame_profile("vp8", &[0b0000_0110, 0, 0]).as_deref(),
            Some("3")
        );
        assert_eq!(
            frame_profile("vp8", &[0x10, 0x02, 0x00]).as_deref(),
            Some("0")
        );
        // VP9: frame marker 0b10, then the profile's low and high bits.
        assert_eq!(
            frame_profile("vp9", &[0b1000_0010]).as_deref(),
            Some("Profile 0")
        );
        assert_eq!(
            frame_profile("vp9", &[0b1001_0000]).as_deref(),
            Some("Profile 2")
        );
        assert_eq!(
            frame_profile("vp9", &[0b1011_0000]).as_deref(),
            Some("Profile 3")
        );
        // Profile 3 with its reserved bit set is not a valid header.
        assert_eq!(frame_profile("vp9", &[0b1011_1000]), None);
        assert_eq!(frame_profile("vp9", &[0b0100_0000]), None);
        assert_eq!(frame_profile("vp8", &[]), None);
    }

    #[test]
    fn av1_sequence_header_gives_the_profile() {
        // A temporal delimiter OBU (type 2, size 0), then a sequence header
        // OBU (type 1) with an extension byte and seq_profile 1.
        let frame = [0x12, 0x00, 0x0E, 0x00, 0x02, 0x20, 0x00];
        assert_eq!(frame_profile("av1", &frame).as_deref(), Some("High"));
        // Without the size field an OBU runs to the end of the data.
        assert_eq!(
            frame_profile("av1", &[0x08, 0x40]).as_deref(),
            Some("Professional")
        );
        // seq_profile 3 is reserved, and a frame OBU alone states no profile.
        assert_eq!(frame_profile("av1", &[0x0A, 0x01, 0x60]), None);
        assert_eq!(frame_profile("av1", &[0x32, 0x01, 0x00]), None);
        // A size whose LEB128 encoding never ends.
        assert_eq!(frame_profile("av1", &[0x0A, 0xFF, 0xFF]), None);
    }

    #[test]
    fn mpeg4_and_mjpeg_frames_give_the_profile() {
        // Visual object sequence start code, profile_and_level 0xF5.
        let mpeg4 = [0, 0, 1, 0xB0, 0xF5, 0, 0, 1, 0xB5];
        assert_eq!(
            frame_profile("mpeg4", &mpeg4).as_deref(),
            Some("Advanced Simple Profile")
        );
        assert_eq!(frame_profile("mpeg4", &[0, 0, 1, 0xB6, 0x10]), None);

        // SOI, an APP0 segment of 4 bytes, then a progressive frame header.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xC2, 0x00, 0x11,
        ];
        assert_eq!(
            frame_profile("mjpeg", &jpeg).as_deref(),
            Some("Progressive")
        );
        let baseline = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11];
        assert_eq!(
            frame_profile("mjpeg", &baseline).as_deref(),
            Some("Baseline")
        );
        for marker in [0xC1, 0xC3, 0xF7] {
            assert!(frame_profile("mjpeg", &[0xFF, 0xD8, 0xFF, marker]).is_some());
        }
        // Not a JPEG, and a segment that runs past the data.
        assert_eq!(frame_profile("mjpeg", &[0x00, 0xD8, 0xFF, 0xC0]), None);
        assert_eq!(
            frame_profile("mjpeg", &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x40]),
            None
        );
        assert_eq!(frame_profile("theora", &baseline), None);
    }

    #[test]
    fn annex_b_frames_give_the_sps_profile() {
        // The x264 High-profile SPS below, behind a start code and NAL header.
        let mut frame = vec![0, 0, 0, 1, 0x67];
        frame.extend_from_slice(&[
            0x64, 0x00, 0x0B, 0xAC, 0xD9, 0x42, 0x8D, 0xF9, 0x30, 0x11, 0x00, 0x00, 0x03, 0x00,
            0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0F, 0x14, 0x29, 0x96,
        ]);
        assert_eq!(frame_profile("h264", &frame).as_deref(), Some("High"));
        assert_eq!(frame_profile("hevc", &frame), None);
    }

    #[test]
    fn h264_sps_gives_size_profile_and_rate() {
        // SPS written by x264 for a 160x90 High-profile clip at 25 fps.
        let sps = [
            0x64, 0x00, 0x0B, 0xAC, 0xD9, 0x42, 0x8D, 0xF9, 0x30, 0x11, 0x00, 0x00, 0x03, 0x00,
            0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0F, 0x14, 0x29, 0x96,
        ];
        let video = parse_h264_sps(&sps).unwrap();
        assert_eq!((video.width, video.height), (160, 90));
        assert_eq!(video.profile, Some("High"));
        assert_eq!(video.frame_rate, Rational::new(25, 1));
    }

    #[test]
    fn h264_444_sps_with_scaling_lists_parses() {
        // SPS written by x264 for a 64x48 4:4:4 clip at 50 fps with the JVT
        // quantisation matrices (`-x264-params cqm=jvt`).
        let sps = [
            0xF4, 0x00, 0x0A, 0x91, 0x9B, 0x28, 0x8F, 0x60, 0x22, 0x00, 0x00, 0x03, 0x00, 0x02,
            0x00, 0x00, 0x03, 0x00, 0xC8, 0x1E, 0x24, 0x4B, 0x2C,
        ];

        let video = parse_h264_sps(&sps).unwrap();

        assert_eq!((video.width, video.height), (64, 48));
        assert_eq!(video.profile, Some("High 4:4:4 Predictive"));
        assert_eq!(video.frame_rate, Rational::new(50, 1));
    }

    #[test]
    fn mpeg2_profiles_are_named() {
        let cases = [
            (0x14, Some("High")),
            (0x24, Some("Spatially Scalable")),
            (0x34, Some("SNR Scalable")),
            (0x48, Some("Main")),
            (0x58, Some("Simple")),
            (0x82, Some("4:2:2")),
            (0x8A, None),
            (0x08, None),
        ];
        for (profile_level, name) in cases {
            assert_eq!(
                mpeg2_profile_name(profile_level),
                name,
                "{profile_level:#x}"
            );
        }
    }

    #[test]
    fn mpeg_audio_versions_and_layers_are_read() {
        // MPEG-2 layer 3 at 22.05 kHz, mono; MPEG-2.5 layer 3 at 11.025 kHz;
        // MPEG-1 layer 1 at 44.1 kHz.
        let cases = [
            ([0xFF, 0xF3, 0x80, 0xC0], "mp3", 22_050, 1, 576),
            ([0xFF, 0xE3, 0x80, 0x00], "mp3", 11_025, 2, 576),
            ([0xFF, 0xFF, 0x10, 0x00], "mp1", 44_100, 2, 384),
        ];
        for (header, codec, rate, channels, samples) in cases {
            let frame = parse_audio_frame(codec, &header).unwrap();

            assert_eq!(frame.codec, codec);
            assert_eq!(frame.sample_rate, rate, "{header:x?}");
            assert_eq!(frame.channels, channels, "{header:x?}");
            assert_eq!(frame.samples, samples, "{header:x?}");
        }
        // Reserved version, reserved layer, free and bad bit rates, reserved rate.
        for header in [
            [0xFF, 0xEB, 0x80, 0],
            [0xFF, 0xF9, 0x80, 0],
            [0xFF, 0xFB, 0x00, 0],
            [0xFF, 0xFB, 0xF0, 0],
            [0xFF, 0xFB, 0x8C, 0],
        ] {
            assert!(parse_mpeg_audio(&header).is_none(), "{header:x?}");
        }
    }

    #[test]
    fn ac3_surround_header_counts_lfe() {
        // 44.1 kHz, 384 kbit/s, acmod 7 (3/2) with cmixlev, surmixlev and LFE.
        let header = [0x0B, 0x77, 0, 0, 0x5C, 0x40, 0xE1, 0];

        let frame = parse_ac3(&header).unwrap();

        assert_eq!(frame.sample_rate, 44_100);
        assert_eq!(frame.channels, 6);
        assert_eq!(frame.length, 2 * (384 * 320 / 147));
        assert_eq!(parse_ac3(&[0x0B, 0x77, 0, 0, 0xDC, 0x40, 0xE1, 0]), None);
        assert_eq!(parse_audio_frame("opus", &header), None);
    }

    #[test]
    fn audio_samples_are_counted_over_whole_frames() {
        // Two MPEG-1 layer 1 frames of 32 kbit/s at 44.1 kHz: 32 bytes each.
        let mut data = vec![0; 64];
        data[..4].copy_from_slice(&[0xFF, 0xFF, 0x10, 0x00]);
        data[32..36].copy_from_slice(&[0xFF, 0xFF, 0x10, 0x00]);

        assert_eq!(count_audio_samples("mp1", &data), Some(768));
        assert_eq!(count_audio_samples("mp1", &[0; 8]), None);
        assert_eq!(find_audio_frame("mp1", &data).map(|f| f.length), Some(32));
        assert_eq!(aac_channels(7), Some(8));
        assert_eq!(aac_channels(0), None);
    }

    #[test]
    fn hevc_sps_gives_cropped_size_and_profile() {
        // SPS written by x265 for a 160x90 Main-profile clip: coded as 160x96
        // with a conformance window that crops 6 rows.
        let nal = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x1E, 0xA0, 0x14, 0x20, 0x61, 0xF2, 0x65, 0x95, 0x95, 0x29, 0x30,
            0xBC, 0x05, 0xA0, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0x21,
        ];
        let annex_b = [&[0, 0, 0, 1][..], &nal].concat();

        let video = find_hevc_sps(&annex_b).unwrap();

        assert_eq!(video.codec, "hevc");
        assert_eq!((video.width, video.height), (160, 90));
        assert_eq!(video.profile, Some("Main"));
        assert_eq!(video.frame_rate, None);
        assert_eq!(parse_hevc_sps(&nal[2..12]), None);
    }

    #[test]
    fn truncated_sps_gives_none() {
        assert_eq!(parse_h264_sps(&[0x64, 0x00]), None);
    }

    #[test]
    fn mpeg2_sequence_with_extension_is_mpeg2() {
        let mut data = vec![
            0, 0, 1, 0xB3, 0x0A, 0x00, 0x5A, 0x33, 0xFF, 0xFF, 0xE0, 0x18,
        ];
        data.extend_from_slice(&[0, 0, 1, 0xB5, 0x14, 0x8A, 0x00, 0x01, 0x00, 0x00]);
        let video = find_mpeg12_sequence(&data).unwrap();
        assert_eq!(video.codec, "mpeg2video");
        assert_eq!((video.width, video.height), (160, 90));
        assert_eq!(video.profile, Some("Main"));
        assert_eq!(video.frame_rate, Rational::new(25, 1));
        assert_eq!(frame_profile("mpeg2video", &data).as_deref(), Some("Main"));
    }

    #[test]
    fn mpeg1_sequence_without_extension_is_mpeg1() {
        // A sequence header followed by a GOP header, not an extension.
        let data = [
            0, 0, 1, 0xB3, 0x16, 0x01, 0x20, 0x14, 0xFF, 0xFF, 0xE0, 0x18, 0, 0, 1, 0xB8, 0, 0, 0,
            0, 0, 0,
        ];
        let video = find_mpeg12_sequence(&data).unwrap();
        assert_eq!(video.codec, "mpeg1video");
        assert_eq!((video.width, video.height), (352, 288));
        assert_eq!(video.frame_rate, Rational::new(30000, 1001));
    }

    #[test]
    fn sequence_header_without_following_bytes_gives_none() {
        let data = [
            0, 0, 1, 0xB3, 0x16, 0x01, 0x20, 0x14, 0xFF, 0xFF, 0xE0, 0x18, 0, 0,
        ];
        assert_eq!(find_mpeg12_sequence(&data), None);
    }

    #[test]
    fn adts_header_parses() {
        // AAC LC, 44.1 kHz, stereo, 371-byte frame.
        let frame = parse_adts(&[0xFF, 0xF1, 0x50, 0x80, 0x2E, 0x7F, 0xFC]).unwrap();
        assert_eq!(frame.sample_rate, 44100);
        assert_eq!(frame.channels, 2);
        assert_eq!(frame.length, 371);
        assert_eq!(frame.samples, 1024);
    }

    #[test]
    fn mpeg_audio_layers_are_named() {
        // MPEG-1 layer 2, 64 kbit/s, 48 kHz, mono.
        let mp2 = parse_mpeg_audio(&[0xFF, 0xFD, 0x44, 0xC0]).unwrap();
        assert_eq!(mp2.codec, "mp2");
        assert_eq!((mp2.sample_rate, mp2.channels, mp2.length), (48000, 1, 192));
        // MPEG-1 layer 3, 128 kbit/s, 44.1 kHz, joint stereo.
        let mp3 = parse_mpeg_audio(&[0xFF, 0xFB, 0x90, 0x40]).unwrap();
        assert_eq!(mp3.codec, "mp3");
        assert_eq!((mp3.sample_rate, mp3.channels, mp3.length), (44100, 2, 417));
        assert_eq!(parse_mpeg_audio(&[0xFF, 0xFB, 0xF0, 0x40]), None);
    }

    #[test]
    fn ac3_header_parses() {
        // 48 kHz, 96 kbit/s, acmod 1 (mono), no LFE.
        let frame = parse_ac3(&[0x0B, 0x77, 0, 0, 0x0C, 0x40, 0x20, 0x00]).unwrap();
        assert_eq!(frame.codec, "ac3");
        assert_eq!((frame.sample_rate, frame.channels), (48000, 1));
        assert_eq!(frame.length, 384);
    }

    #[test]
    fn eac3_header_parses() {
        // bsid 16, 48 kHz, 6 blocks, acmod 2 + LFE.
        let frame = parse_ac3(&[0x0B, 0x77, 0x00, 0xFF, 0x35, 0x80, 0, 0]).unwrap();
        assert_eq!(frame.codec, "eac3");
        assert_eq!((frame.sample_rate, frame.channels), (48000, 3));
        assert_eq!(frame.length, 512);
        assert_eq!(frame.samples, 1536);
    }

    #[test]
    fn pes_timestamp_reads_33_bits() {
        // PTS 0x1_0000_0001 with marker bits.
        assert_eq!(pes_timestamp(&[0x29, 0, 1, 0, 3]), Some(0x1_0000_0001));
        assert_eq!(pes_timestamp(&[0x28, 0, 1, 0, 3]), None);
    }
}

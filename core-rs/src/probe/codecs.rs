//! Codec and profile names as ffprobe 5.1 prints them (`codec_name`,
//! `profile`), mapped from the identifiers containers store: ISO sample entry
//! types, MPEG-4 object types, Matroska codec IDs, `FourCC` and `WAVEFORMATEX`
//! tags, and the first bytes of codec configuration records.

use super::bytes::ByteCursor;

/// The codec of an ISO visual sample entry type.
#[must_use]
pub fn iso_video_codec(fourcc: [u8; 4]) -> Option<&'static str> {
    Some(match &fourcc {
        b"avc1" | b"avc2" | b"avc3" | b"avc4" => "h264",
        b"hvc1" | b"hev1" | b"dvh1" | b"dvhe" => "hevc",
        b"av01" => "av1",
        b"vp09" => "vp9",
        b"vp08" => "vp8",
        b"mp4v" => "mpeg4",
        b"s263" | b"h263" | b"H263" => "h263",
        b"apcn" | b"apch" | b"apcs" | b"apco" | b"ap4h" | b"ap4x" => "prores",
        b"jpeg" | b"mjpa" => "mjpeg",
        b"mjpb" => "mjpegb",
        b"mp1v" | b"m1v " => "mpeg1video",
        b"mp2v" | b"xdvc" | b"xd5c" | b"hdv2" | b"mx5p" | b"mx5n" => "mpeg2video",
        b"dvc " | b"dvcp" | b"dv5n" | b"dv5p" | b"dvh5" | b"dvh6" => "dvvideo",
        b"vc-1" => "vc1",
        b"png " => "png",
        b"raw " => "rawvideo",
        b"FFV1" => "ffv1",
        b"SVQ3" => "svq3",
        b"SVQ1" => "svq1",
        b"cvid" => "cinepak",
        b"rle " => "qtrle",
        b"AVdn" | b"AVdh" => "dnxhd",
        _ => return None,
    })
}

/// The codec of an ISO audio sample entry type. PCM entries depend on the
/// sample size and, for QuickTime `lpcm`/`in24`, on the `enda` flag.
#[must_use]
pub fn iso_audio_codec(
    fourcc: [u8; 4],
    sample_size: u16,
    little_endian: bool,
) -> Option<&'static str> {
    Some(match &fourcc {
        b"mp4a" => "aac",
        b".mp3" | b"ms\x00\x55" => "mp3",
        b"ac-3" | b"sac3" => "ac3",
        b"ec-3" => "eac3",
        b"Opus" => "opus",
        b"fLaC" => "flac",
        b"alac" => "alac",
        b"samr" => "amr_nb",
        b"sawb" => "amr_wb",
        b"dtsc" | b"dtsh" | b"dtsl" => "dts",
        b"ac-4" => "ac4",
        b"sowt" => match sample_size {
            8 => "pcm_s8",
            24 => "pcm_s24le",
            32 => "pcm_s32le",
            _ => "pcm_s16le",
        },
        b"twos" => match sample_size {
            8 => "pcm_s8",
            24 => "pcm_s24be",
            32 => "pcm_s32be",
            _ => "pcm_s16be",
        },
        b"lpcm" | b"NONE" => {
            if little_endian {
                "pcm_s16le"
            } else {
                "pcm_s16be"
            }
        }
        b"in24" => {
            if little_endian {
                "pcm_s24le"
            } else {
                "pcm_s24be"
            }
        }
        b"in32" => {
            if little_endian {
                "pcm_s32le"
            } else {
                "pcm_s32be"
            }
        }
        b"fl32" => {
            if little_endian {
                "pcm_f32le"
            } else {
                "pcm_f32be"
            }
        }
        b"fl64" => {
            if little_endian {
                "pcm_f64le"
            } else {
                "pcm_f64be"
            }
        }
        b"raw " => "pcm_u8",
        b"ulaw" => "pcm_mulaw",
        b"alaw" => "pcm_alaw",
        b"ima4" => "adpcm_ima_qt",
        b"Qclp" | b"sqcp" => "qcelp",
        b"QDM2" => "qdm2",
        b"QDMC" => "qdmc",
        b"mlpa" => "truehd",
        _ => return None,
    })
}

/// The codec of an ISO ISO/IEC 23003-5 `ipcm`/`fpcm` entry from its `pcmC` box.
#[must_use]
pub fn iso_pcm_codec(pcm_config: &[u8], fourcc: &[u8; 4]) -> Option<&'static str> {
    let mut cur = ByteCursor::new(pcm_config, "pcmC box");
    cur.skip(4).ok()?;
    let little_endian = cur.u8().ok()? & 1 == 1;
    let bits = cur.u8().ok()?;
    Some(match (fourcc, bits, little_endian) {
        (b"fpcm", 32, true) => "pcm_f32le",
        (b"fpcm", 32, false) => "pcm_f32be",
        (b"fpcm", 64, true) => "pcm_f64le",
        (b"fpcm", 64, false) => "pcm_f64be",
        (b"ipcm", 16, true) => "pcm_s16le",
        (b"ipcm", 16, false) => "pcm_s16be",
        (b"ipcm", 24, true) => "pcm_s24le",
        (b"ipcm", 24, false) => "pcm_s24be",
        (b"ipcm", 32, true) => "pcm_s32le",
        (b"ipcm", 32, false) => "pcm_s32be",
        _ => return None,
    })
}

/// The codec of an ISO subtitle or text sample entry type.
#[must_use]
pub fn iso_subtitle_codec(fourcc: [u8; 4]) -> Option<&'static str> {
    Some(match &fourcc {
        b"tx3g" | b"text" => "mov_text",
        b"wvtt" => "webvtt",
        b"stpp" => "ttml",
        b"c608" => "eia_608",
        _ => return None,
    })
}

/// The codec for an MPEG-4 `objectTypeIndication` (ISO/IEC 14496-1 and the
/// MP4 registration authority's list), as ffmpeg's `ff_mp4_obj_type` maps it.
#[must_use]
pub fn mp4_object_type(object_type: u8) -> Option<&'static str> {
    Some(match object_type {
        0x08 => "mov_text",
        0x20 => "mpeg4",
        0x21 => "h264",
        0x23 => "hevc",
        0x40 | 0x66..=0x68 => "aac",
        0x60..=0x65 => "mpeg2video",
        0x69 | 0x6B => "mp3",
        0x6A => "mpeg1video",
        0x6C => "mjpeg",
        0x6D => "png",
        0x6E => "jpeg2000",
        0xA3 => "vc1",
        0xA4 => "dirac",
        0xA5 => "ac3",
        0xA6 => "eac3",
        0xA9 => "dts",
        0xAD => "opus",
        0xB1 => "vp9",
        0xC1 => "flac",
        0xDD => "vorbis",
        0xE0 => "dvd_subtitle",
        0xE1 => "qcelp",
        _ => return None,
    })
}

/// The H.264 profile from an `AVCDecoderConfigurationRecord` (avcC).
#[must_use]
pub fn avc_profile(record: &[u8]) -> Option<String> {
    let (&profile_idc, &constraints) = (record.get(1)?, record.get(2)?);
    h264_profile_name(profile_idc, constraints).map(str::to_owned)
}

/// ffmpeg's name for an H.264 `profile_idc` with its constraint flags byte
/// (`constraint_set0_flag` in the top bit).
#[must_use]
pub fn h264_profile_name(profile_idc: u8, constraints: u8) -> Option<&'static str> {
    let set1 = constraints & 0x40 != 0;
    let set3 = constraints & 0x10 != 0;
    Some(match profile_idc {
        66 if set1 => "Constrained Baseline",
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 if set3 => "High 10 Intra",
        110 => "High 10",
        122 if set3 => "High 4:2:2 Intra",
        122 => "High 4:2:2",
        144 => "High 4:4:4",
        244 if set3 => "High 4:4:4 Intra",
        244 => "High 4:4:4 Predictive",
        44 => "CAVLC 4:4:4",
        118 => "Multiview High",
        128 => "Stereo High",
        _ => return None,
    })
}

/// The HEVC profile from an `HEVCDecoderConfigurationRecord` (hvcC).
#[must_use]
pub fn hevc_profile(record: &[u8]) -> Option<String> {
    hevc_profile_name(record.get(1)? & 0x1F).map(str::to_owned)
}

/// ffmpeg's name for an HEVC `general_profile_idc`.
#[must_use]
pub fn hevc_profile_name(profile_idc: u8) -> Option<&'static str> {
    Some(match profile_idc {
        1 => "Main",
        2 => "Main 10",
        3 => "Main Still Picture",
        4 => "Rext",
        _ => return None,
    })
}

/// The AV1 profile from an `AV1CodecConfigurationRecord` (av1C).
#[must_use]
pub fn av1_profile(record: &[u8]) -> Option<String> {
    av1_profile_name(record.get(1)? >> 5).map(str::to_owned)
}

/// ffmpeg's name for an AV1 `seq_profile`.
#[must_use]
pub fn av1_profile_name(seq_profile: u8) -> Option<&'static str> {
    Some(match seq_profile {
        0 => "Main",
        1 => "High",
        2 => "Professional",
        _ => return None,
    })
}

/// The VP8/VP9 profile from a `VPCodecConfigurationRecord` (vpcC, a full box).
#[must_use]
pub fn vpx_profile(record: &[u8]) -> Option<String> {
    Some(format!("Profile {}", record.get(4)?))
}

/// ffprobe's `ProRes` profile, which ffmpeg derives from the sample entry type.
#[must_use]
pub fn prores_profile(fourcc: [u8; 4]) -> Option<&'static str> {
    Some(match &fourcc {
        b"apco" => "Proxy",
        b"apcs" => "LT",
        b"apcn" => "Standard",
        b"apch" => "HQ",
        b"ap4h" => "4444",
        b"ap4x" => "XQ",
        _ => return None,
    })
}

/// The MPEG-4 Visual profile from the decoder specific info, which starts
/// with a `visual_object_sequence_start_code` and its profile/level byte.
#[must_use]
pub fn mpeg4_visual_profile(decoder_specific: &[u8]) -> Option<String> {
    const NAMES: [&str; 16] = [
        "Simple Profile",
        "Simple Scalable Profile",
        "Core Profile",
        "Main Profile",
        "N-bit Profile",
        "Scalable Texture Profile",
        "Simple Face Animation Profile",
        "Basic Animated Texture Profile",
        "Hybrid Profile",
        "Advanced Real Time Simple Profile",
        "Core Scalable Profile",
        "Advanced Coding Profile",
        "Advanced Core Profile",
        "Advanced Scalable Texture Profile",
        "Simple Studio Profile",
        "Advanced Simple Profile",
    ];
    if !decoder_specific.starts_with(&[0, 0, 1, 0xB0]) {
        return None;
    }
    let level_byte = *decoder_specific.get(4)?;
    NAMES
        .get(usize::from(level_byte >> 4))
        .map(|name| (*name).to_owned())
}

/// What an MPEG-4 `AudioSpecificConfig` states about the decoded output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioConfig {
    /// Audio object type (2 is AAC LC, 5 is SBR, 29 is PS).
    pub object_type: u8,
    /// Output sample rate in Hz, after SBR where it is signalled.
    pub sample_rate: u32,
    /// Channel count, 0 when the configuration leaves it to a program element.
    pub channels: u32,
}

const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Parses the first fields of an MPEG-4 `AudioSpecificConfig`.
#[must_use]
pub fn parse_audio_specific_config(config: &[u8]) -> Option<AudioConfig> {
    let mut bits = BitReader::new(config);
    let mut object_type = bits.read(5)?;
    if object_type == 31 {
        object_type = 32 + bits.read(6)?;
    }
    let mut sample_rate = read_aac_rate(&mut bits)?;
    let channel_config = bits.read(4)?;
    if object_type == 5 || object_type == 29 {
        // Explicit SBR signalling: the extension rate is the output rate.
        sample_rate = read_aac_rate(&mut bits)?;
    }
    let channels = match channel_config {
        7 => 8,
        n @ 1..=6 => n,
        _ => 0,
    };
    Some(AudioConfig {
        object_type: u8::try_from(object_type).ok()?,
        sample_rate,
        channels,
    })
}

fn read_aac_rate(bits: &mut BitReader<'_>) -> Option<u32> {
    let index = bits.read(4)?;
    if index == 15 {
        return bits.read(24);
    }
    AAC_SAMPLE_RATES.get(usize::try_from(index).ok()?).copied()
}

/// The codec for a Matroska `CodecID`, following ffmpeg's `ff_mkv_codec_tags`.
/// `private` is the track's `CodecPrivate`, needed for the VFW/ACM wrappers,
/// and `bit_depth` the audio `BitDepth`, needed for PCM.
#[must_use]
pub fn matroska_codec(codec_id: &str, private: &[u8], bit_depth: u32) -> Option<&'static str> {
    if let Some(fourcc_codec) = matroska_wrapped_codec(codec_id, private) {
        return Some(fourcc_codec);
    }
    if codec_id.starts_with("A_AAC") {
        return Some("aac");
    }
    if codec_id.starts_with("V_MPEG4/ISO/") && codec_id != "V_MPEG4/ISO/AVC" {
        return Some("mpeg4");
    }
    if codec_id.starts_with("A_PCM/") {
        return matroska_pcm(codec_id, bit_depth);
    }
    Some(match codec_id {
        "V_MPEG4/ISO/AVC" => "h264",
        "V_MPEGH/ISO/HEVC" => "hevc",
        "V_AV1" => "av1",
        "V_VP8" => "vp8",
        "V_VP9" => "vp9",
        "V_MPEG1" => "mpeg1video",
        "V_MPEG2" => "mpeg2video",
        "V_MPEG4/MS/V3" => "msmpeg4v3",
        "V_THEORA" => "theora",
        "V_PRORES" => "prores",
        "V_MJPEG" => "mjpeg",
        "V_FFV1" => "ffv1",
        "V_DIRAC" => "dirac",
        "V_UNCOMPRESSED" => "rawvideo",
        "V_REAL/RV10" => "rv10",
        "V_REAL/RV20" => "rv20",
        "V_REAL/RV30" => "rv30",
        "V_REAL/RV40" => "rv40",
        "A_OPUS" => "opus",
        "A_VORBIS" => "vorbis",
        "A_MPEG/L3" => "mp3",
        "A_MPEG/L2" => "mp2",
        "A_MPEG/L1" => "mp1",
        "A_AC3" | "A_AC3/BSID9" | "A_AC3/BSID10" => "ac3",
        "A_EAC3" => "eac3",
        "A_DTS" | "A_DTS/EXPRESS" | "A_DTS/LOSSLESS" => "dts",
        "A_FLAC" => "flac",
        "A_TRUEHD" => "truehd",
        "A_MLP" => "mlp",
        "A_ALAC" => "alac",
        "A_TTA1" => "tta",
        "A_WAVPACK4" => "wavpack",
        "A_QUICKTIME/QDMC" => "qdmc",
        "A_QUICKTIME/QDM2" => "qdm2",
        "A_REAL/COOK" => "cook",
        "A_REAL/ATRC" => "atrac3",
        "A_REAL/28_8" => "ra_288",
        "A_REAL/14_4" => "ra_144",
        "S_TEXT/UTF8" | "S_TEXT/UTF-8" => "subrip",
        "S_TEXT/ASCII" => "text",
        "S_TEXT/ASS" | "S_TEXT/SSA" | "S_ASS" | "S_SSA" => "ass",
        "S_TEXT/WEBVTT"
        | "D_WEBVTT/SUBTITLES"
        | "D_WEBVTT/CAPTIONS"
        | "D_WEBVTT/DESCRIPTIONS"
        | "D_WEBVTT/METADATA" => "webvtt",
        "S_VOBSUB" => "dvd_subtitle",
        "S_DVBSUB" => "dvb_subtitle",
        "S_HDMV/PGS" => "hdmv_pgs_subtitle",
        "S_HDMV/TEXTST" => "hdmv_text_subtitle",
        "S_KATE" => "kate",
        "S_ARIBSUB" => "arib_caption",
        _ => return None,
    })
}

fn matroska_wrapped_codec(codec_id: &str, private: &[u8]) -> Option<&'static str> {
    match codec_id {
        // BITMAPINFOHEADER: the compression FourCC is at offset 16.
        "V_MS/VFW/FOURCC" => {
            let fourcc: [u8; 4] = private.get(16..20)?.try_into().ok()?;
            fourcc_video_codec(fourcc)
        }
        // WAVEFORMATEX: the format tag is the first field.
        "A_MS/ACM" => {
            let tag = u16::from_le_bytes(private.get(0..2)?.try_into().ok()?);
            let bits = u16::from_le_bytes(private.get(14..16)?.try_into().ok()?);
            wave_format_codec(tag, bits)
        }
        "V_QUICKTIME" => {
            let fourcc: [u8; 4] = private.get(4..8)?.try_into().ok()?;
            iso_video_codec(fourcc)
        }
        _ => None,
    }
}

fn matroska_pcm(codec_id: &str, bit_depth: u32) -> Option<&'static str> {
    Some(match (codec_id, bit_depth) {
        ("A_PCM/INT/LIT" | "A_PCM/INT/BIG", 8) => "pcm_u8",
        ("A_PCM/INT/LIT", 24) => "pcm_s24le",
        ("A_PCM/INT/LIT", 32) => "pcm_s32le",
        ("A_PCM/INT/LIT", _) => "pcm_s16le",
        ("A_PCM/INT/BIG", 24) => "pcm_s24be",
        ("A_PCM/INT/BIG", 32) => "pcm_s32be",
        ("A_PCM/INT/BIG", _) => "pcm_s16be",
        ("A_PCM/FLOAT/IEEE", 64) => "pcm_f64le",
        ("A_PCM/FLOAT/IEEE", _) => "pcm_f32le",
        _ => return None,
    })
}

/// The codec for a video `FourCC` as stored in AVI and VFW headers.
#[must_use]
pub fn fourcc_video_codec(fourcc: [u8; 4]) -> Option<&'static str> {
    let upper = fourcc.map(|b| b.to_ascii_uppercase());
    Some(match &upper {
        b"H264" | b"X264" | b"AVC1" | b"DAVC" | b"VSSH" => "h264",
        b"HEVC" | b"H265" | b"HVC1" => "hevc",
        b"XVID" | b"DIVX" | b"DX50" | b"FMP4" | b"MP4V" | b"3IV2" | b"M4S2" => "mpeg4",
        b"DIV3" | b"MP43" | b"DIV4" => "msmpeg4v3",
        b"MP42" => "msmpeg4v2",
        b"MJPG" | b"AVRN" | b"LJPG" | b"JPGL" => "mjpeg",
        b"WMV1" => "wmv1",
        b"WMV2" => "wmv2",
        b"WMV3" => "wmv3",
        b"WVC1" => "vc1",
        b"MPG1" => "mpeg1video",
        b"MPG2" | b"MPEG" => "mpeg2video",
        b"VP80" => "vp8",
        b"VP90" => "vp9",
        b"AV01" => "av1",
        b"FFV1" => "ffv1",
        b"HFYU" => "huffyuv",
        b"DVSD" | b"DV25" | b"DV50" => "dvvideo",
        b"CVID" => "cinepak",
        b"H263" | b"S263" => "h263",
        b"THEO" => "theora",
        _ => return None,
    })
}

/// The codec for a `WAVEFORMATEX` format tag; PCM depends on the bits per sample.
#[must_use]
pub fn wave_format_codec(tag: u16, bits_per_sample: u16) -> Option<&'static str> {
    Some(match tag {
        0x0001 => match bits_per_sample {
            8 => "pcm_u8",
            24 => "pcm_s24le",
            32 => "pcm_s32le",
            _ => "pcm_s16le",
        },
        0x0003 => {
            if bits_per_sample == 64 {
                "pcm_f64le"
            } else {
                "pcm_f32le"
            }
        }
        0x0006 => "pcm_alaw",
        0x0007 => "pcm_mulaw",
        0x0011 => "adpcm_ima_wav",
        0x0002 => "adpcm_ms",
        0x0050 => "mp2",
        0x0055 => "mp3",
        0x00FF | 0x1600 | 0x706D => "aac",
        0x0160 => "wmav1",
        0x0161 => "wmav2",
        0x0162 => "wmapro",
        0x0163 => "wmalossless",
        0x2000 => "ac3",
        0x2001 => "dts",
        0x6771 | 0x674F => "vorbis",
        0xF1AC => "flac",
        0x704F => "opus",
        _ => return None,
    })
}

/// Reads big-endian bit fields, as MPEG headers pack them.
pub struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    /// Creates a reader at the first bit of `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, bit: 0 }
    }

    /// Reads `count` (at most 32) bits, or `None` past the end.
    pub fn read(&mut self, count: u32) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count.min(32) {
            let byte = *self.data.get(self.bit / 8)?;
            let bit = (byte >> (7 - (self.bit % 8))) & 1;
            value = (value << 1) | u32::from(bit);
            self.bit += 1;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_profiles_follow_constraint_flags() {
        assert_eq!(h264_profile_name(66, 0xC0), Some("Constrained Baseline"));
        assert_eq!(h264_profile_name(66, 0x80), Some("Baseline"));
        assert_eq!(h264_profile_name(100, 0), Some("High"));
        assert_eq!(h264_profile_name(110, 0x10), Some("High 10 Intra"));
        assert_eq!(h264_profile_name(7, 0), None);
    }

    #[test]
    fn aac_config_reads_rate_and_channels() {
        // AAC LC, 44.1 kHz (index 4), stereo: 00010 0100 0010 000
        let config = parse_audio_specific_config(&[0x12, 0x10]).unwrap();
        assert_eq!(config.object_type, 2);
        assert_eq!(config.sample_rate, 44_100);
        assert_eq!(config.channels, 2);
    }

    #[test]
    fn aac_config_with_sbr_reports_the_output_rate() {
        // HE-AAC: object type 5, core 24 kHz (index 6), stereo, extension 48 kHz (index 3).
        // 00101 0110 0010 0011 + padding
        let config = parse_audio_specific_config(&[0x2B, 0x11, 0x80]).unwrap();
        assert_eq!(config.sample_rate, 48_000);
    }

    #[test]
    fn aac_config_too_short_is_none() {
        assert_eq!(parse_audio_specific_config(&[0x12]), None);
    }

    #[test]
    fn matroska_codec_ids_map_to_ffprobe_names() {
        assert_eq!(matroska_codec("V_MPEG4/ISO/AVC", &[], 0), Some("h264"));
        assert_eq!(matroska_codec("V_MPEG4/ISO/ASP", &[], 0), Some("mpeg4"));
        assert_eq!(matroska_codec("A_AAC/MPEG4/LC/SBR", &[], 0), Some("aac"));
        assert_eq!(matroska_codec("A_PCM/INT/LIT", &[], 24), Some("pcm_s24le"));
        assert_eq!(matroska_codec("S_TEXT/UTF8", &[], 0), Some("subrip"));
        assert_eq!(matroska_codec("X_NOTHING", &[], 0), None);
        let mut bitmap_info = vec![0u8; 40];
        bitmap_info[16..20].copy_from_slice(b"XVID");
        assert_eq!(
            matroska_codec("V_MS/VFW/FOURCC", &bitmap_info, 0),
            Some("mpeg4")
        );
    }

    #[test]
    fn object_types_cover_audio_and_video() {
        assert_eq!(mp4_object_type(0x40), Some("aac"));
        assert_eq!(mp4_object_type(0x6B), Some("mp3"));
        assert_eq!(mp4_object_type(0x20), Some("mpeg4"));
        assert_eq!(mp4_object_type(0x01), None);
    }

    #[test]
    fn mpeg4_visual_profile_reads_the_level_byte() {
        assert_eq!(
            mpeg4_visual_profile(&[0, 0, 1, 0xB0, 0xF5]).as_deref(),
            Some("Advanced Simple Profile")
        );
        assert_eq!(
            mpeg4_visual_profile(&[0, 0, 1, 0xB0, 0x01]).as_deref(),
            Some("Simple Profile")
        );
        assert_eq!(mpeg4_visual_profile(&[1, 2]), None);
    }

    #[test]
    fn iso_sample_entries_map_to_ffprobe_names() {
        let video = [
            (b"avc3", "h264"),
            (b"hev1", "hevc"),
            (b"av01", "av1"),
            (b"vp09", "vp9"),
            (b"vp08", "vp8"),
            (b"mp4v", "mpeg4"),
            (b"s263", "h263"),
            (b"apch", "prores"),
            (b"jpeg", "mjpeg"),
            (b"mjpb", "mjpegb"),
            (b"m1v ", "mpeg1video"),
            (b"xd5c", "mpeg2video"),
            (b"dvh5", "dvvideo"),
            (b"vc-1", "vc1"),
            (b"png ", "png"),
            (b"raw ", "rawvideo"),
            (b"FFV1", "ffv1"),
            (b"SVQ3", "svq3"),
            (b"SVQ1", "svq1"),
            (b"cvid", "cinepak"),
            (b"rle ", "qtrle"),
            (b"AVdn", "dnxhd"),
        ];
        for (fourcc, name) in video {
            assert_eq!(iso_video_codec(*fourcc), Some(name), "{fourcc:?}");
        }
        assert_eq!(iso_video_codec(*b"zzzz"), None);

        let subtitles = [
            (b"tx3g", "mov_text"),
            (b"wvtt", "webvtt"),
            (b"stpp", "ttml"),
            (b"c608", "eia_608"),
        ];
        for (fourcc, name) in subtitles {
            assert_eq!(iso_subtitle_codec(*fourcc), Some(name), "{fourcc:?}");
        }
        assert_eq!(iso_subtitle_codec(*b"zzzz"), None);
    }

    #[test]
    fn iso_audio_entries_follow_size_and_endianness() {
        let cases = [
            (b"mp4a", 16, false, "aac"),
            (b".mp3", 16, false, "mp3"),
            (b"sac3", 16, false, "ac3"),
            (b"ec-3", 16, false, "eac3"),
            (b"Opus", 16, false, "opus"),
            (b"fLaC", 16, false, "flac"),
            (b"alac", 16, false, "alac"),
            (b"samr", 16, false, "amr_nb"),
            (b"sawb", 16, false, "amr_wb"),
            (b"dtsl", 16, false, "dts"),
            (b"ac-4", 16, false, "ac4"),
            (b"sowt", 8, false, "pcm_s8"),
            (b"sowt", 16, false, "pcm_s16le"),
            (b"sowt", 24, false, "pcm_s24le"),
            (b"sowt", 32, false, "pcm_s32le"),
            (b"twos", 8, false, "pcm_s8"),
            (b"twos", 16, false, "pcm_s16be"),
            (b"twos", 24, false, "pcm_s24be"),
            (b"twos", 32, false, "pcm_s32be"),
            (b"lpcm", 16, true, "pcm_s16le"),
            (b"NONE", 16, false, "pcm_s16be"),
            (b"in24", 24, true, "pcm_s24le"),
            (b"in24", 24, false, "pcm_s24be"),
            (b"in32", 32, true, "pcm_s32le"),
            (b"in32", 32, false, "pcm_s32be"),
            (b"fl32", 32, true, "pcm_f32le"),
            (b"fl32", 32, false, "pcm_f32be"),
            (b"fl64", 64, true, "pcm_f64le"),
            (b"fl64", 64, false, "pcm_f64be"),
            (b"raw ", 8, false, "pcm_u8"),
            (b"ulaw", 8, false, "pcm_mulaw"),
            (b"alaw", 8, false, "pcm_alaw"),
            (b"ima4", 16, false, "adpcm_ima_qt"),
            (b"sqcp", 16, false, "qcelp"),
            (b"QDM2", 16, false, "qdm2"),
            (b"QDMC", 16, false, "qdmc"),
            (b"mlpa", 24, false, "truehd"),
        ];
        for (fourcc, size, little_endian, name) in cases {
            assert_eq!(
                iso_audio_codec(*fourcc, size, little_endian),
                Some(name),
                "{fourcc:?} {size} {little_endian}"
            );
        }
        assert_eq!(iso_audio_codec(*b"zzzz", 16, false), None);
    }

    #[test]
    fn pcm_config_box_gives_format_and_width() {
        let cases = [
            (b"fpcm", 1, 32, "pcm_f32le"),
            (b"fpcm", 0, 32, "pcm_f32be"),
            (b"fpcm", 1, 64, "pcm_f64le"),
            (b"fpcm", 0, 64, "pcm_f64be"),
            (b"ipcm", 1, 16, "pcm_s16le"),
            (b"ipcm", 0, 16, "pcm_s16be"),
            (b"ipcm", 1, 24, "pcm_s24le"),
            (b"ipcm", 0, 24, "pcm_s24be"),
            (b"ipcm", 1, 32, "pcm_s32le"),
            (b"ipcm", 0, 32, "pcm_s32be"),
        ];
        for (fourcc, flags, bits, name) in cases {
            let config = [0, 0, 0, 0, flags, bits];
            assert_eq!(
                iso_pcm_codec(&config, fourcc),
                Some(name),
                "{fourcc:?} {bits}"
            );
        }
        assert_eq!(iso_pcm_codec(&[0, 0, 0, 0, 1, 12], b"ipcm"), None);
        assert_eq!(iso_pcm_codec(&[0, 0, 0], b"ipcm"), None);
    }

    #[test]
    fn every_object_type_has_its_ffprobe_name() {
        let cases = [
            (0x08, "mov_text"),
            (0x21, "h264"),
            (0x23, "hevc"),
            (0x67, "aac"),
            (0x61, "mpeg2video"),
            (0x69, "mp3"),
            (0x6A, "mpeg1video"),
            (0x6C, "mjpeg"),
            (0x6D, "png"),
            (0x6E, "jpeg2000"),
            (0xA3, "vc1"),
            (0xA4, "dirac"),
            (0xA5, "ac3"),
            (0xA6, "eac3"),
            (0xA9, "dts"),
            (0xAD, "opus"),
            (0xB1, "vp9"),
            (0xC1, "flac"),
            (0xDD, "vorbis"),
            (0xE0, "dvd_subtitle"),
            (0xE1, "qcelp"),
        ];
        for (object_type, name) in cases {
            assert_eq!(mp4_object_type(object_type), Some(name), "{object_type:#x}");
        }
    }

    #[test]
    fn profile_records_give_ffprobe_profiles() {
        let h264 = [
            (77, 0, "Main"),
            (88, 0, "Extended"),
            (110, 0, "High 10"),
            (122, 0x10, "High 4:2:2 Intra"),
            (122, 0, "High 4:2:2"),
            (144, 0, "High 4:4:4"),
            (244, 0x10, "High 4:4:4 Intra"),
            (244, 0, "High 4:4:4 Predictive"),
            (44, 0, "CAVLC 4:4:4"),
            (118, 0, "Multiview High"),
            (128, 0, "Stereo High"),
        ];
        for (profile_idc, constraints, name) in h264 {
            assert_eq!(h264_profile_name(profile_idc, constraints), Some(name));
        }
        assert_eq!(avc_profile(&[1, 77, 0, 30]).as_deref(), Some("Main"));
        assert_eq!(avc_profile(&[1]), None);

        assert_eq!(hevc_profile(&[1, 0x01]).as_deref(), Some("Main"));
        assert_eq!(hevc_profile(&[1, 0x22]).as_deref(), Some("Main 10"));
        assert_eq!(hevc_profile_name(3), Some("Main Still Picture"));
        assert_eq!(hevc_profile_name(4), Some("Rext"));
        assert_eq!(hevc_profile_name(9), None);

        assert_eq!(av1_profile(&[0x81, 0x00]).as_deref(), Some("Main"));
        assert_eq!(av1_profile(&[0x81, 0x20]).as_deref(), Some("High"));
        assert_eq!(av1_profile(&[0x81, 0x40]).as_deref(), Some("Professional"));
        assert_eq!(av1_profile(&[0x81, 0x60]), None);
        assert_eq!(vpx_profile(&[1, 0, 0, 0, 2]).as_deref(), Some("Profile 2"));
        assert_eq!(vpx_profile(&[1, 0]), None);

        let prores = [
            (b"apco", "Proxy"),
            (b"apcs", "LT"),
            (b"apcn", "Standard"),
            (b"apch", "HQ"),
            (b"ap4h", "4444"),
            (b"ap4x", "XQ"),
        ];
        for (fourcc, name) in prores {
            assert_eq!(prores_profile(*fourcc), Some(name));
        }
        assert_eq!(prores_profile(*b"avc1"), None);
    }

    #[test]
    fn aac_config_escape_values_are_read() {
        // Object type escape (31, then 6 bits: 32 + 10 = 42), explicit
        // rate (index 15, then 24 bits: 1000 Hz), channel config 7 (8 channels).
        let mut bits = Vec::new();
        for (value, width) in [(31u32, 5), (10, 6), (15, 4), (1000, 24), (7, 4)] {
            for shift in (0..width).rev() {
                bits.push((value >> shift) & 1 == 1);
            }
        }
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .fold(0u8, |byte, (i, &bit)| byte | (u8::from(bit) << (7 - i)))
            })
            .collect();

        let config = parse_audio_specific_config(&bytes).unwrap();

        assert_eq!(config.object_type, 42);
        assert_eq!(config.sample_rate, 1000);
        assert_eq!(config.channels, 8);
    }

    #[test]
    fn matroska_ids_cover_the_ffmpeg_table() {
        let cases = [
            ("V_MPEGH/ISO/HEVC", "hevc"),
            ("V_AV1", "av1"),
            ("V_VP8", "vp8"),
            ("V_VP9", "vp9"),
            ("V_MPEG1", "mpeg1video"),
            ("V_MPEG2", "mpeg2video"),
            ("V_MPEG4/MS/V3", "msmpeg4v3"),
            ("V_THEORA", "theora"),
            ("V_PRORES", "prores"),
            ("V_MJPEG", "mjpeg"),
            ("V_FFV1", "ffv1"),
            ("V_DIRAC", "dirac"),
            ("V_UNCOMPRESSED", "rawvideo"),
            ("V_REAL/RV10", "rv10"),
            ("V_REAL/RV20", "rv20"),
            ("V_REAL/RV30", "rv30"),
            ("V_REAL/RV40", "rv40"),
            ("A_OPUS", "opus"),
            ("A_VORBIS", "vorbis"),
            ("A_MPEG/L3", "mp3"),
            ("A_MPEG/L2", "mp2"),
            ("A_MPEG/L1", "mp1"),
            ("A_AC3/BSID9", "ac3"),
            ("A_EAC3", "eac3"),
            ("A_DTS/LOSSLESS", "dts"),
            ("A_FLAC", "flac"),
            ("A_TRUEHD", "truehd"),
            ("A_MLP", "mlp"),
            ("A_ALAC", "alac"),
            ("A_TTA1", "tta"),
            ("A_WAVPACK4", "wavpack"),
            ("A_QUICKTIME/QDMC", "qdmc"),
            ("A_QUICKTIME/QDM2", "qdm2"),
            ("A_REAL/COOK", "cook"),
            ("A_REAL/ATRC", "atrac3"),
            ("A_REAL/28_8", "ra_288"),
            ("A_REAL/14_4", "ra_144"),
            ("S_TEXT/ASCII", "text"),
            ("S_TEXT/ASS", "ass"),
            ("D_WEBVTT/CAPTIONS", "webvtt"),
            ("S_VOBSUB", "dvd_subtitle"),
            ("S_DVBSUB", "dvb_subtitle"),
            ("S_HDMV/PGS", "hdmv_pgs_subtitle"),
            ("S_HDMV/TEXTST", "hdmv_text_subtitle"),
            ("S_KATE", "kate"),
            ("S_ARIBSUB", "arib_caption"),
        ];
        for (codec_id, name) in cases {
            assert_eq!(matroska_codec(codec_id, &[], 0), Some(name), "{codec_id}");
        }
    }

    #[test]
    fn matroska_pcm_and_wrapped_codecs_use_private_data() {
        let pcm = [
            ("A_PCM/INT/BIG", 8, "pcm_u8"),
            ("A_PCM/INT/LIT", 32, "pcm_s32le"),
            ("A_PCM/INT/LIT", 16, "pcm_s16le"),
            ("A_PCM/INT/BIG", 24, "pcm_s24be"),
            ("A_PCM/INT/BIG", 32, "pcm_s32be"),
            ("A_PCM/INT/BIG", 16, "pcm_s16be"),
            ("A_PCM/FLOAT/IEEE", 64, "pcm_f64le"),
            ("A_PCM/FLOAT/IEEE", 32, "pcm_f32le"),
        ];
        for (codec_id, bit_depth, name) in pcm {
            assert_eq!(matroska_codec(codec_id, &[], bit_depth), Some(name));
        }
        assert_eq!(matroska_codec("A_PCM/OTHER", &[], 16), None);

        // WAVEFORMATEX: tag 0x0055 (MP3), bits per sample at offset 14.
        let mut wave = vec![0u8; 18];
        wave[0..2].copy_from_slice(&0x0055u16.to_le_bytes());
        assert_eq!(matroska_codec("A_MS/ACM", &wave, 0), Some("mp3"));
        assert_eq!(matroska_codec("A_MS/ACM", &wave[..4], 0), None);
        let mut quicktime = vec![0u8; 8];
        quicktime[4..8].copy_from_slice(b"SVQ3");
        assert_eq!(matroska_codec("V_QUICKTIME", &quicktime, 0), Some("svq3"));
        assert_eq!(matroska_codec("V_MS/VFW/FOURCC", &[0; 8], 0), None);
    }

    #[test]
    fn avi_fourccs_and_wave_tags_map_to_ffprobe_names() {
        let video = [
            (b"x264", "h264"),
            (b"HEVC", "hevc"),
            (b"DX50", "mpeg4"),
            (b"DIV3", "msmpeg4v3"),
            (b"MP42", "msmpeg4v2"),
            (b"MJPG", "mjpeg"),
            (b"WMV1", "wmv1"),
            (b"WMV2", "wmv2"),
            (b"WMV3", "wmv3"),
            (b"WVC1", "vc1"),
            (b"MPG1", "mpeg1video"),
            (b"mpg2", "mpeg2video"),
            (b"VP80", "vp8"),
            (b"VP90", "vp9"),
            (b"AV01", "av1"),
            (b"FFV1", "ffv1"),
            (b"HFYU", "huffyuv"),
            (b"dvsd", "dvvideo"),
            (b"cvid", "cinepak"),
            (b"H263", "h263"),
            (b"theo", "theora"),
        ];
        for (fourcc, name) in video {
            assert_eq!(fourcc_video_codec(*fourcc), Some(name), "{fourcc:?}");
        }
        assert_eq!(fourcc_video_codec(*b"zzzz"), None);

        let audio = [
            (0x0001, 8, "pcm_u8"),
            (0x0001, 16, "pcm_s16le"),
            (0x0001, 24, "pcm_s24le"),
            (0x0001, 32, "pcm_s32le"),
            (0x0003, 32, "pcm_f32le"),
            (0x0003, 64, "pcm_f64le"),
            (0x0006, 8, "pcm_alaw"),
            (0x0007, 8, "pcm_mulaw"),
            (0x0011, 4, "adpcm_ima_wav"),
            (0x0002, 4, "adpcm_ms"),
            (0x0050, 0, "mp2"),
            (0x0055, 0, "mp3"),
            (0x00FF, 0, "aac"),
            (0x0160, 0, "wmav1"),
            (0x0161, 0, "wmav2"),
            (0x0162, 0, "wmapro"),
            (0x0163, 0, "wmalossless"),
            (0x2000, 0, "ac3"),
            (0x2001, 0, "dts"),
            (0x674F, 0, "vorbis"),
            (0xF1AC, 0, "flac"),
            (0x704F, 0, "opus"),
        ];
        for (tag, bits, name) in audio {
            assert_eq!(wave_format_codec(tag, bits), Some(name), "{tag:#06x}");
        }
        assert_eq!(wave_format_codec(0x1234, 16), None);
    }
}

//! Container detection from the first bytes of a file ("magic numbers").

/// Containers the core has a parser for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ISO base media: mp4, mov, m4v, 3gp, fragmented mp4.
    IsoBmff,
    /// Matroska and WebM (EBML).
    Matroska,
    /// RIFF AVI, including OpenDML.
    Avi,
    /// MPEG transport stream; the field is the packet size, 188 or 192 (M2TS).
    MpegTs(u16),
    /// MPEG program stream (mpg, vob).
    MpegPs,
    /// Ogg.
    Ogg,
    /// Flash video.
    Flv,
    /// Advanced Systems Format (wmv, asf).
    Asf,
}

/// Bytes [`detect`] wants to see; fewer work for the formats with short magic.
pub const SNIFF_LEN: usize = 512;

const ASF_GUID: [u8; 16] = [
    0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62, 0xCE, 0x6C,
];

/// ISO box types that may open a file; `moov`/`mdat` first is legal if rare.
const ISO_FIRST_BOXES: [&[u8; 4]; 10] = [
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp", b"moof", b"sidx",
];

/// Returns the container of a file that starts with `head`, if the core parses it.
#[must_use]
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.len() >= 8 && ISO_FIRST_BOXES.iter().any(|kind| &head[4..8] == *kind) {
        return Some(Format::IsoBmff);
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(Format::Matroska);
    }
    if head.len() >= 12
        && &head[0..4] == b"RIFF"
        && (&head[8..12] == b"AVI " || &head[8..12] == b"AVIX")
    {
        return Some(Format::Avi);
    }
    if head.starts_with(&ASF_GUID) {
        return Some(Format::Asf);
    }
    if head.starts_with(b"OggS") {
        return Some(Format::Ogg);
    }
    if head.starts_with(b"FLV\x01") {
        return Some(Format::Flv);
    }
    if head.starts_with(&[0x00, 0x00, 0x01, 0xBA]) {
        return Some(Format::MpegPs);
    }
    for (offset, size) in [(0usize, 188u16), (4, 192)] {
        if is_ts_sync(head, offset, usize::from(size)) {
            return Some(Format::MpegTs(size));
        }
    }
    None
}

/// A sync byte at `offset` and, where the head is long enough, at the next two packets.
fn is_ts_sync(head: &[u8], offset: usize, size: usize) -> bool {
    let positions = [offset, offset + size, offset + 2 * size];
    let seen: Vec<usize> = positions.into_iter().filter(|&p| p < head.len()).collect();
    !seen.is_empty() && seen.iter().all(|&p| head[p] == 0x47)
}

/// Names the kind of a file the core does not parse, for the "unsupported
/// container" message: "zip", "png", "wav", "mp3", "text", or "unknown".
#[must_use]
pub fn describe_unknown(head: &[u8]) -> &'static str {
    const SIGNATURES: [(&[u8], &str); 11] = [
        (b"PK\x03\x04", "zip"),
        (b"\x89PNG", "png"),
        (b"\xFF\xD8\xFF", "jpeg"),
        (b"GIF8", "gif"),
        (b"%PDF", "pdf"),
        (b"ID3", "mp3"),
        (b"fLaC", "flac"),
        (b"\x1F\x8B", "gzip"),
        (b"Rar!", "rar"),
        (b"7z\xBC\xAF", "7z"),
        (b".RMF", "realmedia"),
    ];
    if head.len() >= 12 && &head[0..4] == b"RIFF" {
        return match &head[8..12] {
            b"WAVE" => "wav",
            b"WEBP" => "webp",
            _ => "riff",
        };
    }
    if let Some((_, name)) = SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)) {
        return name;
    }
    if !head.is_empty() && head.iter().all(|&b| b == 0) {
        return "zeros";
    }
    if !head.is_empty() && std::str::from_utf8(head).is_ok() {
        return "text";
    }
    "unknown"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_magic() {
        assert_eq!(detect(b"\0\0\0\x20ftypisom"), Some(Format::IsoBmff));
        assert_eq!(
            detect(&[0x1A, 0x45, 0xDF, 0xA3, 0x01]),
            Some(Format::Matroska)
        );
        assert_eq!(detect(b"RIFF\0\0\0\0AVI LIST"), Some(Format::Avi));
        assert_eq!(detect(b"OggS\0\x02"), Some(Format::Ogg));
        assert_eq!(detect(b"FLV\x01\x05"), Some(Format::Flv));
        assert_eq!(detect(&[0, 0, 1, 0xBA, 0x44]), Some(Format::MpegPs));
        assert_eq!(detect(&ASF_GUID), Some(Format::Asf));
    }

    #[test]
    fn detects_ts_packet_sizes() {
        let mut ts = vec![0u8; 600];
        for p in [0, 188, 376] {
            ts[p] = 0x47;
        }
        assert_eq!(detect(&ts), Some(Format::MpegTs(188)));
        let mut m2ts = vec![0u8; 600];
        for p in [4, 196, 388] {
            m2ts[p] = 0x47;
        }
        assert_eq!(detect(&m2ts), Some(Format::MpegTs(192)));
    }

    #[test]
    fn riff_and_binary_files_get_a_name() {
        assert_eq!(describe_unknown(b"RIFF\0\0\0\0WAVEfmt "), "wav");
        assert_eq!(describe_unknown(b"RIFF\0\0\0\0WEBPVP8 "), "webp");
        assert_eq!(describe_unknown(b"RIFF\0\0\0\0CDXAfmt "), "riff");
        assert_eq!(describe_unknown(b"\x89PNG\r\n"), "png");
        assert_eq!(describe_unknown(&[0xC3, 0x28, 0x01]), "unknown");
        assert_eq!(describe_unknown(&[]), "unknown");
    }

    #[test]
    fn unknown_files_get_a_name() {
        assert_eq!(detect(b"PK\x03\x04rest"), None);
        assert_eq!(describe_unknown(b"PK\x03\x04rest"), "zip");
        assert_eq!(describe_unknown(&[0; 64]), "zeros");
        assert_eq!(describe_unknown(b"hello"), "text");
    }
}

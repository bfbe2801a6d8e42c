//! Test support: runs a container parser over the shared media corpus and
//! compares each field with the ffprobe 5.1 JSON stored beside each file.
//!
//! The corpus is found through `REELWATCH_CORPUS` (the corpus folder or its
//! `media/` folder) or else at `../shared/corpus/media` next to the
//! repository. Clips made by the corpus's `generate.sh` are read from the
//! folder in `REELWATCH_GENERATED` when that is set. Tests skip, with a
//! message, when neither contains a file of the container.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::reader::{Reader, DEFAULT_READ_BUDGET};
use super::MediaInfo;
use crate::error::Result;

/// Folders that hold media files with `.ffprobe.json` beside them.
pub(crate) fn media_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(root) = std::env::var_os("REELWATCH_CORPUS") {
        let root = PathBuf::from(root);
        let media = root.join("media");
        dirs.push(if media.is_dir() { media } else { root });
    } else {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        dirs.push(repo.join("../shared/corpus/media"));
    }
    if let Some(generated) = std::env::var_os("REELWATCH_GENERATED") {
        dirs.push(PathBuf::from(generated));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// Media files whose name ends in one of `suffixes` and that have ffprobe JSON.
pub(crate) fn files_with_suffix(suffixes: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in media_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let json = PathBuf::from(format!("{}.ffprobe.json", path.display()));
            if suffixes.iter().any(|s| name.ends_with(s)) && json.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Opens `path` and runs `parser` on it with the default read budget.
pub(crate) fn probe_with<F>(path: &Path, parser: F) -> (Result<MediaInfo>, u64)
where
    F: FnOnce(&mut Reader<File>) -> Result<MediaInfo>,
{
    let file = File::open(path).expect("corpus file opens");
    let len = file.metadata().expect("corpus file has metadata").len();
    let mut reader = Reader::new(file, len, DEFAULT_READ_BUDGET);
    let result = parser(&mut reader);
    (result, reader.bytes_read())
}

fn load_json(path: &Path) -> Value {
    let json = std::fs::read_to_string(format!("{}.ffprobe.json", path.display()))
        .expect("ffprobe JSON is readable");
    serde_json::from_str(&json).expect("ffprobe JSON parses")
}

fn first_stream<'a>(json: &'a Value, kind: &str) -> Option<&'a Value> {
    json["streams"].as_array()?.iter().find(|s| {
        s["codec_type"] == kind && s["disposition"]["attached_pic"].as_i64().unwrap_or(0) == 0
    })
}

fn parse_rate(text: &str) -> Option<f64> {
    let (num, den) = text.split_once('/')?;
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    (num > 0.0 && den > 0.0).then(|| num / den)
}

/// Compares `info` with ffprobe's JSON for `path`; returns one line per
/// field that differs, with both values. The tolerances are the project's
/// accuracy targets: duration within 0.1 s or 0.5 %, frame rate within 0.1 %.
pub(crate) fn mismatches(path: &Path, info: &MediaInfo) -> Vec<String> {
    let json = load_json(path);
    let mut out = Vec::new();
    let check = |out: &mut Vec<String>, field: &str, ours: String, theirs: String| {
        if ours != theirs {
            out.push(format!("{field}: ours {ours}, ffprobe {theirs}"));
        }
    };
    let format = &json["format"];
    check(
        &mut out,
        "format_name",
        info.format_name.clone(),
        format["format_name"].as_str().unwrap_or("").to_owned(),
    );
    let theirs_duration = format["duration"]
        .as_str()
        .and_then(|d| d.parse::<f64>().ok());
    let duration_ok = match (info.duration_s, theirs_duration) {
        (Some(a), Some(b)) => (a - b).abs() <= 0.1_f64.max(b * 0.005),
        (None, None) => true,
        _ => false,
    };
    if !duration_ok {
        out.push(format!(
            "duration: ours {:?}, ffprobe {theirs_duration:?}",
            info.duration_s
        ));
    }
    let video = first_stream(&json, "video");
    let audio = first_stream(&json, "audio");
    let text = |stream: Option<&Value>, key: &str| {
        stream
            .and_then(|s| {
                s[key]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| s[key].as_u64().map(|n| n.to_string()))
            })
            .unwrap_or_else(|| "-".to_owned())
    };
    let opt = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    check(
        &mut out,
        "video_codec",
        opt(info.video_codec.clone()),
        text(video, "codec_name"),
    );
    check(
        &mut out,
        "width",
        opt(info.width.map(|w| w.to_string())),
        text(video, "width"),
    );
    check(
        &mut out,
        "height",
        opt(info.height.map(|h| h.to_string())),
        text(video, "height"),
    );
    check(
        &mut out,
        "audio_codec",
        opt(info.audio_codec.clone()),
        text(audio, "codec_name"),
    );
    check(
        &mut out,
        "audio_channels",
        opt(info.audio_channels.map(|c| c.to_string())),
        text(audio, "channels"),
    );
    check(
        &mut out,
        "audio_sample_rate",
        opt(info.audio_sample_rate.map(|r| r.to_string())),
        text(audio, "sample_rate"),
    );
    if let Some(stream) = video {
        // avg_frame_rate is 0/0 when ffprobe saw too few frames to average;
        // r_frame_rate then carries the rate the stream states.
        let theirs = stream["avg_frame_rate"]
            .as_str()
            .and_then(parse_rate)
            .or_else(|| stream["r_frame_rate"].as_str().and_then(parse_rate));
        let ours = info.frame_rate.map(super::Rational::as_f64);
        let rate_ok = match (ours, theirs) {
            (Some(a), Some(b)) => (a - b).abs() <= b * 0.001,
            (None, None) => true,
            _ => false,
        };
        if !rate_ok {
            out.push(format!("frame_rate: ours {ours:?}, ffprobe {theirs:?}"));
        }
    }
    out
}

/// Probes every corpus file with one of `suffixes` and returns, per file, its
/// name and the fields that differ from ffprobe (or the error). Differences
/// listed in `known` as (file name, field) are left out; each caller gives
/// the reason for each of them.
pub(crate) fn run<F>(
    suffixes: &[&str],
    known: &[(&str, &str)],
    parser: F,
) -> Vec<(String, Vec<String>)>
where
    F: Fn(&mut Reader<File>) -> Result<MediaInfo>,
{
    let mut report = Vec::new();
    for path in files_with_suffix(suffixes) {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let ffprobe_failed = PathBuf::from(format!("{}.ffprobe.err", path.display())).is_file();
        let (result, bytes_read) = probe_with(&path, &parser);
        let problems = match (&result, ffprobe_failed) {
            (Ok(info), false) => mismatches(&path, info),
            (Ok(_), true) => vec!["ffprobe failed but the probe succeeded".to_owned()],
            (Err(_), true) => Vec::new(),
            (Err(err), false) => vec![format!("error: {err}")],
        };
        eprintln!("{name}: {bytes_read} bytes read, differences {problems:?}");
        let problems = problems
            .into_iter()
            .filter(|p| {
                !known
                    .iter()
                    .any(|(file, field)| *file == name && p.starts_with(&format!("{field}:")))
            })
            .collect();
        report.push((name, problems));
    }
    report
}

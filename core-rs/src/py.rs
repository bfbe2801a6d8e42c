//! The `reelwatch._core` Python module: thin wrappers that convert paths and
//! results and release the GIL around every batch.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::file::CheckedProbe;
use crate::walk::{KnownFile, WalkEntry, WalkOptions, WalkOutput};
use crate::{file, fingerprint, paths, walk};

/// One `fingerprint` result: the digest or the error message.
type FingerprintRow = (Option<Py<PyBytes>>, Option<String>);
/// One `check_paths` result: resolved path, error kind, error message.
type PathCheckRow = (Option<Py<PyBytes>>, Option<&'static str>, Option<String>);

/// The result of probing one file; `ok` is false when `error_kind` is set.
#[pyclass(frozen, get_all, module = "reelwatch._core")]
pub struct ProbeResult {
    path: Py<PyBytes>,
    ok: bool,
    error_kind: Option<&'static str>,
    error: Option<String>,
    bytes_read: u64,
    size: u64,
    container: Option<String>,
    format_name: Option<String>,
    duration_s: Option<f64>,
    width: Option<u32>,
    height: Option<u32>,
    rotation: Option<i32>,
    frame_rate: Option<(u32, u32)>,
    video_codec: Option<String>,
    video_profile: Option<String>,
    audio_codec: Option<String>,
    audio_channels: Option<u32>,
    audio_sample_rate: Option<u32>,
    bit_rate: Option<u64>,
    video_streams: u32,
    audio_streams: u32,
    subtitle_streams: u32,
    complete: bool,
    stat_after: Option<StatRow>,
    fingerprint: Option<Py<PyBytes>>,
}

/// A file's stat as (size, `mtime_ns`, `ctime_ns`, inode, device), the order
/// of the walk's rows.
type StatRow = (u64, i64, i64, u64, u64);

#[pymethods]
impl ProbeResult {
    fn __repr__(&self, py: Python<'_>) -> String {
        let path = String::from_utf8_lossy(self.path.as_bytes(py)).into_owned();
        if self.ok {
            format!(
                "ProbeResult(path={path:?}, container={:?}, duration_s={:?}, width={:?}, height={:?}, video_codec={:?}, audio_codec={:?})",
                self.container, self.duration_s, self.width, self.height, self.video_codec, self.audio_codec
            )
        } else {
            format!(
                "ProbeResult(path={path:?}, error_kind={:?}, error={:?})",
                self.error_kind, self.error
            )
        }
    }
}

impl ProbeResult {
    fn new(py: Python<'_>, path: &Path, checked: CheckedProbe) -> Self {
        let CheckedProbe {
            outcome,
            stat_after,
            fingerprint,
        } = checked;
        let path = PyBytes::new(py, path.as_os_str().as_bytes()).unbind();
        let (info, error) = match outcome.result {
            Ok(info) => (info, None),
            Err(err) => (crate::probe::MediaInfo::default(), Some(err)),
        };
        let ok = error.is_none();
        ProbeResult {
            path,
            ok,
            error_kind: error.as_ref().map(|e| e.kind().as_str()),
            error: error.as_ref().map(|e| e.message().to_owned()),
            bytes_read: outcome.bytes_read,
            size: outcome.size,
            container: Some(info.container).filter(|_| ok),
            format_name: Some(info.format_name).filter(|_| ok),
            duration_s: info.duration_s,
            width: info.width,
            height: info.height,
            rotation: info.rotation,
            frame_rate: info.frame_rate.map(|r| (r.num, r.den)),
            video_codec: info.video_codec,
            video_profile: info.video_profile,
            audio_codec: info.audio_codec,
            audio_channels: info.audio_channels,
            audio_sample_rate: info.audio_sample_rate,
            bit_rate: info.bit_rate,
            video_streams: info.video_streams,
            audio_streams: info.audio_streams,
            subtitle_streams: info.subtitle_streams,
            complete: info.complete,
            stat_after: stat_after.map(|stat| {
                (
                    stat.size,
                    stat.mtime_ns,
                    stat.ctime_ns,
                    stat.inode,
                    stat.device,
                )
            }),
            fingerprint: fingerprint
                .and_then(std::result::Result::ok)
                .map(|digest| PyBytes::new(py, &digest).unbind()),
        }
    }
}

/// The files, errors and directory count of one walk.
///
/// The rows are built only when asked for, so that a caller comparing the
/// walk with the catalog through `compare` pays for the changed files alone.
#[pyclass(frozen, module = "reelwatch._core")]
pub struct WalkResult {
    output: WalkOutput,
}

#[pymethods]
impl WalkResult {
    #[getter]
    fn files<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let files = PyList::empty(py);
        for entry in &self.output.files {
            files.append(file_row(py, entry)?)?;
        }
        Ok(files)
    }

    #[getter]
    fn errors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let errors = PyList::empty(py);
        for err in &self.output.errors {
            errors.append(PyTuple::new(
                py,
                [
                    bytes_of(py, &err.path).into_any(),
                    PyString::new(py, err.error.kind().as_str()).into_any(),
                    PyString::new(py, err.error.message()).into_any(),
                ],
            )?)?;
        }
        Ok(errors)
    }

    #[getter]
    fn file_count(&self) -> usize {
        self.output.files.len()
    }

    #[getter]
    fn dirs(&self) -> u64 {
        self.output.dirs
    }

    /// Compares the walk with cataloged files; see the stub for the contract.
    #[pyo3(signature = (known, stale = Vec::new()))]
    fn compare<'py>(
        &self,
        py: Python<'py>,
        known: &Bound<'py, PyAny>,
        stale: Vec<usize>,
    ) -> PyResult<(Bound<'py, PyList>, Vec<usize>)> {
        let mut known = extract_known(known)?;
        let count = known.len();
        for index in stale {
            let file = known.get_mut(index).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "stale index {index} is out of range for {count} known files"
                ))
            })?;
            file.stale = true;
        }
        let files = &self.output.files;
        let comparison = detached(py, "compare", || walk::compare(files, &known))?;
        let changed = PyList::empty(py);
        for index in comparison.changed {
            changed.append(file_row(py, &files[index])?)?;
        }
        Ok((changed, comparison.missing))
    }

    fn __repr__(&self) -> String {
        format!(
            "WalkResult(files=<{} files>, errors=<{} errors>, dirs={})",
            self.output.files.len(),
            self.output.errors.len(),
            self.output.dirs
        )
    }
}

fn file_row<'py>(py: Python<'py>, entry: &WalkEntry) -> PyResult<Bound<'py, PyAny>> {
    let row = (
        bytes_of(py, &entry.path),
        entry.size,
        entry.mtime_ns,
        entry.ctime_ns,
        entry.inode,
        entry.device,
    );
    Ok(row.into_pyobject(py)?.into_any())
}

/// Reads (path, size, `mtime_ns`, `ctime_ns`, inode, device) from the first
/// six items of each row. Later items are ignored, so catalog rows can be
/// passed as they are read.
fn extract_known(rows: &Bound<'_, PyAny>) -> PyResult<Vec<KnownFile>> {
    let mut known = Vec::new();
    for row in rows.try_iter()? {
        let row = row?;
        let path = row.get_item(0)?;
        let path = match path.cast::<PyBytes>() {
            Ok(bytes) => bytes.as_bytes().to_vec(),
            Err(_) => extract_path(&path)?.into_os_string().into_vec(),
        };
        known.push(KnownFile {
            path,
            size: row.get_item(1)?.extract()?,
            mtime_ns: row.get_item(2)?.extract()?,
            ctime_ns: row.get_item(3)?.extract()?,
            inode: row.get_item(4)?.extract()?,
            device: row.get_item(5)?.extract()?,
            stale: false,
        });
    }
    Ok(known)
}

/// Converts a str, bytes or `os.PathLike` argument to a path without loss:
/// bytes are taken as they are, str is encoded the way `os.fsencode` does.
fn extract_path(value: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    let py = value.py();
    let fspath = py.import("os")?.getattr("fspath")?;
    let raw = fspath.call1((value,)).map_err(|_| {
        let type_name = value
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        PyTypeError::new_err(format!(
            "expected a path as str, bytes or os.PathLike, got {type_name}"
        ))
    })?;
    if let Ok(bytes) = raw.cast::<PyBytes>() {
        return Ok(PathBuf::from(OsString::from_vec(bytes.as_bytes().to_vec())));
    }
    if raw.is_instance_of::<PyString>() {
        return Ok(PathBuf::from(raw.extract::<OsString>()?));
    }
    Err(PyTypeError::new_err(
        "os.fspath() returned neither str nor bytes",
    ))
}

fn extract_paths(values: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if values.is_instance_of::<PyString>() || values.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "expected an iterable of paths, got a single str or bytes; wrap it in a list",
        ));
    }
    values
        .try_iter()?
        .map(|item| extract_path(&item?))
        .collect()
}

fn bytes_of<'py>(py: Python<'py>, path: &Path) -> Bound<'py, PyBytes> {
    PyBytes::new(py, path.as_os_str().as_bytes())
}

/// Runs `work` with the GIL released and turns a panic into `RuntimeError`,
/// so that no panic reaches Python as `PanicException`.
fn detached<T: Send>(py: Python<'_>, what: &str, work: impl FnOnce() -> T + Send) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(work)))
        .map_err(|_| {
            PyRuntimeError::new_err(format!(
                "reelwatch core panicked during {what}; this is a bug, please report it"
            ))
        })
}

/// Probes each path's container headers in parallel, with the GIL released;
/// each result also carries the opened file's stat after the reads and, with
/// `fingerprint`, its content fingerprint.
#[pyfunction(name = "probe_many")]
#[pyo3(signature = (paths, *, roots = None, threads = 0, fingerprint = false))]
fn probe_paths(
    py: Python<'_>,
    paths: &Bound<'_, PyAny>,
    roots: Option<&Bound<'_, PyAny>>,
    threads: usize,
    fingerprint: bool,
) -> PyResult<Vec<ProbeResult>> {
    let paths = extract_paths(paths)?;
    let roots = roots.map(extract_paths).transpose()?;
    let outcomes = detached(py, "probe_many", || {
        file::probe_many_checked(&paths, roots.as_deref(), threads, fingerprint)
    })?;
    Ok(paths
        .iter()
        .zip(outcomes)
        .map(|(path, outcome)| ProbeResult::new(py, path, outcome))
        .collect())
}

/// Probes like `probe_many` and returns each result as a plain tuple in the
/// field order of the daemon's `ProbeResult` struct, already in its types.
/// The path is a str (decoded like `os.fsdecode`), the frame rate is
/// `"num/den"` and the fingerprint is hex. One tuple costs less to build and
/// to unpack in Python than a `ProbeResult` object read field by field.
#[pyfunction(name = "probe_many_rows")]
#[pyo3(signature = (paths, *, roots = None, threads = 0, fingerprint = false))]
fn probe_path_rows<'py>(
    py: Python<'py>,
    paths: &Bound<'py, PyAny>,
    roots: Option<&Bound<'py, PyAny>>,
    threads: usize,
    fingerprint: bool,
) -> PyResult<Bound<'py, PyList>> {
    let paths = extract_paths(paths)?;
    let roots = roots.map(extract_paths).transpose()?;
    let outcomes = detached(py, "probe_many_rows", || {
        file::probe_many_checked(&paths, roots.as_deref(), threads, fingerprint)
    })?;
    let rows = PyList::empty(py);
    for (path, checked) in paths.iter().zip(outcomes) {
        rows.append(probe_row(py, path, checked)?)?;
    }
    Ok(rows)
}

fn probe_row<'py>(
    py: Python<'py>,
    path: &Path,
    checked: CheckedProbe,
) -> PyResult<Bound<'py, PyTuple>> {
    let CheckedProbe {
        outcome,
        stat_after,
        fingerprint,
    } = checked;
    let (info, error) = match outcome.result {
        Ok(info) => (info, None),
        Err(err) => (crate::probe::MediaInfo::default(), Some(err)),
    };
    let ok = error.is_none();
    let stat_after = stat_after.map(|stat| {
        (
            stat.size,
            stat.mtime_ns,
            stat.ctime_ns,
            stat.inode,
            stat.device,
        )
    });
    let fingerprint = fingerprint
        .and_then(std::result::Result::ok)
        .map(|digest| format!("{:032x}", u128::from_be_bytes(digest)));
    let fields: [Bound<'py, PyAny>; 25] = [
        path.as_os_str().into_pyobject(py)?.into_any(),
        ok.into_pyobject(py)?.to_owned().into_any(),
        error
            .as_ref()
            .map(|e| e.kind().as_str())
            .into_pyobject(py)?,
        error
            .as_ref()
            .map(crate::error::Error::message)
            .into_pyobject(py)?,
        outcome.size.into_pyobject(py)?.into_any(),
        outcome.bytes_read.into_pyobject(py)?.into_any(),
        Some(info.container).filter(|_| ok).into_pyobject(py)?,
        Some(info.format_name).filter(|_| ok).into_pyobject(py)?,
        info.duration_s.into_pyobject(py)?,
        info.width.into_pyobject(py)?,
        info.height.into_pyobject(py)?,
        info.rotation.into_pyobject(py)?,
        info.frame_rate
            .map(|rate| format!("{}/{}", rate.num, rate.den))
            .into_pyobject(py)?,
        info.video_codec.into_pyobject(py)?,
        info.video_profile.into_pyobject(py)?,
        info.audio_codec.into_pyobject(py)?,
        info.audio_channels.into_pyobject(py)?,
        info.audio_sample_rate.into_pyobject(py)?,
        info.bit_rate.into_pyobject(py)?,
        info.video_streams.into_pyobject(py)?.into_any(),
        info.audio_streams.into_pyobject(py)?.into_any(),
        info.subtitle_streams.into_pyobject(py)?.into_any(),
        info.complete.into_pyobject(py)?.to_owned().into_any(),
        stat_after.into_pyobject(py)?,
        fingerprint.into_pyobject(py)?,
    ];
    PyTuple::new(py, fields)
}

/// Lists the regular files under `root` whose extension is wanted.
// PyO3 extracts list arguments into owned vectors; borrowing is not offered.
#[allow(clippy::needless_pass_by_value)]
#[pyfunction(name = "walk")]
#[pyo3(signature = (root, *, extensions, ignore = Vec::new(), allowed_roots = None))]
fn walk_tree(
    py: Python<'_>,
    root: &Bound<'_, PyAny>,
    extensions: Vec<String>,
    ignore: Vec<String>,
    allowed_roots: Option<&Bound<'_, PyAny>>,
) -> PyResult<WalkResult> {
    let root = extract_path(root)?;
    let allowed_roots = allowed_roots
        .map(extract_paths)
        .transpose()?
        .unwrap_or_default();
    let options =
        WalkOptions::new(&extensions, &ignore, &allowed_roots).map_err(PyValueError::new_err)?;
    let output: WalkOutput = detached(py, "walk", || walk::walk(&root, &options))?;
    Ok(WalkResult { output })
}

/// Computes partial-content fingerprints (size, first and last 64 KiB).
#[pyfunction(name = "fingerprint")]
#[pyo3(signature = (paths, *, threads = 0))]
fn fingerprint_files(
    py: Python<'_>,
    paths: &Bound<'_, PyAny>,
    threads: usize,
) -> PyResult<Vec<FingerprintRow>> {
    let paths = extract_paths(paths)?;
    let results = detached(py, "fingerprint", || {
        fingerprint::fingerprint_many(&paths, threads)
    })?;
    Ok(results
        .into_iter()
        .map(|result| match result {
            Ok(digest) => (Some(PyBytes::new(py, &digest).unbind()), None),
            Err(err) => (
                None,
                Some(format!("{}: {}", err.kind().as_str(), err.message())),
            ),
        })
        .collect())
}

/// Checks paths (syntax, symlink resolution, containment under `roots`).
#[pyfunction(name = "check_paths")]
#[pyo3(signature = (paths, roots))]
fn check_path_list(
    py: Python<'_>,
    paths: &Bound<'_, PyAny>,
    roots: &Bound<'_, PyAny>,
) -> PyResult<Vec<PathCheckRow>> {
    let paths = extract_paths(paths)?;
    let roots = extract_paths(roots)?;
    let checks = detached(py, "check_paths", || paths::check_many(&paths, &roots))?;
    Ok(checks
        .into_iter()
        .map(|check| {
            (
                check.resolved.map(|p| bytes_of(py, &p).unbind()),
                check.error.as_ref().map(|e| e.kind().as_str()),
                check.error.as_ref().map(|e| e.message().to_owned()),
            )
        })
        .collect())
}

/// The `reelwatch._core` extension module.
#[pymodule(gil_used = false)]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<ProbeResult>()?;
    module.add_class::<WalkResult>()?;
    module.add_function(wrap_pyfunction!(probe_paths, module)?)?;
    module.add_function(wrap_pyfunction!(probe_path_rows, module)?)?;
    module.add_function(wrap_pyfunction!(walk_tree, module)?)?;
    module.add_function(wrap_pyfunction!(fingerprint_files, module)?)?;
    module.add_function(wrap_pyfunction!(check_path_list, module)?)?;
    crate::py_watch::register(module)?;
    Ok(())
}

//! The `Watcher` class of `reelwatch._core`: a thin wrapper over [`crate::watch::Watcher`].

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::error::{Error, ErrorKind};
use crate::watch::{self, ChangeKind, Fault, WaitStep, WatcherBuilder};

/// Longest time `wait` stays detached before it checks for signals such as Ctrl-C.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Tells whether the calling thread is the process's main thread.
fn is_main_thread() -> bool {
    // SAFETY: neither call has preconditions, and neither can fail. On Linux
    // the main thread's id equals the process id.
    unsafe { libc::gettid() == libc::getpid() }
}

/// One change as it crosses into Python: kind, path, rename target, message.
type ChangeRow = (
    &'static str,
    Py<PyBytes>,
    Option<Py<PyBytes>>,
    Option<String>,
);
/// One root as it crosses into Python: path, state, message.
type RootRow = (Py<PyBytes>, &'static str, Option<String>);

/// Watches scan roots recursively and returns coalesced batches of changes.
#[pyclass(frozen, module = "reelwatch._core", name = "Watcher")]
pub struct PyWatcher {
    inner: watch::Watcher,
}

#[pymethods]
impl PyWatcher {
    #[new]
    #[pyo3(signature = (
        roots,
        *,
        ignore = Vec::new(),
        poll_interval_ms = 10_000,
        debounce_ms = 1_600,
        step_ms = 50,
        settled_step_ms = 5,
        root_check_interval_ms = 1_000,
        force_polling = false,
        max_pending = 50_000,
    ))]
    #[allow(clippy::too_many_arguments)] // keyword-only options, mirrored in the stub
    fn new(
        py: Python<'_>,
        roots: &Bound<'_, PyAny>,
        ignore: Vec<String>,
        poll_interval_ms: u64,
        debounce_ms: u64,
        step_ms: u64,
        settled_step_ms: u64,
        root_check_interval_ms: u64,
        force_polling: bool,
        max_pending: usize,
    ) -> PyResult<Self> {
        let roots = extract_paths(roots)?;
        let builder = WatcherBuilder::new(roots)
            .ignore(ignore)
            .poll_interval(Duration::from_millis(poll_interval_ms))
            .debounce(Duration::from_millis(debounce_ms))
            .step(Duration::from_millis(step_ms))
            .settled_step(Duration::from_millis(settled_step_ms))
            .root_check_interval(Duration::from_millis(root_check_interval_ms))
            .force_polling(force_polling)
            .max_pending(max_pending);
        // Building walks every root to add its watches, which can take seconds.
        let inner = detached(py, "starting the watcher", move || builder.build())?
            .map_err(|error| to_py_error(&error))?;
        Ok(PyWatcher { inner })
    }

    /// Blocks until a batch is ready, or `timeout_ms` passes with no change.
    fn wait(&self, py: Python<'_>, timeout_ms: u64) -> PyResult<Vec<ChangeRow>> {
        if self.inner.is_closed() {
            return Err(PyRuntimeError::new_err(
                "the watcher is closed; create a new Watcher",
            ));
        }
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        // Python runs signal handlers only on the main thread, so elsewhere
        // the wait needs no slices, and an idle watcher does not wake
        // every SIGNAL_CHECK_INTERVAL. `close` still ends the wait at once.
        let longest_slice = if is_main_thread() {
            SIGNAL_CHECK_INTERVAL
        } else {
            Duration::MAX
        };
        loop {
            let now = Instant::now();
            let slice = deadline
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), longest_slice);
            let inner = &self.inner;
            match detached(py, "waiting for changes", move || inner.wait_step(slice))? {
                WaitStep::Ready(changes) => {
                    return Ok(changes
                        .into_iter()
                        .map(|change| {
                            (
                                change.kind.as_str(),
                                bytes_of(py, &change.path),
                                change.target.as_deref().map(|target| bytes_of(py, target)),
                                change.message,
                            )
                        })
                        .collect());
                }
                WaitStep::Pending { started } => {
                    py.check_signals()?;
                    if !started && Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                }
            }
        }
    }

    /// Returns `(path, state, message)` for every root.
    fn roots(&self, py: Python<'_>) -> Vec<RootRow> {
        self.inner
            .roots()
            .into_iter()
            .map(|status| {
                (
                    bytes_of(py, &status.path),
                    status.state.as_str(),
                    status.message,
                )
            })
            .collect()
    }

    /// Stops watching; later calls to `wait` raise `RuntimeError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = &self.inner;
        detached(py, "closing the watcher", move || inner.close())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close(py)
    }

    /// Simulates a fault for tests: `"overflow"`, `"watch_limit"`, `"pause"` or `"resume"`.
    #[pyo3(signature = (fault, *, root = None))]
    fn _debug_inject(&self, fault: &str, root: Option<usize>) -> PyResult<()> {
        let count = self.inner.roots().len();
        if let Some(index) = root {
            if index >= count {
                return Err(PyValueError::new_err(format!(
                    "root index {index} is out of range; the watcher has {count} roots"
                )));
            }
        }
        let fault = match fault {
            "overflow" => Fault::Overflow(root),
            "watch_limit" => Fault::WatchLimit(root.unwrap_or(0)),
            "pause" => Fault::PauseDelivery(true),
            "resume" => Fault::PauseDelivery(false),
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown fault {other:?}; expected overflow, watch_limit, pause or resume"
                )))
            }
        };
        self.inner.inject(fault);
        Ok(())
    }

    fn __repr__(&self) -> String {
        let roots: Vec<String> = self
            .inner
            .roots()
            .iter()
            .map(|status| format!("{}={}", status.path.display(), status.state.as_str()))
            .collect();
        format!("Watcher({})", roots.join(", "))
    }
}

/// Adds `Watcher` and `WATCH_CHANGE_KINDS` to the module.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PyWatcher>()?;
    let kinds: Vec<&'static str> = ChangeKind::ALL.iter().map(|kind| kind.as_str()).collect();
    module.add("WATCH_CHANGE_KINDS", PyTuple::new(module.py(), kinds)?)?;
    Ok(())
}

fn to_py_error(error: &Error) -> PyErr {
    match error.kind() {
        ErrorKind::InvalidPath => PyValueError::new_err(error.to_string()),
        _ => PyOSError::new_err(error.to_string()),
    }
}

fn extract_paths(values: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if values.is_instance_of::<PyString>() || values.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "expected an iterable of root paths, got a single str or bytes; wrap it in a list",
        ));
    }
    let fspath = values.py().import("os")?.getattr("fspath")?;
    values
        .try_iter()?
        .map(|item| {
            let item = item?;
            let raw = fspath.call1((&item,)).map_err(|_| {
                PyTypeError::new_err(format!(
                    "expected a root path as str, bytes or os.PathLike, got {}",
                    item.get_type()
                        .name()
                        .map_or_else(|_| "?".to_owned(), |name| name.to_string())
                ))
            })?;
            if let Ok(bytes) = raw.cast::<PyBytes>() {
                return Ok(PathBuf::from(OsString::from_vec(bytes.as_bytes().to_vec())));
            }
            Ok(PathBuf::from(raw.extract::<OsString>()?))
        })
        .collect()
}

fn bytes_of(py: Python<'_>, path: &Path) -> Py<PyBytes> {
    PyBytes::new(py, path.as_os_str().as_bytes()).unbind()
}

/// Runs `work` with the GIL released and turns a panic into `RuntimeError`.
fn detached<T: Send>(py: Python<'_>, what: &str, work: impl FnOnce() -> T + Send) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(work)))
        .map_err(|_| {
            PyRuntimeError::new_err(format!(
                "reelwatch core panicked while {what}; this is a bug, please report it"
            ))
        })
}

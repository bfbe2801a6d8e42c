//! Recursive watching of the scan roots that never loses a change without saying so.
//!
//! Each root gets its own inotify instance through notify (9.0.0-rc.7), so a kernel queue
//! overflow names the root whose events were lost. Every change arrives as a [`Change`]; the
//! kinds that signal possible loss are [`ChangeKind::Rescan`] (walk this tree again),
//! [`ChangeKind::WatchError`] (a folder could not be watched), [`ChangeKind::RootMissing`] and
//! [`ChangeKind::Unmounted`]. An event without a path, an error from notify or a batch grown
//! past its bound all turn into rescans; none is dropped.
//!
//! A root falls back to polling when inotify's per-user watch limit is reached, when its
//! filesystem sends no events for remote changes (NFS, SMB, FUSE and others, see
//! `fsinfo::eventless_filesystem`), or when polling is forced. A supervisor thread checks every
//! root's device and inode once per `root_check_interval`: a root that vanished, was replaced
//! or was unmounted is reported, and a missing root is watched again, with a rescan, once it is
//! back.
//!
//! Locking: all shared state sits behind one mutex. A poisoned lock (a panic while it was
//! held) is recovered with its data, and every root gets a rescan, because the panic may have
//! interrupted an update of the pending batch.

mod batch;
mod fsinfo;
mod ignore;
mod map;
mod poll;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, LockResult, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notify::event::{EventKind, Flag};
use notify::{EventKindMask, INotifyWatcher, RecursiveMode, WatchPathConfig, Watcher as _};

use crate::error::{Error, ErrorKind, Result};
use batch::{Batch, Observation};
use fsinfo::Identity;
use ignore::IgnoreSet;
use map::Mapped;
use poll::{PollSink, Poller};

/// The kind of a [`Change`]. [`ChangeKind::as_str`] is what crosses into Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A file or folder appeared (created, or moved in from outside the root).
    Created,
    /// A file's content or metadata changed.
    Modified,
    /// A file opened for writing was closed: a hint that a copy may have finished.
    ClosedWrite,
    /// A file or folder disappeared (deleted, or moved out of the root).
    Removed,
    /// A file or folder was renamed inside the root; [`Change::target`] is the new path.
    Renamed,
    /// Events under this path may have been lost: walk it again.
    Rescan,
    /// A folder could not be watched; [`Change::message`] says why and what to do.
    WatchError,
    /// The root was deleted, moved away or replaced and is no longer watched.
    RootMissing,
    /// A filesystem was unmounted at this path (the root, or a folder below it).
    Unmounted,
}

impl ChangeKind {
    /// Every kind, in declaration order.
    pub const ALL: [ChangeKind; 9] = [
        ChangeKind::Created,
        ChangeKind::Modified,
        ChangeKind::ClosedWrite,
        ChangeKind::Removed,
        ChangeKind::Renamed,
        ChangeKind::Rescan,
        ChangeKind::WatchError,
        ChangeKind::RootMissing,
        ChangeKind::Unmounted,
    ];

    /// Returns the stable `snake_case` name that crosses into Python.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Modified => "modified",
            ChangeKind::ClosedWrite => "closed_write",
            ChangeKind::Removed => "removed",
            ChangeKind::Renamed => "renamed",
            ChangeKind::Rescan => "rescan",
            ChangeKind::WatchError => "watch_error",
            ChangeKind::RootMissing => "root_missing",
            ChangeKind::Unmounted => "unmounted",
        }
    }
}

/// One coalesced change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The path it happened to; for a rename, the old path.
    pub path: PathBuf,
    /// The new path of a rename.
    pub target: Option<PathBuf>,
    /// The reason of a rescan, or the text of an error or root event.
    pub message: Option<String>,
}

impl Change {
    fn new(kind: ChangeKind, path: PathBuf) -> Self {
        Change {
            kind,
            path,
            target: None,
            message: None,
        }
    }

    fn rescan(path: PathBuf, reason: &str) -> Self {
        Change {
            kind: ChangeKind::Rescan,
            path,
            target: None,
            message: Some(reason.to_owned()),
        }
    }
}

/// How a root is being watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RootState {
    /// inotify reports its changes.
    Watching,
    /// It is polled every `poll_interval`.
    Polling,
    /// It does not exist, or its filesystem is unmounted; it is watched again once it is back.
    Missing,
    /// It exists but cannot be watched at all; the message says why.
    Error,
}

impl RootState {
    /// Returns the stable name that crosses into Python.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RootState::Watching => "watching",
            RootState::Polling => "polling",
            RootState::Missing => "missing",
            RootState::Error => "error",
        }
    }
}

/// A root with its state and, for every state but watching, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootStatus {
    /// The root as it was given.
    pub path: PathBuf,
    /// How it is being watched.
    pub state: RootState,
    /// Why it is not simply watching.
    pub message: Option<String>,
}

/// A fault to simulate, for tests of the code that consumes the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The message notify sends on a kernel queue overflow, for one root or all of them.
    Overflow(Option<usize>),
    /// The error notify sends when the inotify watch limit is reached in a root.
    WatchLimit(usize),
    /// Stops (true) or resumes (false) taking events from inotify, so a burst of changes fills
    /// the kernel queue and makes it overflow for real.
    PauseDelivery(bool),
}

/// The outcome of [`Watcher::wait_step`].
#[derive(Debug)]
pub enum WaitStep {
    /// A complete batch.
    Ready(Vec<Change>),
    /// No batch is ready yet; `started` tells whether changes are pending.
    Pending {
        /// Whether a batch has started and will be ready within the debounce time.
        started: bool,
    },
}

/// Builds a [`Watcher`].
#[derive(Debug, Clone)]
pub struct WatcherBuilder {
    roots: Vec<PathBuf>,
    ignore: Vec<String>,
    poll_interval: Duration,
    step: Duration,
    settled_step: Duration,
    debounce: Duration,
    root_check_interval: Duration,
    force_polling: bool,
    max_pending: usize,
}

impl WatcherBuilder {
    /// Default time between two scans of a polled root.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
    /// Default quiet time after which a batch with creations or writes is returned.
    pub const DEFAULT_STEP: Duration = Duration::from_millis(50);
    /// Default quiet time after which a small batch of only renames, moves in and rescans is
    /// returned. notify's event thread passes on the events of one inotify read one after the
    /// other, so this only has to outlast a short preemption of that thread.
    pub const DEFAULT_SETTLED_STEP: Duration = Duration::from_millis(5);
    /// Default longest time a batch collects changes once it has started.
    pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(1600);
    /// Default time between two checks that each root is still the same folder.
    pub const DEFAULT_ROOT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
    /// Default bound on pending entries; past it the busiest root collapses into one rescan.
    /// An entry costs roughly its path plus 100 bytes, so this is about 10 MB at most.
    pub const DEFAULT_MAX_PENDING: usize = 50_000;

    /// Starts a builder for watching `roots` recursively.
    #[must_use]
    pub fn new<I, P>(roots: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        WatcherBuilder {
            roots: roots.into_iter().map(Into::into).collect(),
            ignore: Vec::new(),
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            step: Self::DEFAULT_STEP,
            settled_step: Self::DEFAULT_SETTLED_STEP,
            debounce: Self::DEFAULT_DEBOUNCE,
            root_check_interval: Self::DEFAULT_ROOT_CHECK_INTERVAL,
            force_polling: false,
            max_pending: Self::DEFAULT_MAX_PENDING,
        }
    }

    /// Sets glob patterns for paths to leave out. A pattern without `/` matches any single
    /// name below a root (`.*`, `*.part`, `@eaDir`); one with `/` matches the path relative
    /// to its root (`downloads/incomplete/**`).
    #[must_use]
    pub fn ignore<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ignore = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the time between two scans of a polled root.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets the quiet time after which a batch with creations or writes is returned.
    #[must_use]
    pub fn step(mut self, step: Duration) -> Self {
        self.step = step;
        self
    }

    /// Sets the quiet time after which a small batch of only renames, moves in and rescans is
    /// returned. A value above `step` acts as `step`.
    #[must_use]
    pub fn settled_step(mut self, settled_step: Duration) -> Self {
        self.settled_step = settled_step;
        self
    }

    /// Sets the longest time a batch collects changes once it has started.
    #[must_use]
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// Sets the time between two checks that each root is still the same folder.
    #[must_use]
    pub fn root_check_interval(mut self, interval: Duration) -> Self {
        self.root_check_interval = interval;
        self
    }

    /// Polls every root instead of using inotify.
    #[must_use]
    pub fn force_polling(mut self, force: bool) -> Self {
        self.force_polling = force;
        self
    }

    /// Sets the bound on pending entries.
    #[must_use]
    pub fn max_pending(mut self, max_pending: usize) -> Self {
        self.max_pending = max_pending;
        self
    }

    /// Validates the settings, installs a watch on every root and starts the supervisor.
    ///
    /// Blocks while notify walks each root to add its watches. A root that is missing or
    /// cannot be watched is not an error: it is reported by [`Watcher::roots`] and by the first
    /// batch.
    pub fn build(self) -> Result<Watcher> {
        self.validate()?;
        let ignore = IgnoreSet::new(&self.ignore)?;
        let limit_message = match fsinfo::max_user_watches() {
            Some(limit) => format!(
                "inotify watch limit reached (fs.inotify.max_user_watches = {limit}); raise it \
                 with sysctl, or the root stays on polling"
            ),
            None => "inotify watch limit reached; raise fs.inotify.max_user_watches with \
                     sysctl, or the root stays on polling"
                .to_owned(),
        };
        let settings = Settings {
            roots: self.roots.clone(),
            ignore,
            poll_interval: self.poll_interval,
            step: self.step,
            settled_step: self.settled_step,
            debounce: self.debounce,
            root_check_interval: self.root_check_interval,
            force_polling: self.force_polling,
            limit_message,
        };
        let slots = self
            .roots
            .iter()
            .map(|path| RootSlot {
                path: path.clone(),
                state: RootState::Missing,
                message: None,
                generation: 0,
                identity: None,
                was_mount_point: false,
            })
            .collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                batch: Batch::new(self.roots.clone(), self.max_pending),
                roots: slots,
                actions: Vec::new(),
                closed: false,
                paused: false,
            }),
            changed: Condvar::new(),
            settings,
        });
        let backends: Vec<Backend> = (0..self.roots.len())
            .map(|root| install(&shared, root))
            .collect();
        let supervisor_shared = Arc::clone(&shared);
        let supervisor = thread::Builder::new()
            .name("reelwatch watch supervisor".to_owned())
            .spawn(move || supervise(&supervisor_shared, backends))
            .map_err(|error| Error::from(error).with_path(&self.roots[0]))?;
        Ok(Watcher {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }

    fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::new(ErrorKind::InvalidPath, message));
        if self.roots.is_empty() {
            return invalid("no roots to watch; pass at least one folder".to_owned());
        }
        for (index, root) in self.roots.iter().enumerate() {
            if !root.is_absolute() {
                return invalid(format!(
                    "root {} is not an absolute path; pass the full path",
                    root.display()
                ));
            }
            if root
                .components()
                .any(|part| matches!(part, Component::ParentDir))
            {
                return invalid(format!(
                    "root {} contains '..'; pass it without '..' components",
                    root.display()
                ));
            }
            for other in &self.roots[..index] {
                if root.starts_with(other) || other.starts_with(root) {
                    return invalid(format!(
                        "roots {} and {} overlap; watch only the outer one",
                        other.display(),
                        root.display()
                    ));
                }
            }
        }
        let durations = [
            ("poll interval", self.poll_interval),
            ("step", self.step),
            ("settled step", self.settled_step),
            ("debounce", self.debounce),
            ("root check interval", self.root_check_interval),
        ];
        for (name, value) in durations {
            if value.is_zero() {
                return Err(Error::new(
                    ErrorKind::InvalidPath,
                    format!("{name} must be greater than zero"),
                ));
            }
        }
        if self.max_pending == 0 {
            return Err(Error::new(
                ErrorKind::InvalidPath,
                "max pending must be greater than zero",
            ));
        }
        Ok(())
    }
}

/// Watches the scan roots; see the module documentation.
///
/// Dropping it stops every backend thread.
pub struct Watcher {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("roots", &self.shared.settings.roots)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Blocks until a batch is ready or `timeout` passes without any change, and returns the
    /// batch (empty on timeout). Once a change has arrived, the batch is returned when no
    /// other change came for `step` (`settled_step` for a small batch of only renames, moves in
    /// and rescans), or `debounce` after the first change, even if `timeout` is shorter.
    #[must_use]
    pub fn wait(&self, timeout: Duration) -> Vec<Change> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            match self.wait_step(deadline.saturating_duration_since(now)) {
                WaitStep::Ready(changes) => return changes,
                WaitStep::Pending { started: false } if Instant::now() >= deadline => {
                    return Vec::new()
                }
                WaitStep::Pending { .. } => {}
            }
        }
    }

    /// Blocks for at most `max_block` and returns the batch if it became ready.
    ///
    /// Callers that must stay responsive (a Python thread checking for signals) loop over
    /// this with a short `max_block`; the batch keeps collecting between calls.
    #[must_use]
    pub fn wait_step(&self, max_block: Duration) -> WaitStep {
        let settings = &self.shared.settings;
        let deadline = Instant::now() + max_block;
        let mut state = self.shared.lock();
        loop {
            let now = Instant::now();
            let quiet = state.batch.quiet_time(settings.step, settings.settled_step);
            if state.closed || state.batch.is_ready(now, quiet, settings.debounce) {
                let taken = state.batch.take();
                drop(state);
                return WaitStep::Ready(self.shared.resolve(taken));
            }
            if now >= deadline {
                return WaitStep::Pending {
                    started: !state.batch.is_empty(),
                };
            }
            let until = state
                .batch
                .ready_at(quiet, settings.debounce)
                .map_or(deadline, |ready| ready.min(deadline));
            let pause = until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            state = self.shared.wait_timeout(state, pause);
        }
    }

    /// Returns every root with its state.
    #[must_use]
    pub fn roots(&self) -> Vec<RootStatus> {
        self.shared
            .lock()
            .roots
            .iter()
            .map(|slot| RootStatus {
                path: slot.path.clone(),
                state: slot.state,
                message: slot.message.clone(),
            })
            .collect()
    }

    /// Whether [`Watcher::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Stops every backend and the supervisor, and waits for the supervisor to end.
    pub fn close(&self) {
        {
            let mut state = self.shared.lock();
            state.closed = true;
            state.paused = false;
        }
        self.shared.changed.notify_all();
        let handle = self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // The supervisor catches nothing that could panic; a panic there already dropped
            // its backends, which is all joining would wait for.
            let _ = handle.join();
        }
    }

    /// Simulates `fault` through the same path a real one takes. For tests only.
    pub fn inject(&self, fault: Fault) {
        let shared = &self.shared;
        match fault {
            Fault::PauseDelivery(paused) => {
                shared.lock().paused = paused;
                shared.changed.notify_all();
            }
            Fault::Overflow(root) => {
                let roots: Vec<usize> = match root {
                    Some(root) => vec![root],
                    None => (0..shared.settings.roots.len()).collect(),
                };
                for root in roots {
                    let generation = shared.generation(root);
                    let event = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
                    shared.on_notify(root, generation, Ok(event));
                }
            }
            Fault::WatchLimit(root) => {
                if let Some(path) = shared.settings.roots.get(root) {
                    let generation = shared.generation(root);
                    let error =
                        notify::Error::new(notify::ErrorKind::MaxFilesWatch).add_path(path.clone());
                    shared.on_notify(root, generation, Err(error));
                }
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.close();
    }
}

/// Settings fixed at build time.
struct Settings {
    roots: Vec<PathBuf>,
    ignore: IgnoreSet,
    poll_interval: Duration,
    step: Duration,
    settled_step: Duration,
    debounce: Duration,
    root_check_interval: Duration,
    force_polling: bool,
    limit_message: String,
}

struct RootSlot {
    path: PathBuf,
    state: RootState,
    message: Option<String>,
    /// Bumped whenever the root's backend is replaced; messages from older backends are stale.
    generation: u64,
    identity: Option<Identity>,
    was_mount_point: bool,
}

/// Work for the supervisor thread, which owns the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Drop(usize),
    Poll(usize),
}

struct State {
    batch: Batch,
    roots: Vec<RootSlot>,
    actions: Vec<Action>,
    closed: bool,
    paused: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every change of `state`; both waiters and the supervisor sleep on it.
    changed: Condvar,
    settings: Settings,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.recover(self.state.lock())
    }

    fn wait_timeout<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        match self.changed.wait_timeout(guard, timeout) {
            Ok((guard, _)) => guard,
            Err(poisoned) => self.recover(Err(PoisonError::new(poisoned.into_inner().0))),
        }
    }

    /// Applies the poisoned-lock policy from the module documentation.
    fn recover<'a>(&self, result: LockResult<MutexGuard<'a, State>>) -> MutexGuard<'a, State> {
        match result {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                self.state.clear_poison();
                let now = Instant::now();
                for root in 0..guard.roots.len() {
                    guard.batch.push(
                        root,
                        Observation::RootRescan {
                            reason: "internal error while recording changes; some may be lost"
                                .to_owned(),
                        },
                        now,
                    );
                }
                guard
            }
        }
    }

    fn generation(&self, root: usize) -> u64 {
        self.lock()
            .roots
            .get(root)
            .map_or(0, |slot| slot.generation)
    }

    /// Handles one message of the native backend of `root`.
    fn on_notify(&self, root: usize, generation: u64, message: notify::Result<notify::Event>) {
        {
            let mut state = self.lock();
            while state.paused && !state.closed {
                state = self.wait_timeout(state, Duration::from_millis(100));
            }
        }
        let root_path = &self.settings.roots[root];
        match map::map_notify(root_path, message) {
            Mapped::Observed(mut observations) => {
                if observations
                    .iter()
                    .any(|o| matches!(o, Observation::Unmounted(_)))
                {
                    // inotify sends IN_UNMOUNT for every watch on the unmounted filesystem, in
                    // no particular order; if the root's own filesystem went, say so first.
                    if let Some(lost) = self.root_loss(root, root_path) {
                        observations = vec![lost];
                    }
                }
                self.observe(root, generation, observations);
            }
            Mapped::WatchLimit(path) => self.fall_back_to_polling(root, generation, path),
        }
    }

    /// Checks whether `root` is still the folder it was, and describes the loss if not.
    fn root_loss(&self, root: usize, path: &Path) -> Option<Observation> {
        let (expected, was_mount_point) = {
            let state = self.lock();
            let slot = &state.roots[root];
            (slot.identity, slot.was_mount_point)
        };
        match fsinfo::identity(path) {
            Err(_) => Some(Observation::RootLost {
                kind: ChangeKind::RootMissing,
                message: "the root no longer exists".to_owned(),
            }),
            Ok(current) if Some(current) != expected => {
                if was_mount_point && !fsinfo::is_mount_point(path) {
                    Some(Observation::RootLost {
                        kind: ChangeKind::Unmounted,
                        message: "the root's filesystem was unmounted".to_owned(),
                    })
                } else {
                    Some(Observation::RootLost {
                        kind: ChangeKind::RootMissing,
                        message: "the root was replaced by another folder".to_owned(),
                    })
                }
            }
            Ok(_) => None,
        }
    }

    /// Adds observations for `root` unless they come from a replaced backend.
    ///
    /// Returns false when they were stale or the watcher is closed.
    fn observe(&self, root: usize, generation: u64, observations: Vec<Observation>) -> bool {
        let mut state = self.lock();
        if state.closed || state.roots[root].generation != generation {
            return false;
        }
        let now = Instant::now();
        for observation in observations {
            if let Observation::RootLost { kind: _, message } = &observation {
                let slot = &mut state.roots[root];
                slot.state = RootState::Missing;
                slot.message = Some(message.clone());
                slot.generation += 1;
                state.actions.push(Action::Drop(root));
                state.batch.push(root, observation, now);
                break;
            }
            state.batch.push(root, observation, now);
        }
        drop(state);
        self.changed.notify_all();
        true
    }

    fn fall_back_to_polling(&self, root: usize, generation: u64, path: PathBuf) {
        let mut state = self.lock();
        if state.closed || state.roots[root].generation != generation {
            return;
        }
        let message = self.settings.limit_message.clone();
        let now = Instant::now();
        state.batch.push(
            root,
            Observation::WatchError {
                path,
                message: message.clone(),
            },
            now,
        );
        state.batch.push(
            root,
            Observation::RootRescan {
                reason: "inotify watch limit reached; the root switches to polling".to_owned(),
            },
            now,
        );
        let slot = &mut state.roots[root];
        slot.state = RootState::Polling;
        slot.message = Some(message);
        slot.generation += 1;
        state.actions.push(Action::Poll(root));
        drop(state);
        self.changed.notify_all();
    }

    /// Records the outcome of installing a backend, unless the root changed meanwhile.
    fn commit(&self, root: usize, generation: u64, outcome: Outcome) -> bool {
        let mut state = self.lock();
        if state.closed || state.roots[root].generation != generation {
            return false;
        }
        let now = Instant::now();
        let slot = &mut state.roots[root];
        let repeated = slot.state == outcome.state && slot.message == outcome.message;
        slot.state = outcome.state;
        slot.message.clone_from(&outcome.message);
        if let Some(identity) = outcome.identity {
            slot.identity = Some(identity);
            slot.was_mount_point = outcome.mount_point;
        }
        let path = slot.path.clone();
        if !repeated {
            let message = outcome.message.unwrap_or_default();
            match outcome.state {
                RootState::Missing => state.batch.push(
                    root,
                    Observation::RootLost {
                        kind: ChangeKind::RootMissing,
                        message,
                    },
                    now,
                ),
                RootState::Error => {
                    state
                        .batch
                        .push(root, Observation::WatchError { path, message }, now);
                }
                RootState::Watching | RootState::Polling => {}
            }
        }
        drop(state);
        self.changed.notify_all();
        true
    }

    fn resolve(&self, taken: batch::Taken) -> Vec<Change> {
        let roots = &self.settings.roots;
        let ignore = &self.settings.ignore;
        taken.resolve(
            |root, path| ignore.is_ignored(&roots[root], path),
            |path| std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir()),
        )
    }
}

/// What installing a backend found out about a root.
struct Outcome {
    state: RootState,
    message: Option<String>,
    identity: Option<Identity>,
    mount_point: bool,
}

/// A root's running backend, held for its `Drop`, which stops it.
#[expect(dead_code, reason = "the backends are only held, never read")]
enum Backend {
    None,
    Native(Native),
    Poll(Poller),
}

impl Backend {
    fn is_none(&self) -> bool {
        matches!(self, Backend::None)
    }
}

/// A native watcher whose drop cannot panic.
struct Native(Option<INotifyWatcher>);

impl Drop for Native {
    fn drop(&mut self) {
        if let Some(watcher) = self.0.take() {
            // notify's Drop unwraps a channel send, which panics only if its event thread is
            // already gone. Contain that here: a panic must not reach Python.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(watcher)));
        }
    }
}

/// The event kinds subscribed to. Opens and read-only closes are left out: every player or
/// probe opening a file would otherwise take room in the kernel queue.
fn event_kinds() -> EventKindMask {
    EventKindMask::CREATE
        | EventKindMask::REMOVE
        | EventKindMask::MODIFY_DATA
        | EventKindMask::MODIFY_META
        | EventKindMask::MODIFY_NAME
        | EventKindMask::ACCESS_CLOSE
}

/// Installs the backend that fits `root` now and records its state.
fn install(shared: &Arc<Shared>, root: usize) -> Backend {
    let (path, generation) = {
        let mut state = shared.lock();
        let slot = &mut state.roots[root];
        slot.generation += 1;
        (slot.path.clone(), slot.generation)
    };
    let missing = |message: String| Outcome {
        state: RootState::Missing,
        message: Some(message),
        identity: None,
        mount_point: false,
    };
    let identity = match fsinfo::identity(&path) {
        Ok(identity) => identity,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            shared.commit(
                root,
                generation,
                missing("the root does not exist".to_owned()),
            );
            return Backend::None;
        }
        Err(error) => {
            let message = format!("cannot read the root: {}", map::describe_io(&error));
            shared.commit(root, generation, failed(message));
            return Backend::None;
        }
    };
    if !path.is_dir() {
        shared.commit(
            root,
            generation,
            failed("the root is not a folder".to_owned()),
        );
        return Backend::None;
    }
    let mount_point = fsinfo::is_mount_point(&path);
    let settings = &shared.settings;
    let poll_reason = if settings.force_polling {
        Some("polling forced by configuration".to_owned())
    } else {
        match fsinfo::eventless_filesystem(&path) {
            Ok(Some(name)) => Some(format!(
                "{name} filesystem: changes made by other machines send no events"
            )),
            _ => None,
        }
    };
    if let Some(reason) = poll_reason {
        return start_polling(shared, root, generation, identity, mount_point, reason);
    }
    match start_native(shared, root, generation, &path) {
        Ok(watcher) => {
            let outcome = Outcome {
                state: RootState::Watching,
                message: None,
                identity: Some(identity),
                mount_point,
            };
            if shared.commit(root, generation, outcome) {
                Backend::Native(Native(Some(watcher)))
            } else {
                // A handler reported the watch limit during the walk and queued polling.
                Backend::None
            }
        }
        Err(NativeFailure::Limit(path_at_limit)) => {
            shared.observe(
                root,
                generation,
                vec![Observation::WatchError {
                    path: path_at_limit,
                    message: settings.limit_message.clone(),
                }],
            );
            let reason = settings.limit_message.clone();
            start_polling(shared, root, generation, identity, mount_point, reason)
        }
        Err(NativeFailure::Other(message)) => {
            shared.commit(root, generation, failed(message));
            Backend::None
        }
    }
}

fn failed(message: String) -> Outcome {
    Outcome {
        state: RootState::Error,
        message: Some(message),
        identity: None,
        mount_point: false,
    }
}

enum NativeFailure {
    /// The per-user watch limit was reached at this path.
    Limit(PathBuf),
    Other(String),
}

fn start_native(
    shared: &Arc<Shared>,
    root: usize,
    generation: u64,
    path: &Path,
) -> std::result::Result<INotifyWatcher, NativeFailure> {
    let handler_shared = Arc::clone(shared);
    let handler = move |message: notify::Result<notify::Event>| {
        handler_shared.on_notify(root, generation, message);
    };
    // Symlinks below the root are not followed: the scanner decides which links stay inside
    // the allowed roots.
    let config = notify::Config::default()
        .with_follow_symlinks(false)
        .with_event_kinds(event_kinds());
    let describe = |error: notify::Error| match error.kind {
        notify::ErrorKind::MaxFilesWatch => NativeFailure::Limit(
            error
                .paths
                .first()
                .cloned()
                .unwrap_or_else(|| path.to_path_buf()),
        ),
        notify::ErrorKind::Io(ref io) if io.raw_os_error() == Some(libc::EMFILE) => {
            // Out of inotify instances: as with the watch limit, polling still works.
            NativeFailure::Limit(path.to_path_buf())
        }
        notify::ErrorKind::Io(ref io) => {
            NativeFailure::Other(format!("cannot watch the root: {}", map::describe_io(io)))
        }
        _ => NativeFailure::Other(format!("cannot watch the root: {error}").to_lowercase()),
    };
    let mut watcher = INotifyWatcher::new(handler, config).map_err(describe)?;
    watcher
        .watch_with(path, WatchPathConfig::new(RecursiveMode::Recursive))
        .map_err(describe)?;
    Ok(watcher)
}

fn start_polling(
    shared: &Arc<Shared>,
    root: usize,
    generation: u64,
    identity: Identity,
    mount_point: bool,
    reason: String,
) -> Backend {
    let settings = &shared.settings;
    let path = settings.roots[root].clone();
    let ignore_shared = Arc::clone(shared);
    let is_ignored = Box::new(move |candidate: &Path| {
        let settings = &ignore_shared.settings;
        settings.ignore.is_ignored(&settings.roots[root], candidate)
    });
    let sink = RootSink {
        shared: Arc::clone(shared),
        root,
        generation,
    };
    match Poller::start(path, settings.poll_interval, is_ignored, sink) {
        Ok(poller) => {
            let outcome = Outcome {
                state: RootState::Polling,
                message: Some(reason),
                identity: Some(identity),
                mount_point,
            };
            if shared.commit(root, generation, outcome) {
                Backend::Poll(poller)
            } else {
                Backend::None
            }
        }
        Err(error) => {
            let message = format!("cannot start polling: {}", map::describe_io(&error));
            shared.commit(root, generation, failed(message));
            Backend::None
        }
    }
}

/// Where a poller delivers the changes of one root.
struct RootSink {
    shared: Arc<Shared>,
    root: usize,
    generation: u64,
}

impl PollSink for RootSink {
    fn deliver(&self, observations: Vec<Observation>) -> bool {
        self.shared
            .observe(self.root, self.generation, observations)
    }

    fn root_still_there(&self) -> bool {
        let path = &self.shared.settings.roots[self.root];
        match self.shared.root_loss(self.root, path) {
            None => true,
            Some(lost) => {
                self.shared.observe(self.root, self.generation, vec![lost]);
                false
            }
        }
    }
}

/// Runs the supervisor until the watcher is closed; it owns every backend.
fn supervise(shared: &Arc<Shared>, mut backends: Vec<Backend>) {
    let interval = shared.settings.root_check_interval;
    let mut next_check = Instant::now() + interval;
    loop {
        let actions = {
            let mut state = shared.lock();
            loop {
                if state.closed {
                    return;
                }
                let now = Instant::now();
                if !state.actions.is_empty() || now >= next_check {
                    break;
                }
                state = shared.wait_timeout(state, next_check - now);
            }
            std::mem::take(&mut state.actions)
        };
        for action in actions {
            match action {
                Action::Drop(root) => backends[root] = Backend::None,
                Action::Poll(root) => {
                    backends[root] = Backend::None;
                    backends[root] = install_polling_after_limit(shared, root);
                }
            }
        }
        if Instant::now() >= next_check {
            for (root, backend) in backends.iter_mut().enumerate() {
                check_root(shared, root, backend);
            }
            next_check = Instant::now() + interval;
        }
    }
}

fn install_polling_after_limit(shared: &Arc<Shared>, root: usize) -> Backend {
    let (path, generation) = {
        let state = shared.lock();
        let slot = &state.roots[root];
        (slot.path.clone(), slot.generation)
    };
    match fsinfo::identity(&path) {
        Ok(identity) => {
            let mount_point = fsinfo::is_mount_point(&path);
            let reason = shared.settings.limit_message.clone();
            start_polling(shared, root, generation, identity, mount_point, reason)
        }
        // Gone meanwhile: the next check reports it.
        Err(_) => Backend::None,
    }
}

/// Checks that `root` is still the folder being watched, or whether a missing one is back.
fn check_root(shared: &Arc<Shared>, root: usize, backend: &mut Backend) {
    let (state, path, generation, was_mount_point) = {
        let guard = shared.lock();
        let slot = &guard.roots[root];
        (
            slot.state,
            slot.path.clone(),
            slot.generation,
            slot.was_mount_point,
        )
    };
    match state {
        RootState::Watching | RootState::Polling => {
            if backend.is_none() {
                // Waiting for a queued action.
                return;
            }
            let Some(lost) = shared.root_loss(root, &path) else {
                return;
            };
            let replaced = matches!(&lost, Observation::RootLost { message, .. } if message.contains("replaced"));
            *backend = Backend::None;
            if replaced && path.is_dir() {
                *backend = install(shared, root);
                rescan_root(shared, root, "the root was replaced by another folder");
            } else {
                shared.observe(root, generation, vec![lost]);
            }
        }
        RootState::Missing | RootState::Error => {
            let back = path.is_dir() && (!was_mount_point || fsinfo::is_mount_point(&path));
            if !back {
                return;
            }
            *backend = install(shared, root);
            if !backend.is_none() {
                rescan_root(shared, root, "the root is available again");
            }
        }
    }
}

fn rescan_root(shared: &Arc<Shared>, root: usize, reason: &str) {
    let generation = shared.generation(root);
    shared.observe(
        root,
        generation,
        vec![Observation::RootRescan {
            reason: reason.to_owned(),
        }],
    );
}

#[cfg(test)]
mod tests;

//! The pending batch: coalesces observations by path, pairs renames and stays bounded in memory.
//!
//! Everything here is pure: no clock reads, no filesystem access. The caller passes the current
//! time where readiness matters and a directory test when the batch is resolved.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Change, ChangeKind};

/// Reason given with the rescan that replaces a root's changes once the batch grows too large.
pub(crate) const COLLAPSED_REASON: &str =
    "too many pending changes; they were collapsed into a rescan of the root";

/// At most this many `watch_error` entries per root are kept in one batch; the rest are counted.
const MAX_ERRORS_PER_ROOT: usize = 100;

/// A batch with more entries than this waits for the full step even if it contains only
/// renames. So many changes at once are a burst (`mv` of a whole folder's files), which should
/// reach the daemon as one batch and become one folder scan.
const MAX_SETTLED_ENTRIES: usize = 32;

/// One thing the watcher noticed, already mapped from the backend's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observation {
    /// A `created`, `modified`, `closed_write` or `removed` change of one path.
    Simple(ChangeKind, PathBuf),
    /// The first half of a rename, waiting for its second half.
    RenameFrom { tracker: usize, path: PathBuf },
    /// The second half of a rename. Unpaired, it means the path was moved in from outside.
    RenameTo(PathBuf),
    /// A rename whose both halves the backend paired.
    Renamed {
        tracker: usize,
        from: PathBuf,
        to: PathBuf,
    },
    /// The tree under `path` may have changed without events.
    Rescan { path: PathBuf, reason: String },
    /// Every change under the root may have been lost (kernel queue overflow or similar).
    RootRescan { reason: String },
    /// A folder could not be watched.
    WatchError { path: PathBuf, message: String },
    /// The root itself went away or was unmounted.
    RootLost { kind: ChangeKind, message: String },
    /// A filesystem mounted below the root was unmounted.
    Unmounted(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// `kind` is the latest of created, modified and removed; `closed_write` records a close.
    Simple {
        kind: Option<ChangeKind>,
        closed_write: bool,
    },
    PendingFrom,
    Renamed {
        to: PathBuf,
    },
    MovedIn,
    Rescan {
        reason: String,
    },
    WatchError {
        message: String,
    },
    Root {
        kind: ChangeKind,
        message: String,
    },
    /// An entry superseded by a later one, skipped when the batch is taken.
    Dropped,
}

#[derive(Debug, Clone)]
struct Entry {
    root: usize,
    path: PathBuf,
    body: Body,
}

/// Changes collected since the last `take`, in the order they were first seen.
#[derive(Debug)]
pub(crate) struct Batch {
    roots: Vec<PathBuf>,
    max_pending: usize,
    entries: Vec<Entry>,
    /// Path to the index of its mergeable `Simple` entry.
    simple: HashMap<PathBuf, usize>,
    /// Path to the index of its `MovedIn` entry, so a late rename pair can replace it.
    moved_in: HashMap<PathBuf, usize>,
    /// Rename tracker to the index of its `PendingFrom` entry.
    pending_from: HashMap<usize, usize>,
    rescans: HashSet<PathBuf>,
    /// Roots whose changes were replaced by one rescan of the whole root in this batch.
    collapsed: Vec<bool>,
    errors: Vec<usize>,
    suppressed_errors: Vec<usize>,
    live: Vec<usize>,
    /// Whether a creation, write, metadata change or removal was seen since the last `take`.
    /// Such changes come in runs (a file being written, `rm` of many files), so the batch
    /// waits the full step; see [`Batch::quiet_time`].
    has_writes: bool,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
}

impl Batch {
    /// Creates an empty batch for `roots` that keeps about `max_pending` entries at most.
    pub(crate) fn new(roots: Vec<PathBuf>, max_pending: usize) -> Self {
        let count = roots.len();
        Batch {
            roots,
            max_pending: max_pending.max(1),
            entries: Vec::new(),
            simple: HashMap::new(),
            moved_in: HashMap::new(),
            pending_from: HashMap::new(),
            rescans: HashSet::new(),
            collapsed: vec![false; count],
            errors: vec![0; count],
            suppressed_errors: vec![0; count],
            live: vec![0; count],
            has_writes: false,
            first_at: None,
            last_at: None,
        }
    }

    /// Whether nothing is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.first_at.is_none()
    }

    /// Returns the quiet time after which this batch is ready: `settled_step` when it contains
    /// at most [`MAX_SETTLED_ENTRIES`] entries, all of them complete renames, moves in,
    /// rescans and root events, and `step` otherwise.
    ///
    /// A creation or write may be followed by more writes, a removal by more removals, and
    /// the first half of a rename waits for its second, so those keep the longer step and a
    /// burst still coalesces. A file moved in or renamed is already whole, so the short quiet
    /// time bounds its latency. That time only has to cover the events that notify passes on
    /// together, such as the two halves of a rename, which come in one read.
    pub(crate) fn quiet_time(&self, step: Duration, settled_step: Duration) -> Duration {
        let is_settled = !self.has_writes
            && self.pending_from.is_empty()
            && self.live.iter().sum::<usize>() <= MAX_SETTLED_ENTRIES;
        if is_settled {
            settled_step.min(step)
        } else {
            step
        }
    }

    /// Whether the batch should be returned: quiet for `step`, or `debounce` old.
    pub(crate) fn is_ready(&self, now: Instant, step: Duration, debounce: Duration) -> bool {
        match (self.first_at, self.last_at) {
            (Some(first), Some(last)) => {
                now.saturating_duration_since(last) >= step
                    || now.saturating_duration_since(first) >= debounce
            }
            _ => false,
        }
    }

    /// The instant at which [`Batch::is_ready`] becomes true if nothing else arrives.
    pub(crate) fn ready_at(&self, step: Duration, debounce: Duration) -> Option<Instant> {
        match (self.first_at, self.last_at) {
            (Some(first), Some(last)) => Some((last + step).min(first + debounce)),
            _ => None,
        }
    }

    /// Adds one observation for root `root` seen at `now`.
    pub(crate) fn push(&mut self, root: usize, observation: Observation, now: Instant) {
        if root >= self.roots.len() {
            return;
        }
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        match observation {
            Observation::Simple(kind, path) => self.push_simple(root, kind, path),
            Observation::RenameFrom { tracker, path } => {
                if !self.collapsed[root] {
                    let index = self.append(root, path, Body::PendingFrom);
                    self.pending_from.insert(tracker, index);
                }
            }
            // Recorded as moved in until the backend's paired event replaces it: notify pairs
            // only the latest first half, so an interleaved pair never gets a paired event.
            Observation::RenameTo(path) => {
                self.push_moved_in(root, path);
            }
            Observation::Renamed { tracker, from, to } => {
                self.push_renamed(root, tracker, from, to);
            }
            Observation::Rescan { path, reason } => self.push_rescan(root, path, reason),
            Observation::RootRescan { reason } => self.collapse(root, &reason),
            Observation::WatchError { path, message } => self.push_error(root, path, message),
            Observation::RootLost { kind, message } => self.push_root_lost(root, kind, message),
            Observation::Unmounted(path) => {
                let message = "filesystem unmounted; this folder is no longer watched".to_owned();
                self.append(
                    root,
                    path,
                    Body::Root {
                        kind: ChangeKind::Unmounted,
                        message,
                    },
                );
            }
        }
        self.enforce_limit();
    }

    fn push_simple(&mut self, root: usize, kind: ChangeKind, path: PathBuf) {
        self.has_writes = true;
        if self.collapsed[root] {
            return;
        }
        if let Some(&index) = self.simple.get(&path) {
            if let Body::Simple {
                kind: existing,
                closed_write,
            } = &mut self.entries[index].body
            {
                merge_simple(existing, closed_write, kind);
                return;
            }
        }
        let mut merged = None;
        let mut closed_write = false;
        merge_simple(&mut merged, &mut closed_write, kind);
        let index = self.append(
            root,
            path.clone(),
            Body::Simple {
                kind: merged,
                closed_write,
            },
        );
        self.simple.insert(path, index);
    }

    fn push_moved_in(&mut self, root: usize, path: PathBuf) {
        if self.collapsed[root] {
            return;
        }
        self.simple.remove(&path);
        let index = self.append(root, path.clone(), Body::MovedIn);
        self.moved_in.insert(path, index);
    }

    fn push_renamed(&mut self, root: usize, tracker: usize, from: PathBuf, to: PathBuf) {
        if let Some(index) = self.pending_from.remove(&tracker) {
            self.drop_entry(index);
        }
        if let Some(index) = self.moved_in.remove(&to) {
            self.drop_entry(index);
        }
        if self.collapsed[root] {
            return;
        }
        // Later events on either name start a new entry after the rename.
        self.simple.remove(&from);
        self.simple.remove(&to);
        self.append(root, from, Body::Renamed { to });
    }

    fn push_rescan(&mut self, root: usize, path: PathBuf, reason: String) {
        if self.collapsed[root] || self.rescans.contains(&path) {
            return;
        }
        self.rescans.insert(path.clone());
        self.append(root, path, Body::Rescan { reason });
    }

    fn push_error(&mut self, root: usize, path: PathBuf, message: String) {
        if self.errors[root] >= MAX_ERRORS_PER_ROOT {
            self.suppressed_errors[root] += 1;
            return;
        }
        self.errors[root] += 1;
        self.append(root, path, Body::WatchError { message });
    }

    fn push_root_lost(&mut self, root: usize, kind: ChangeKind, message: String) {
        // Removals reported just before the root went are the root going away one file at a
        // time, so they must not delete catalog entries that should only go offline.
        let root_path = self.roots[root].clone();
        for index in 0..self.entries.len() {
            let entry = &self.entries[index];
            let is_removal = matches!(
                entry.body,
                Body::Simple {
                    kind: Some(ChangeKind::Removed),
                    ..
                } | Body::PendingFrom
            );
            if entry.root == root && is_removal {
                self.drop_entry(index);
            }
        }
        self.append(root, root_path, Body::Root { kind, message });
    }

    /// Replaces every pending change of `root` by one rescan of the root.
    fn collapse(&mut self, root: usize, reason: &str) {
        if self.collapsed[root] {
            return;
        }
        self.collapsed[root] = true;
        for index in 0..self.entries.len() {
            let entry = &self.entries[index];
            let keep = matches!(entry.body, Body::Root { .. } | Body::WatchError { .. });
            if entry.root == root && !keep {
                self.drop_entry(index);
            }
        }
        self.pending_from
            .retain(|_, index| self.entries[*index].root != root);
        let root_path = self.roots[root].clone();
        self.rescans.insert(root_path.clone());
        self.append(
            root,
            root_path,
            Body::Rescan {
                reason: reason.to_owned(),
            },
        );
    }

    fn enforce_limit(&mut self) {
        while self.live.iter().sum::<usize>() > self.max_pending {
            let candidate = (0..self.roots.len())
                .filter(|&root| !self.collapsed[root])
                .max_by_key(|&root| self.live[root]);
            match candidate {
                Some(root) => self.collapse(root, COLLAPSED_REASON),
                // Every root has one rescan already, and what remains are errors and root events.
                None => break,
            }
        }
        // Dropped entries still take memory, so compact once they dominate the list.
        if self.entries.len() > 2 * self.max_pending {
            self.compact();
        }
    }

    fn append(&mut self, root: usize, path: PathBuf, body: Body) -> usize {
        self.entries.push(Entry { root, path, body });
        self.live[root] += 1;
        self.entries.len() - 1
    }

    fn drop_entry(&mut self, index: usize) {
        let entry = &mut self.entries[index];
        if entry.body != Body::Dropped {
            entry.body = Body::Dropped;
            self.live[entry.root] -= 1;
        }
    }

    fn compact(&mut self) {
        let mut remap = HashMap::new();
        let mut kept = Vec::with_capacity(self.entries.len());
        for (old, entry) in self.entries.drain(..).enumerate() {
            if entry.body != Body::Dropped {
                remap.insert(old, kept.len());
                kept.push(entry);
            }
        }
        self.entries = kept;
        let reindex = |map: &mut HashMap<PathBuf, usize>| {
            map.retain(|_, index| match remap.get(index) {
                Some(&new) => {
                    *index = new;
                    true
                }
                None => false,
            });
        };
        reindex(&mut self.simple);
        reindex(&mut self.moved_in);
        self.pending_from.retain(|_, index| match remap.get(index) {
            Some(&new) => {
                *index = new;
                true
            }
            None => false,
        });
    }

    /// Removes everything pending and returns it, with unpaired rename halves resolved.
    pub(crate) fn take(&mut self) -> Taken {
        let mut entries = std::mem::take(&mut self.entries);
        let suppressed = std::mem::replace(&mut self.suppressed_errors, vec![0; self.roots.len()]);
        for (root, count) in suppressed.into_iter().enumerate() {
            if count > 0 {
                let message = format!(
                    "{count} more folders could not be watched; only the first \
                     {MAX_ERRORS_PER_ROOT} errors are listed"
                );
                entries.push(Entry {
                    root,
                    path: self.roots[root].clone(),
                    body: Body::WatchError { message },
                });
            }
        }
        let rescans = std::mem::take(&mut self.rescans);
        self.simple.clear();
        self.moved_in.clear();
        self.pending_from.clear();
        self.collapsed.iter_mut().for_each(|flag| *flag = false);
        self.errors.iter_mut().for_each(|count| *count = 0);
        self.live.iter_mut().for_each(|count| *count = 0);
        self.has_writes = false;
        self.first_at = None;
        self.last_at = None;
        Taken {
            entries: entries
                .into_iter()
                .filter(|entry| entry.body != Body::Dropped)
                .map(|entry| TakenEntry {
                    root: entry.root,
                    path: entry.path,
                    body: entry.body,
                })
                .collect(),
            rescans,
        }
    }
}

/// Folds a new simple `kind` into an entry's state.
fn merge_simple(kind: &mut Option<ChangeKind>, closed_write: &mut bool, new: ChangeKind) {
    match new {
        ChangeKind::ClosedWrite => *closed_write = true,
        ChangeKind::Removed => {
            *kind = Some(ChangeKind::Removed);
            *closed_write = false;
        }
        ChangeKind::Created => *kind = Some(ChangeKind::Created),
        // A change after a creation is part of the creation; after a removal it means the path
        // exists again, which only a creation can do, so report that.
        _ => {
            *kind = match *kind {
                Some(ChangeKind::Created | ChangeKind::Removed) => Some(ChangeKind::Created),
                _ => Some(ChangeKind::Modified),
            };
        }
    }
}

/// One taken entry, still in the batch's internal form.
#[derive(Debug)]
pub(crate) struct TakenEntry {
    root: usize,
    path: PathBuf,
    body: Body,
}

/// The contents of a batch after [`Batch::take`], to be resolved outside the lock.
#[derive(Debug)]
pub(crate) struct Taken {
    entries: Vec<TakenEntry>,
    rescans: HashSet<PathBuf>,
}

impl Taken {
    /// Turns the entries into changes.
    ///
    /// `is_ignored(root, path)` drops paths the caller does not want and `is_dir` tells moved-in
    /// and renamed folders apart from files, because their contents need a rescan.
    pub(crate) fn resolve(
        self,
        is_ignored: impl Fn(usize, &Path) -> bool,
        is_dir: impl Fn(&Path) -> bool,
    ) -> Vec<Change> {
        let Taken { entries, rescans } = self;
        let covered = |path: &Path| path.ancestors().skip(1).any(|a| rescans.contains(a));
        let mut changes = Vec::with_capacity(entries.len());
        for TakenEntry { root, path, body } in entries {
            match body {
                Body::Simple { kind, closed_write } => {
                    if covered(&path) || is_ignored(root, &path) {
                        continue;
                    }
                    if let Some(kind) = kind {
                        changes.push(Change::new(kind, path.clone()));
                    }
                    if closed_write && kind != Some(ChangeKind::Removed) {
                        changes.push(Change::new(ChangeKind::ClosedWrite, path));
                    }
                }
                Body::PendingFrom => {
                    if !covered(&path) && !is_ignored(root, &path) {
                        changes.push(Change::new(ChangeKind::Removed, path));
                    }
                }
                Body::MovedIn => {
                    if covered(&path) || is_ignored(root, &path) {
                        continue;
                    }
                    let folder = is_dir(&path);
                    changes.push(Change::new(ChangeKind::Created, path.clone()));
                    if folder && !rescans.contains(&path) {
                        changes.push(Change::rescan(
                            path,
                            "folder moved in; its contents produced no events",
                        ));
                    }
                }
                Body::Renamed { to } => {
                    let from_ignored = is_ignored(root, &path);
                    let to_ignored = is_ignored(root, &to);
                    let folder = !to_ignored && is_dir(&to);
                    match (from_ignored, to_ignored) {
                        (true, true) => {}
                        (true, false) => changes.push(Change::new(ChangeKind::Created, to.clone())),
                        (false, true) => changes.push(Change::new(ChangeKind::Removed, path)),
                        (false, false) => changes.push(Change {
                            kind: ChangeKind::Renamed,
                            path,
                            target: Some(to.clone()),
                            message: None,
                        }),
                    }
                    if folder && !covered(&to) && !rescans.contains(&to) {
                        changes.push(Change::rescan(
                            to,
                            "folder renamed; changes during the move may have no events",
                        ));
                    }
                }
                Body::Rescan { reason } => {
                    if !covered(&path) && !is_ignored(root, &path) {
                        changes.push(Change::rescan(path, &reason));
                    }
                }
                Body::WatchError { message } => {
                    if !is_ignored(root, &path) {
                        changes.push(Change {
                            kind: ChangeKind::WatchError,
                            path,
                            target: None,
                            message: Some(message),
                        });
                    }
                }
                Body::Root { kind, message } => changes.push(Change {
                    kind,
                    path,
                    target: None,
                    message: Some(message),
                }),
                Body::Dropped => {}
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(max_pending: usize) -> Batch {
        Batch::new(vec![PathBuf::from("/r"), PathBuf::from("/s")], max_pending)
    }

    fn p(path: &str) -> PathBuf {
        PathBuf::from(path)
    }

    fn simple(kind: ChangeKind, path: &str) -> Observation {
        Observation::Simple(kind, p(path))
    }

    fn resolve(batch: &mut Batch) -> Vec<(ChangeKind, String, Option<String>)> {
        resolve_with(batch, |_| false)
    }

    fn resolve_with(
        batch: &mut Batch,
        is_dir: impl Fn(&Path) -> bool,
    ) -> Vec<(ChangeKind, String, Option<String>)> {
        batch
            .take()
            .resolve(|_, path| path.to_string_lossy().ends_with(".part"), is_dir)
            .into_iter()
            .map(|change| {
                (
                    change.kind,
                    change.path.display().to_string(),
                    change.target.map(|target| target.display().to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn compaction_keeps_pending_rename_halves() {
        let mut batch = batch(2);
        let now = Instant::now();
        batch.push(
            1,
            Observation::RenameFrom {
                tracker: 7,
                path: p("/s/a.mkv"),
            },
            now,
        );
        // Three changes under /r pass the limit: /r collapses to one rescan,
        // and the dropped entries outnumber the limit, so the list is compacted.
        for name in ["/r/1.mkv", "/r/2.mkv", "/r/3.mkv"] {
            batch.push(0, simple(ChangeKind::Created, name), now);
        }
        batch.push(
            1,
            Observation::Renamed {
                tracker: 7,
                from: p("/s/a.mkv"),
                to: p("/s/b.mkv"),
            },
            now,
        );
        let changes = resolve(&mut batch);

        assert_eq!(
            changes,
            vec![
                (ChangeKind::Rescan, "/r".into(), None),
                (
                    ChangeKind::Renamed,
                    "/s/a.mkv".into(),
                    Some("/s/b.mkv".into())
                ),
            ]
        );
    }

    #[test]
    fn unmount_below_a_root_is_reported_with_its_path() {
        let mut batch = batch(100);

        batch.push(1, Observation::Unmounted(p("/s/disk")), Instant::now());

        assert_eq!(
            resolve(&mut batch),
            vec![(ChangeKind::Unmounted, "/s/disk".into(), None)]
        );
    }
    #[test]
    fn created_then_modified_then_closed_is_created_and_closed_write() {
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(0, simple(ChangeKind::Created, "/r/a.mkv"), now);
        batch.push(0, simple(ChangeKind::Modified, "/r/a.mkv"), now);
        batch.push(0, simple(ChangeKind::ClosedWrite, "/r/a.mkv"), now);
        assert_eq!(
            resolve(&mut batch),
            vec![
                (ChangeKind::Created, "/r/a.mkv".into(), None),
                (ChangeKind::ClosedWrite, "/r/a.mkv".into(), None),
            ]
        );
    }

    #[test]
    fn created_then_removed_is_removed_only() {
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(0, simple(ChangeKind::Created, "/r/a.mkv"), now);
        batch.push(0, simple(ChangeKind::ClosedWrite, "/r/a.mkv"), now);
        batch.push(0, simple(ChangeKind::Removed, "/r/a.mkv"), now);
        assert_eq!(
            resolve(&mut batch),
            vec![(ChangeKind::Removed, "/r/a.mkv".into(), None)]
        );
    }

    #[test]
    fn removed_then_modified_is_created() {
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(0, simple(ChangeKind::Removed, "/r/a.mkv"), now);
        batch.push(0, simple(ChangeKind::Modified, "/r/a.mkv"), now);
        assert_eq!(
            resolve(&mut batch),
            vec![(ChangeKind::Created, "/r/a.mkv".into(), None)]
        );
    }

    #[test]
    fn paired_rename_is_one_renamed_change() {
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(
            0,
            Observation::RenameFrom {
                tracker: 7,
                path: p("/r/a"),
            },
            now,
        );
        batch.push(0, Observation::RenameTo(p("/r/b")), now);
        batch.push(
            0,
            Observation::Renamed {
                tracker: 7,
                from: p("/r/a"),
                to: p("/r/b"),
            },
            now,
        );
        assert_eq!(
            resolve(&mut batch),
            vec![(ChangeKind::Renamed, "/r/a".into(), Some("/r/b".into()))]
        );
    }

    #[test]
    fn renamed_folder_also_gets_a_rescan_of_its_new_path() {
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(
            0,
            Observation::Renamed {
                tracker: 1,
                from: p("/r/old"),
                to: p("/r/new"),
            },
            now,
        );
        let changes = resolve_with(&mut batch, |path| path == Path::new("/r/new"));
        assert_eq!(
            changes,
            vec![
                (ChangeKind::Renamed, "/r/old".into(), Some("/r/new".into())),
                (ChangeKind::Rescan, "/r/new".into(), None),
            ]
        );
    }

    #[test]
    fn unpaired_halves_become_removed_and_created() {
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(
            0,
            Observation::RenameFrom {
                tracker: 1,
                path: p("/r/out"),
            },
            now,
        );
        batch.push(0, Observation::RenameTo(p("/r/in")), now);
        assert_eq!(
            resolve(&mut batch),
            vec![
                (ChangeKind::Removed, "/r/out".into(), None),
                (ChangeKind::Created, "/r/in".into(), None),
            ]
        );
    }

    #[test]
    fn interleaved_renames_without_pair_events_lose_nothing() {
        // notify pairs only the latest first half: From 1, From 2, To 1, To 2 gives one pair.
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(
            0,
            Observation::RenameFrom {
                tracker: 1,
                path: p("/r/a"),
            },
            now,
        );
        batch.push(
            0,
            Observation::RenameFrom {
                tracker: 2,
                path: p("/r/b"),
            },
            now,
        );
        batch.push(0, Observation::RenameTo(p("/r/a2")), now);
        batch.push(0, Observation::RenameTo(p("/r/b2")), now);
        batch.push(
            0,
            Observation::Renamed {
                tracker: 2,
                from: p("/r/b"),
                to: p("/r/b2"),
            },
            now,
        );
        assert_eq!(
            resolve(&mut batch),
            vec![
                (ChangeKind::Removed, "/r/a".into(), None),
                (ChangeKind::Created, "/r/a2".into(), None),
                (ChangeKind::Renamed, "/r/b".into(), Some("/r/b2".into())),
            ]
        );
    }

    #[test]
    fn moved_in_folder_gets_a_rescan() {
        let mut batch = batch(100);
        batch.push(0, Observation::RenameTo(p("/r/dir")), Instant::now());
        assert_eq!(
            resolve_with(&mut batch, |_| true),
            vec![
                (ChangeKind::Created, "/r/dir".into(), None),
                (ChangeKind::Rescan, "/r/dir".into(), None),
            ]
        );
    }

    #[test]
    fn rename_from_ignored_name_is_created() {
        let mut batch = batch(100);
        batch.push(
            0,
            Observation::Renamed {
                tracker: 3,
                from: p("/r/movie.mkv.part"),
                to: p("/r/movie.mkv"),
            },
            Instant::now(),
        );
        assert_eq!(
            resolve(&mut batch),
            vec![(ChangeKind::Created, "/r/movie.mkv".into(), None)]
        );
    }

    #[test]
    fn rescan_covers_changes_and_rescans_below_it() {
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(0, simple(ChangeKind::Created, "/r/d/x"), now);
        batch.push(0, simple(ChangeKind::Created, "/r/other"), now);
        let rescan = |path: &str| Observation::Rescan {
            path: p(path),
            reason: "test".into(),
        };
        batch.push(0, rescan("/r/d/e"), now);
        batch.push(0, rescan("/r/d"), now);
        batch.push(0, rescan("/r/d"), now);
        assert_eq!(
            resolve(&mut batch),
            vec![
                (ChangeKind::Created, "/r/other".into(), None),
                (ChangeKind::Rescan, "/r/d".into(), None),
            ]
        );
    }

    #[test]
    fn overflow_collapses_only_its_root() {
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(0, simple(ChangeKind::Created, "/r/a"), now);
        batch.push(1, simple(ChangeKind::Created, "/s/b"), now);
        batch.push(
            0,
            Observation::RootRescan {
                reason: "overflow".into(),
            },
            now,
        );
        batch.push(0, simple(ChangeKind::Created, "/r/c"), now);
        assert_eq!(
            resolve(&mut batch),
            vec![
                (ChangeKind::Created, "/s/b".into(), None),
                (ChangeKind::Rescan, "/r".into(), None),
            ]
        );
    }

    #[test]
    fn growth_past_the_limit_collapses_the_busiest_root() {
        let mut batch = batch(10);
        let now = Instant::now();
        batch.push(1, simple(ChangeKind::Created, "/s/quiet"), now);
        for index in 0..50 {
            batch.push(0, simple(ChangeKind::Created, &format!("/r/f{index}")), now);
        }
        let changes = batch.take().resolve(|_, _| false, |_| false);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].kind, ChangeKind::Created);
        assert_eq!(changes[0].path, p("/s/quiet"));
        assert_eq!(changes[1].kind, ChangeKind::Rescan);
        assert_eq!(changes[1].path, p("/r"));
        assert_eq!(changes[1].message.as_deref(), Some(COLLAPSED_REASON));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_renames() {
        let mut batch = batch(10);
        let now = Instant::now();
        for tracker in 0..10_000 {
            batch.push(
                0,
                Observation::Renamed {
                    tracker,
                    from: p(&format!("/r/a{tracker}")),
                    to: p(&format!("/r/b{tracker}")),
                },
                now,
            );
        }
        assert!(
            batch.entries.len() <= 21,
            "entries: {}",
            batch.entries.len()
        );
        let changes = batch.take().resolve(|_, _| false, |_| false);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, ChangeKind::Rescan);
    }

    #[test]
    fn root_lost_drops_removals_of_the_same_batch() {
        let mut batch = batch(100);
        let now = Instant::now();
        batch.push(0, simple(ChangeKind::Removed, "/r/a.mkv"), now);
        batch.push(0, simple(ChangeKind::Created, "/r/b.mkv"), now);
        batch.push(
            0,
            Observation::RootLost {
                kind: ChangeKind::RootMissing,
                message: "root was deleted".into(),
            },
            now,
        );
        assert_eq!(
            resolve(&mut batch),
            vec![
                (ChangeKind::Created, "/r/b.mkv".into(), None),
                (ChangeKind::RootMissing, "/r".into(), None),
            ]
        );
    }

    #[test]
    fn watch_errors_past_the_cap_are_counted_in_one_entry() {
        let mut batch = batch(10_000);
        let now = Instant::now();
        for index in 0..(MAX_ERRORS_PER_ROOT + 5) {
            batch.push(
                0,
                Observation::WatchError {
                    path: p(&format!("/r/d{index}")),
                    message: "permission denied".into(),
                },
                now,
            );
        }
        let changes = batch.take().resolve(|_, _| false, |_| false);
        assert_eq!(changes.len(), MAX_ERRORS_PER_ROOT + 1);
        let last = &changes[MAX_ERRORS_PER_ROOT];
        assert_eq!(last.path, p("/r"));
        assert!(last
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("5 more folders"));
    }

    #[test]
    fn quiet_time_is_short_for_moves_and_renames() {
        let step = Duration::from_millis(50);
        let settled = Duration::from_millis(5);
        let now = Instant::now();
        let mut batch = batch(100);
        batch.push(0, Observation::RenameTo(p("/r/in.mkv")), now);
        batch.push(
            0,
            Observation::Renamed {
                tracker: 4,
                from: p("/r/a.mkv"),
                to: p("/r/b.mkv"),
            },
            now,
        );
        batch.push(
            0,
            Observation::Rescan {
                path: p("/r/dir"),
                reason: "test".into(),
            },
            now,
        );

        assert_eq!(batch.quiet_time(step, settled), settled);
        assert!(batch.is_ready(now + settled, settled, Duration::from_secs(1)));
    }

    #[test]
    fn full_step_while_files_written() {
        let step = Duration::from_millis(50);
        let settled = Duration::from_millis(5);
        let now = Instant::now();
        for kind in [
            ChangeKind::Created,
            ChangeKind::Modified,
            ChangeKind::ClosedWrite,
            ChangeKind::Removed,
        ] {
            let mut batch = batch(100);
            batch.push(0, Observation::RenameTo(p("/r/in.mkv")), now);
            batch.push(0, simple(kind, "/r/copying.mkv"), now);

            assert_eq!(batch.quiet_time(step, settled), step, "{kind:?}");
            batch.take();
            assert_eq!(batch.quiet_time(step, settled), settled, "{kind:?}");
        }
    }

    #[test]
    fn full_step_for_many_moves() {
        let step = Duration::from_millis(50);
        let settled = Duration::from_millis(5);
        let now = Instant::now();
        let mut batch = batch(1000);
        for index in 0..MAX_SETTLED_ENTRIES {
            batch.push(0, Observation::RenameTo(p(&format!("/r/{index}.mkv"))), now);
        }
        assert_eq!(batch.quiet_time(step, settled), settled);

        batch.push(0, Observation::RenameTo(p("/r/one-more.mkv")), now);

        assert_eq!(batch.quiet_time(step, settled), step);
    }

    #[test]
    fn full_step_until_rename_paired() {
        let step = Duration::from_millis(50);
        let settled = Duration::from_millis(5);
        let now = Instant::now();
        let mut batch = batch(100);
        batch.push(
            0,
            Observation::RenameFrom {
                tracker: 9,
                path: p("/r/a.mkv"),
            },
            now,
        );
        batch.push(0, Observation::RenameTo(p("/r/b.mkv")), now);
        assert_eq!(batch.quiet_time(step, settled), step);

        batch.push(
            0,
            Observation::Renamed {
                tracker: 9,
                from: p("/r/a.mkv"),
                to: p("/r/b.mkv"),
            },
            now,
        );
        assert_eq!(batch.quiet_time(step, settled), settled);
    }

    #[test]
    fn readiness_follows_step_and_debounce() {
        let mut batch = batch(100);
        let start = Instant::now();
        let step = Duration::from_millis(50);
        let debounce = Duration::from_millis(500);
        assert!(!batch.is_ready(start, step, debounce));
        batch.push(0, simple(ChangeKind::Created, "/r/a"), start);
        assert!(!batch.is_ready(start + Duration::from_millis(10), step, debounce));
        assert!(batch.is_ready(start + step, step, debounce));
        for millis in (40..=480).step_by(40) {
            batch.push(
                0,
                simple(ChangeKind::Modified, "/r/a"),
                start + Duration::from_millis(millis),
            );
        }
        assert!(!batch.is_ready(start + Duration::from_millis(490), step, debounce));
        assert!(batch.is_ready(start + debounce, step, debounce));
        assert_eq!(batch.ready_at(step, debounce), Some(start + debounce));
    }
}

//! Tests of the watcher against real folders in the system's temporary directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "reelwatch-watch-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn builder(root: &Path) -> WatcherBuilder {
    WatcherBuilder::new([root])
        .step(Duration::from_millis(30))
        .debounce(Duration::from_millis(300))
        .root_check_interval(Duration::from_millis(100))
        .poll_interval(Duration::from_millis(100))
}

/// Collects batches until `done` holds for everything seen, or ten seconds pass.
fn collect_until(watcher: &Watcher, done: impl Fn(&[Change]) -> bool) -> Vec<Change> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline && !done(&seen) {
        seen.extend(watcher.wait(Duration::from_millis(200)));
    }
    seen
}

fn has(changes: &[Change], kind: ChangeKind, path: &Path) -> bool {
    changes
        .iter()
        .any(|change| change.kind == kind && change.path == path)
}

#[test]
fn file_lifecycle_is_reported_with_the_right_kinds() {
    let dir = TempDir::new();
    let watcher = builder(&dir.0).build().unwrap();
    assert_eq!(watcher.roots()[0].state, RootState::Watching);
    let file = dir.0.join("a.mkv");
    fs::write(&file, b"data").unwrap();
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::ClosedWrite, &file));
    assert!(has(&seen, ChangeKind::Created, &file), "{seen:?}");
    assert!(has(&seen, ChangeKind::ClosedWrite, &file), "{seen:?}");

    let renamed = dir.0.join("b.mkv");
    fs::rename(&file, &renamed).unwrap();
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::Renamed, &file));
    let rename = seen
        .iter()
        .find(|change| change.kind == ChangeKind::Renamed)
        .unwrap();
    assert_eq!(rename.target.as_deref(), Some(renamed.as_path()));

    fs::remove_file(&renamed).unwrap();
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::Removed, &renamed));
    assert!(has(&seen, ChangeKind::Removed, &renamed), "{seen:?}");
}

#[test]
fn injected_overflow_becomes_rescan_of_the_root() {
    let dir = TempDir::new();
    let watcher = builder(&dir.0).build().unwrap();
    watcher.inject(Fault::Overflow(None));
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::Rescan, &dir.0));
    let rescan = seen
        .iter()
        .find(|change| change.kind == ChangeKind::Rescan)
        .unwrap();
    assert_eq!(rescan.message.as_deref(), Some(map::OVERFLOW_REASON));
}

#[test]
fn watch_limit_switches_the_root_to_polling() {
    let dir = TempDir::new();
    let watcher = builder(&dir.0).build().unwrap();
    watcher.inject(Fault::WatchLimit(0));
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::Rescan, &dir.0));
    assert!(has(&seen, ChangeKind::WatchError, &dir.0), "{seen:?}");
    assert_eq!(watcher.roots()[0].state, RootState::Polling);
    let file = dir.0.join("later.mkv");
    fs::write(&file, b"x").unwrap();
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::Created, &file));
    assert!(has(&seen, ChangeKind::Created, &file), "{seen:?}");
}

#[test]
fn deleted_root_is_missing_and_comes_back() {
    let dir = TempDir::new();
    let root = dir.0.join("root");
    fs::create_dir(&root).unwrap();
    let watcher = builder(&root).build().unwrap();
    fs::remove_dir(&root).unwrap();
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::RootMissing, &root));
    assert!(has(&seen, ChangeKind::RootMissing, &root), "{seen:?}");
    assert_eq!(watcher.roots()[0].state, RootState::Missing);

    fs::create_dir(&root).unwrap();
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::Rescan, &root));
    assert!(has(&seen, ChangeKind::Rescan, &root), "{seen:?}");
    assert_eq!(watcher.roots()[0].state, RootState::Watching);
}

#[test]
fn missing_root_at_start_is_reported_in_the_first_batch() {
    let dir = TempDir::new();
    let root = dir.0.join("absent");
    let watcher = builder(&root).build().unwrap();
    assert_eq!(watcher.roots()[0].state, RootState::Missing);
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::RootMissing, &root));
    assert!(has(&seen, ChangeKind::RootMissing, &root), "{seen:?}");
}

#[test]
fn relative_and_overlapping_roots_are_rejected() {
    let relative = WatcherBuilder::new(["media"]).build().unwrap_err();
    assert!(
        relative.message().contains("not an absolute path"),
        "{relative}"
    );
    let overlap = WatcherBuilder::new(["/media", "/media/films"])
        .build()
        .unwrap_err();
    assert!(overlap.message().contains("overlap"), "{overlap}");
}

#[test]
fn folder_created_and_filled_at_once_is_rescanned() {
    let dir = TempDir::new();
    let watcher = builder(&dir.0).build().unwrap();
    let folder = dir.0.join("season");
    fs::create_dir_all(folder.join("extras")).unwrap();
    for index in 0..200 {
        fs::write(folder.join(format!("e{index}.mkv")), b"x").unwrap();
    }
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::Rescan, &folder));
    assert!(has(&seen, ChangeKind::Created, &folder), "{seen:?}");
    assert!(has(&seen, ChangeKind::Rescan, &folder), "{seen:?}");
}

#[test]
fn kernel_queue_overflow_is_reported_as_rescan() {
    let Some(limit) = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
    else {
        eprintln!("skipped: /proc/sys/fs/inotify/max_queued_events is not readable");
        return;
    };
    let dir = TempDir::new();
    let watcher = builder(&dir.0).build().unwrap();
    watcher.inject(Fault::PauseDelivery(true));
    // Each new file queues IN_CREATE and IN_CLOSE_WRITE, so `limit` files queue twice the limit.
    for index in 0..limit {
        fs::File::create(dir.0.join(format!("f{index}"))).unwrap();
    }
    watcher.inject(Fault::PauseDelivery(false));
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::Rescan, &dir.0));
    let rescan = seen
        .iter()
        .find(|change| change.kind == ChangeKind::Rescan && change.path == dir.0);
    assert_eq!(
        rescan.and_then(|change| change.message.as_deref()),
        Some(map::OVERFLOW_REASON),
        "{} changes, none a rescan of the root",
        seen.len()
    );
}

#[test]
fn kinds_and_states_have_stable_names() {
    let names: Vec<&str> = ChangeKind::ALL.iter().map(|kind| kind.as_str()).collect();
    assert_eq!(
        names,
        [
            "created",
            "modified",
            "closed_write",
            "removed",
            "renamed",
            "rescan",
            "watch_error",
            "root_missing",
            "unmounted",
        ]
    );
    assert_eq!(RootState::Watching.as_str(), "watching");
    assert_eq!(RootState::Polling.as_str(), "polling");
    assert_eq!(RootState::Missing.as_str(), "missing");
    assert_eq!(RootState::Error.as_str(), "error");
}

#[test]
fn invalid_settings_are_rejected() {
    let no_roots = WatcherBuilder::new(Vec::<PathBuf>::new())
        .build()
        .unwrap_err();
    assert!(no_roots.message().contains("no roots"), "{no_roots}");

    let parent = WatcherBuilder::new(["/media/../etc"]).build().unwrap_err();
    assert!(parent.message().contains("'..'"), "{parent}");

    let zero_step = WatcherBuilder::new(["/media"])
        .step(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        zero_step
            .message()
            .contains("step must be greater than zero"),
        "{zero_step}"
    );

    let zero_pending = WatcherBuilder::new(["/media"])
        .max_pending(0)
        .build()
        .unwrap_err();
    assert!(
        zero_pending.message().contains("max pending"),
        "{zero_pending}"
    );
}

#[test]
fn file_as_root_is_an_error_state() {
    let dir = TempDir::new();
    let file = dir.0.join("not-a-folder.mkv");
    fs::write(&file, b"x").unwrap();

    let watcher = builder(&file).build().unwrap();

    let root = &watcher.roots()[0];
    assert_eq!(root.state, RootState::Error);
    assert_eq!(root.message.as_deref(), Some("the root is not a folder"));
}

#[test]
fn forced_polling_reports_new_files() {
    let dir = TempDir::new();
    let watcher = builder(&dir.0).force_polling(true).build().unwrap();
    assert_eq!(watcher.roots()[0].state, RootState::Polling);

    let file = dir.0.join("polled.mkv");
    fs::write(&file, b"x").unwrap();
    let seen = collect_until(&watcher, |seen| has(seen, ChangeKind::Created, &file));

    assert!(has(&seen, ChangeKind::Created, &file), "{seen:?}");
}

#[test]
fn closed_watcher_reports_closed() {
    let dir = TempDir::new();
    let watcher = builder(&dir.0).build().unwrap();
    assert!(!watcher.is_closed());

    watcher.close();

    assert!(watcher.is_closed());
    assert!(format!("{watcher:?}").contains("Watcher"));
}

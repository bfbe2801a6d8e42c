//! Maps notify's events and errors onto the watcher's observations.
//!
//! Pure functions of the event and the root path, so every mapping is unit-tested with
//! synthetic events. The two rules that matter most: an event without a path is never
//! dropped (it becomes a rescan of the root), and an error never ends the watch (it becomes a
//! `watch_error` plus a rescan of what it hid).

use std::path::{Path, PathBuf};

use notify::event::{
    AccessKind, AccessMode, CreateKind, EventKind, Flag, ModifyKind, RemoveKind, RenameMode,
};
use notify::{Error as NotifyError, ErrorKind as NotifyErrorKind, Event};

use super::batch::Observation;
use super::ChangeKind;

/// Reason given with the rescan that follows a kernel queue overflow.
pub(crate) const OVERFLOW_REASON: &str = "event queue overflowed; changes were lost";

/// The `info` notify 9 attaches to the removal event that inotify's `IN_UNMOUNT` produces.
const UNMOUNT_INFO: &str = "unmount";

/// What one backend message means for the watcher.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Mapped {
    /// Observations for the batch.
    Observed(Vec<Observation>),
    /// The per-user inotify watch limit stopped the watch at `path`.
    WatchLimit(PathBuf),
}

/// Maps one message of a native backend watching `root`.
pub(crate) fn map_notify(root: &Path, message: Result<Event, NotifyError>) -> Mapped {
    match message {
        Ok(event) => Mapped::Observed(map_event(root, event)),
        Err(error) => map_error(root, &error),
    }
}

fn map_event(root: &Path, event: Event) -> Vec<Observation> {
    if event.flag() == Some(Flag::Rescan) || event.paths.is_empty() {
        return rescan_all(root, &event.paths, OVERFLOW_REASON);
    }
    let tracker = event.tracker();
    let is_unmount = event.info() == Some(UNMOUNT_INFO);
    let paths = event.paths.into_iter();
    let simple = |kind, paths: std::vec::IntoIter<PathBuf>| {
        paths.map(|path| Observation::Simple(kind, path)).collect()
    };
    match event.kind {
        EventKind::Create(CreateKind::Folder) => paths
            .flat_map(|path| {
                [
                    Observation::Simple(ChangeKind::Created, path.clone()),
                    Observation::Rescan {
                        path,
                        reason: "folder created; files written before its watch was added have no events"
                            .to_owned(),
                    },
                ]
            })
            .collect(),
        EventKind::Create(_) => simple(ChangeKind::Created, paths),
        EventKind::Modify(ModifyKind::Name(mode)) => map_rename(root, mode, tracker, paths),
        EventKind::Remove(RemoveKind::Other) if is_unmount => paths
            .map(|path| {
                if path == root {
                    root_lost(ChangeKind::Unmounted, "the root's filesystem was unmounted")
                } else {
                    Observation::Unmounted(path)
                }
            })
            .collect(),
        EventKind::Remove(_) => paths
            .map(|path| {
                if path == root {
                    root_lost(ChangeKind::RootMissing, "the root was deleted")
                } else {
                    Observation::Simple(ChangeKind::Removed, path)
                }
            })
            .collect(),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
            simple(ChangeKind::ClosedWrite, paths)
        }
        // Opens and read-only closes are not subscribed; ignore them if a backend sends them.
        EventKind::Access(_) => Vec::new(),
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => {
            simple(ChangeKind::Modified, paths)
        }
    }
}

fn map_rename(
    root: &Path,
    mode: RenameMode,
    tracker: Option<usize>,
    paths: std::vec::IntoIter<PathBuf>,
) -> Vec<Observation> {
    let paths: Vec<PathBuf> = paths.collect();
    match (mode, tracker, paths.as_slice()) {
        // inotify's IN_MOVE_SELF, sent only for the root itself: the old inode now lives
        // elsewhere, and its watch would report the new location's changes under the old path.
        (RenameMode::From, _, [path]) if path == root => {
            vec![root_lost(
                ChangeKind::RootMissing,
                "the root was moved or renamed",
            )]
        }
        (RenameMode::From, Some(tracker), [path]) => vec![Observation::RenameFrom {
            tracker,
            path: path.clone(),
        }],
        (RenameMode::To, _, [path]) => vec![Observation::RenameTo(path.clone())],
        (RenameMode::Both, Some(tracker), [from, to]) => vec![Observation::Renamed {
            tracker,
            from: from.clone(),
            to: to.clone(),
        }],
        // IN_MOVE_SELF of a folder below the root: its parent's watch already reported the
        // move with a tracker, so this copy adds nothing.
        (RenameMode::From, None, _) => Vec::new(),
        // Other modes carry no direction.
        _ => paths
            .into_iter()
            .map(|path| Observation::Simple(ChangeKind::Modified, path))
            .collect(),
    }
}

fn map_error(root: &Path, error: &NotifyError) -> Mapped {
    let path = error
        .paths
        .first()
        .cloned()
        .unwrap_or_else(|| root.to_path_buf());
    let message = match error.kind {
        NotifyErrorKind::MaxFilesWatch => return Mapped::WatchLimit(path),
        // A folder removed between being listed and being watched; its removal has an event.
        NotifyErrorKind::PathNotFound => return Mapped::Observed(Vec::new()),
        NotifyErrorKind::Io(ref io) => describe_io(io),
        NotifyErrorKind::Generic(ref text) => text.to_lowercase(),
        NotifyErrorKind::WatchNotFound => "watch not found".to_owned(),
        NotifyErrorKind::InvalidConfig(_) => "invalid watcher configuration".to_owned(),
    };
    Mapped::Observed(vec![
        Observation::WatchError {
            path: path.clone(),
            message: format!("cannot watch this folder: {message}"),
        },
        Observation::Rescan {
            path,
            reason: "the folder could not be watched; changes in it have no events".to_owned(),
        },
    ])
}

/// Describes an I/O error in lowercase, naming the limit to raise where there is one.
pub(crate) fn describe_io(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::EMFILE) => {
            "too many inotify instances or open files; raise fs.inotify.max_user_instances \
             or the open file limit"
                .to_owned()
        }
        Some(libc::ENOSPC) => {
            "inotify watch limit reached; raise fs.inotify.max_user_watches".to_owned()
        }
        _ => error.to_string().to_lowercase(),
    }
}

fn rescan_all(root: &Path, paths: &[PathBuf], reason: &str) -> Vec<Observation> {
    if paths.is_empty() || paths.iter().any(|path| path == root) {
        return vec![Observation::RootRescan {
            reason: reason.to_owned(),
        }];
    }
    paths
        .iter()
        .map(|path| Observation::Rescan {
            path: path.clone(),
            reason: reason.to_owned(),
        })
        .collect()
}

fn root_lost(kind: ChangeKind, message: &str) -> Observation {
    Observation::RootLost {
        kind,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, MetadataKind};

    const ROOT: &str = "/lib";

    fn map(event: Event) -> Vec<Observation> {
        match map_notify(Path::new(ROOT), Ok(event)) {
            Mapped::Observed(observations) => observations,
            Mapped::WatchLimit(path) => panic!("unexpected watch limit at {}", path.display()),
        }
    }

    fn at(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn overflow_without_path_becomes_rescan_of_the_root() {
        let event = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(
            map(event),
            vec![Observation::RootRescan {
                reason: OVERFLOW_REASON.into()
            }]
        );
    }

    #[test]
    fn unflagged_event_without_path_is_not_dropped() {
        let observations = map(Event::new(EventKind::Any));
        assert!(matches!(
            observations.as_slice(),
            [Observation::RootRescan { .. }]
        ));
    }

    #[test]
    fn created_folder_is_created_and_rescanned() {
        let observations = map(at(EventKind::Create(CreateKind::Folder), "/lib/new"));
        assert_eq!(observations.len(), 2);
        assert_eq!(
            observations[0],
            Observation::Simple(ChangeKind::Created, "/lib/new".into())
        );
        assert!(
            matches!(&observations[1], Observation::Rescan { path, .. } if path == Path::new("/lib/new"))
        );
    }

    #[test]
    fn data_and_metadata_changes_are_modified() {
        for kind in [
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ] {
            assert_eq!(
                map(at(kind, "/lib/a.mkv")),
                vec![Observation::Simple(
                    ChangeKind::Modified,
                    "/lib/a.mkv".into()
                )]
            );
        }
    }

    #[test]
    fn close_after_write_is_closed_write_and_open_is_ignored() {
        let closed = at(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/lib/a.mkv",
        );
        assert_eq!(
            map(closed),
            vec![Observation::Simple(
                ChangeKind::ClosedWrite,
                "/lib/a.mkv".into()
            )]
        );
        let opened = at(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "/lib/a.mkv",
        );
        assert_eq!(map(opened), Vec::new());
    }

    #[test]
    fn rename_halves_and_pair_keep_their_tracker() {
        let from = at(
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            "/lib/a",
        )
        .set_tracker(9);
        assert_eq!(
            map(from),
            vec![Observation::RenameFrom {
                tracker: 9,
                path: "/lib/a".into()
            }]
        );
        let both = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/lib/a".into())
            .add_path("/lib/b".into())
            .set_tracker(9);
        assert_eq!(
            map(both),
            vec![Observation::Renamed {
                tracker: 9,
                from: "/lib/a".into(),
                to: "/lib/b".into()
            }]
        );
    }

    #[test]
    fn moved_folder_self_event_is_dropped() {
        let event = at(
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            "/lib/season",
        );
        assert_eq!(map(event), Vec::new());
    }

    #[test]
    fn root_deleted_moved_or_unmounted_is_root_lost() {
        let deleted = at(EventKind::Remove(RemoveKind::Folder), ROOT);
        assert!(matches!(
            map(deleted).as_slice(),
            [Observation::RootLost {
                kind: ChangeKind::RootMissing,
                ..
            }]
        ));
        let moved = at(EventKind::Modify(ModifyKind::Name(RenameMode::From)), ROOT);
        assert!(matches!(
            map(moved).as_slice(),
            [Observation::RootLost {
                kind: ChangeKind::RootMissing,
                ..
            }]
        ));
        let unmounted = at(EventKind::Remove(RemoveKind::Other), ROOT).set_info("unmount");
        assert!(matches!(
            map(unmounted).as_slice(),
            [Observation::RootLost {
                kind: ChangeKind::Unmounted,
                ..
            }]
        ));
    }

    #[test]
    fn unmount_below_the_root_is_unmounted_for_that_folder() {
        let event = at(EventKind::Remove(RemoveKind::Other), "/lib/disk2").set_info("unmount");
        assert_eq!(
            map(event),
            vec![Observation::Unmounted("/lib/disk2".into())]
        );
    }

    #[test]
    fn watch_limit_error_is_reported_with_its_path() {
        let error = NotifyError::new(NotifyErrorKind::MaxFilesWatch).add_path("/lib/deep".into());
        assert_eq!(
            map_notify(Path::new(ROOT), Err(error)),
            Mapped::WatchLimit("/lib/deep".into())
        );
    }

    #[test]
    fn unwatchable_folder_is_watch_error_and_rescan() {
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        let error = NotifyError::io(io).add_path("/lib/private".into());
        let Mapped::Observed(observations) = map_notify(Path::new(ROOT), Err(error)) else {
            panic!("expected observations");
        };
        assert!(matches!(
            &observations[0],
            Observation::WatchError { path, message }
                if path == Path::new("/lib/private") && message.contains("permission denied")
        ));
        assert!(
            matches!(&observations[1], Observation::Rescan { path, .. } if path == Path::new("/lib/private"))
        );
    }

    #[test]
    fn error_without_path_is_attributed_to_the_root() {
        let error = NotifyError::generic("Reading inotify failed");
        let Mapped::Observed(observations) = map_notify(Path::new(ROOT), Err(error)) else {
            panic!("expected observations");
        };
        assert!(
            matches!(&observations[1], Observation::Rescan { path, .. } if path == Path::new(ROOT))
        );
    }

    #[test]
    fn vanished_folder_during_the_walk_is_not_an_error() {
        let error = NotifyError::path_not_found().add_path("/lib/gone".into());
        assert_eq!(
            map_notify(Path::new(ROOT), Err(error)),
            Mapped::Observed(Vec::new())
        );
    }
}

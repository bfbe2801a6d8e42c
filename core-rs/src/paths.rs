//! Path checks: syntax limits, symlink resolution and containment under the
//! allowed roots, compared by path components.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, ErrorKind, Result};

/// Maximum path length Linux accepts, in bytes (`PATH_MAX`, including the final NUL).
pub const PATH_MAX: usize = 4096;
/// Maximum file name length Linux file systems accept, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Rejects a path that no system call could accept: empty, containing a NUL
/// byte, longer than [`PATH_MAX`] or with a component longer than [`NAME_MAX`].
pub fn check_syntax(path: &Path) -> Result<()> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(Error::new(ErrorKind::InvalidPath, "the path is empty"));
    }
    if let Some(index) = bytes.iter().position(|&b| b == 0) {
        return Err(Error::new(
            ErrorKind::InvalidPath,
            format!("the path contains a NUL byte at position {index}"),
        ));
    }
    if bytes.len() >= PATH_MAX {
        return Err(Error::new(
            ErrorKind::InvalidPath,
            format!(
                "the path is {} bytes long; the limit is {} (PATH_MAX)",
                bytes.len(),
                PATH_MAX - 1
            ),
        ));
    }
    for part in bytes.split(|&b| b == b'/') {
        if part.len() > NAME_MAX {
            let shown = String::from_utf8_lossy(&part[..40]);
            return Err(Error::new(
                ErrorKind::InvalidPath,
                format!(
                    "the path component '{shown}...' is {} bytes long; the limit is {NAME_MAX} (NAME_MAX)",
                    part.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Resolves symlinks, `.` and `..` in `path`. A path that does not exist yet
/// resolves its longest existing parent and appends the rest, so a file that
/// was just deleted still maps to where it was.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    match absolute.canonicalize() {
        Ok(resolved) => return Ok(resolved),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(Error::from(err).with_path(path)),
    }
    // Find the longest prefix that exists, resolve it, then append the rest.
    let components: Vec<Component<'_>> = absolute.components().collect();
    for split in (1..components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        match prefix.canonicalize() {
            Ok(mut resolved) => {
                resolved.extend(&components[split..]);
                return Ok(normalize(&resolved));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::from(err).with_path(path)),
        }
    }
    Err(Error::new(
        ErrorKind::NotFound,
        "no part of the path exists",
    ))
}

/// Removes `.` and applies `..` lexically; used only on the part of a path
/// that does not exist, where no symlink can intervene.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether `path` is `root` or lies below it, compared by whole components,
/// so `/media/tv-old` is not under `/media/tv`. Both must be resolved.
#[must_use]
pub fn is_under(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

/// Whether `path` lies under any of `roots`.
#[must_use]
pub fn is_under_any(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|root| is_under(path, root))
}

/// Resolves each root once, keeping a root that cannot be resolved as given
/// so that it still matches paths spelled the same way.
#[must_use]
pub fn canonical_roots(roots: &[PathBuf]) -> Vec<PathBuf> {
    roots
        .iter()
        .map(|root| resolve(root).unwrap_or_else(|_| normalize(root)))
        .collect()
}

/// The result of checking one path: the resolved path where resolution
/// worked, and the error where any check failed.
#[derive(Debug, Clone)]
pub struct PathCheck {
    /// The path with symlinks resolved, when resolution succeeded.
    pub resolved: Option<PathBuf>,
    /// Why the path is rejected, if it is.
    pub error: Option<Error>,
}

/// Checks one path against resolved `roots`: syntax, resolution, containment.
/// An empty `roots` allows nothing.
#[must_use]
pub fn check_path(path: &Path, roots: &[PathBuf]) -> PathCheck {
    if let Err(err) = check_syntax(path) {
        return PathCheck {
            resolved: None,
            error: Some(err),
        };
    }
    let resolved = match resolve(path) {
        Ok(resolved) => resolved,
        Err(err) => {
            return PathCheck {
                resolved: None,
                error: Some(err),
            }
        }
    };
    let error = (!is_under_any(&resolved, roots)).then(|| outside_roots_error(&resolved, roots));
    PathCheck {
        resolved: Some(resolved),
        error,
    }
}

/// Checks many paths in parallel; results keep the input order.
#[must_use]
pub fn check_many(paths: &[PathBuf], roots: &[PathBuf]) -> Vec<PathCheck> {
    let roots = canonical_roots(roots);
    paths
        .par_iter()
        .map(|path| check_path(path, &roots))
        .collect()
}

/// The error for a path that resolves outside every root.
#[must_use]
pub fn outside_roots_error(resolved: &Path, roots: &[PathBuf]) -> Error {
    let listed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Error::new(
        ErrorKind::OutsideRoots,
        format!(
            "resolves to {}, which is outside the allowed roots [{}]",
            resolved.display(),
            listed.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn sibling_with_shared_prefix_is_not_under_root() {
        assert!(is_under(
            Path::new("/media/tv/a.mkv"),
            Path::new("/media/tv")
        ));
        assert!(is_under(Path::new("/media/tv"), Path::new("/media/tv")));
        assert!(!is_under(
            Path::new("/media/tv-old/a.mkv"),
            Path::new("/media/tv")
        ));
    }

    #[test]
    fn syntax_rejects_empty_nul_and_long_paths() {
        let kind = |p: &[u8]| {
            check_syntax(Path::new(&OsString::from_vec(p.to_vec())))
                .unwrap_err()
                .kind()
        };
        assert_eq!(kind(b""), ErrorKind::InvalidPath);
        assert_eq!(kind(b"/a\0b"), ErrorKind::InvalidPath);
        assert_eq!(kind(&[b'a'; 300]), ErrorKind::InvalidPath);
        let mut long = Vec::new();
        for _ in 0..50 {
            long.extend_from_slice(b"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        }
        assert_eq!(kind(&long), ErrorKind::InvalidPath);
        assert!(check_syntax(Path::new("/media/tv/a.mkv")).is_ok());
    }

    #[test]
    fn missing_file_resolves_through_its_parent() {
        let dir = std::env::temp_dir();
        let resolved = resolve(&dir.join("reelwatch-no-such-dir/x/../y.mkv")).unwrap();
        let expected = dir
            .canonicalize()
            .unwrap()
            .join("reelwatch-no-such-dir/y.mkv");
        assert_eq!(resolved, expected);
    }

    #[test]
    fn check_path_reports_outside_roots_with_the_resolved_path() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let roots = vec![dir.join("reelwatch-root")];
        let check = check_path(&dir.join("reelwatch-root-old/a.mkv"), &roots);
        assert_eq!(check.error.unwrap().kind(), ErrorKind::OutsideRoots);
        assert_eq!(check.resolved, Some(dir.join("reelwatch-root-old/a.mkv")));
        let inside = check_path(&dir.join("reelwatch-root/a.mkv"), &roots);
        assert!(inside.error.is_none());
    }

    #[test]
    fn relative_path_resolves_from_the_working_directory() {
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();

        let resolved = resolve(Path::new("reelwatch-no-such-file.mkv")).unwrap();

        assert_eq!(resolved, cwd.join("reelwatch-no-such-file.mkv"));
    }

    #[test]
    fn check_many_reports_each_failure_in_order() {
        let dir = std::env::temp_dir()
            .canonicalize()
            .unwrap()
            .join(format!("reelwatch-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("clip.mkv");
        std::fs::write(&file, b"x").unwrap();
        let paths = vec![
            file.clone(),
            PathBuf::from(OsString::from_vec(b"/a\0b".to_vec())),
            file.join("below-a-file.mkv"),
            PathBuf::from("/"),
        ];

        let checks = check_many(&paths, std::slice::from_ref(&dir));

        assert!(checks[0].error.is_none());
        assert_eq!(checks[0].resolved.as_deref(), Some(file.as_path()));
        let kinds: Vec<_> = checks[1..]
            .iter()
            .map(|check| check.error.as_ref().unwrap().kind())
            .collect();
        assert_eq!(kinds[0], ErrorKind::InvalidPath);
        let below_file = checks[2].error.as_ref().unwrap().message();
        assert!(below_file.contains("not a directory"), "{below_file}");
        assert_eq!(kinds[2], ErrorKind::OutsideRoots);
        assert!(checks[1].resolved.is_none());
        assert!(checks[2].resolved.is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

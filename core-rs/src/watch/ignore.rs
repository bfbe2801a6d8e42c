//! Glob patterns for paths the watcher leaves out.

use std::path::{Component, Path};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, ErrorKind, Result};

/// Compiled ignore patterns: name patterns match any single name below a root, path patterns
/// (those containing `/`) match the path relative to the root.
#[derive(Debug)]
pub(crate) struct IgnoreSet {
    names: GlobSet,
    paths: GlobSet,
}

impl IgnoreSet {
    /// Compiles `patterns`, rejecting an invalid one with its text and the parser's reason.
    pub(crate) fn new(patterns: &[String]) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for pattern in patterns {
            let compiled = if pattern.contains('/') {
                GlobBuilder::new(pattern.trim_start_matches('/'))
                    .literal_separator(true)
                    .build()
            } else {
                Glob::new(pattern)
            };
            let glob = compiled.map_err(|error| {
                Error::new(
                    ErrorKind::InvalidPath,
                    format!("invalid ignore pattern '{pattern}': {}", error.kind()),
                )
            })?;
            if pattern.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |builder: GlobSetBuilder| {
            builder.build().map_err(|error| {
                Error::new(
                    ErrorKind::InvalidPath,
                    format!("invalid ignore patterns: {error}"),
                )
            })
        };
        Ok(IgnoreSet {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Whether `path`, below `root`, is left out. The root itself and paths outside it never are.
    pub(crate) fn is_ignored(&self, root: &Path, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(root) else {
            return false;
        };
        if relative.as_os_str().is_empty() {
            return false;
        }
        let name_matches = relative.components().any(|component| match component {
            Component::Normal(name) => self.names.is_match(Path::new(name)),
            _ => false,
        });
        name_matches || self.paths.is_match(relative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> IgnoreSet {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        IgnoreSet::new(&patterns).unwrap()
    }

    #[test]
    fn name_patterns_match_any_component_below_the_root() {
        let ignore = set(&[".*", "*.part", "@eaDir"]);
        let root = Path::new("/media/.lib");
        assert!(ignore.is_ignored(root, Path::new("/media/.lib/show/.hidden/a.mkv")));
        assert!(ignore.is_ignored(root, Path::new("/media/.lib/a.mkv.part")));
        assert!(ignore.is_ignored(root, Path::new("/media/.lib/@eaDir/thumb.jpg")));
        assert!(!ignore.is_ignored(root, Path::new("/media/.lib/show/a.mkv")));
        assert!(!ignore.is_ignored(root, root));
    }

    #[test]
    fn path_patterns_match_relative_to_the_root() {
        let ignore = set(&["downloads/incomplete/**"]);
        let root = Path::new("/lib");
        assert!(ignore.is_ignored(root, Path::new("/lib/downloads/incomplete/a.mkv")));
        assert!(!ignore.is_ignored(root, Path::new("/lib/x/downloads/incomplete/a.mkv")));
    }

    #[test]
    fn invalid_pattern_is_rejected_with_its_text() {
        let error = IgnoreSet::new(&["[abc".to_owned()]).unwrap_err();
        assert!(error.message().contains("'[abc'"), "{}", error.message());
    }
}

//! The crate's error type: a kind that callers branch on, plus a message for people.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, in terms a caller can act on.
///
/// The Python layer receives [`ErrorKind::as_str`] as a stable string, so a
/// variant's string never changes once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is readable but its container is not one the core parses.
    Unsupported,
    /// The container's structure contradicts itself or the format.
    Corrupt,
    /// The file ends before its structure does: still being written, or cut short.
    Incomplete,
    /// The container holds no video stream.
    NoVideo,
    /// The file has zero bytes.
    Empty,
    /// The path does not exist (any more).
    NotFound,
    /// The operating system denied access.
    PermissionDenied,
    /// The path is a directory, FIFO, socket or device, not a regular file.
    NotAFile,
    /// The path itself is invalid: empty, contains a NUL byte, or is too long.
    InvalidPath,
    /// The path resolves outside every allowed root.
    OutsideRoots,
    /// Any other I/O failure; the message carries the OS error.
    Io,
    /// A bug in the core, such as a caught panic.
    Internal,
}

impl ErrorKind {
    /// Returns the stable `snake_case` name that crosses into Python.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Incomplete => "incomplete",
            ErrorKind::NoVideo => "no_video",
            ErrorKind::Empty => "empty",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotAFile => "not_a_file",
            ErrorKind::InvalidPath => "invalid_path",
            ErrorKind::OutsideRoots => "outside_roots",
            ErrorKind::Io => "io",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error with its kind, a lowercase message and, where known, the path.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    path: Option<PathBuf>,
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Creates an error of `kind` with a message (lowercase, no final period).
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            path: None,
        }
    }

    /// Shorthand for [`ErrorKind::Corrupt`].
    #[must_use]
    pub fn corrupt(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, message)
    }

    /// Shorthand for [`ErrorKind::Incomplete`].
    #[must_use]
    pub fn incomplete(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Incomplete, message)
    }

    /// Attaches the path the error is about, unless one is already set.
    #[must_use]
    pub fn with_path(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }

    /// The error's kind.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the path.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The path the error is about, if known.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {}", path.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        // An unexpected end of file while parsing means the container was cut
        // short, which the daemon treats as "retry later", not as an I/O fault.
        let kind = match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::UnexpectedEof => ErrorKind::Incomplete,
            io::ErrorKind::IsADirectory => ErrorKind::NotAFile,
            _ => ErrorKind::Io,
        };
        Error::new(kind, err.to_string().to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_stable_names() {
        let cases = [
            (ErrorKind::Unsupported, "unsupported"),
            (ErrorKind::Corrupt, "corrupt"),
            (ErrorKind::Incomplete, "incomplete"),
            (ErrorKind::NoVideo, "no_video"),
            (ErrorKind::Empty, "empty"),
            (ErrorKind::NotFound, "not_found"),
            (ErrorKind::PermissionDenied, "permission_denied"),
            (ErrorKind::NotAFile, "not_a_file"),
            (ErrorKind::InvalidPath, "invalid_path"),
            (ErrorKind::OutsideRoots, "outside_roots"),
            (ErrorKind::Io, "io"),
            (ErrorKind::Internal, "internal"),
        ];
        for (kind, name) in cases {
            assert_eq!(kind.as_str(), name);
        }
    }

    #[test]
    fn display_prefixes_the_first_path() {
        let err = Error::corrupt("bad box")
            .with_path(Path::new("/media/a.mp4"))
            .with_path(Path::new("/media/b.mp4"));

        assert_eq!(err.to_string(), "/media/a.mp4: bad box");
        assert_eq!(err.path(), Some(Path::new("/media/a.mp4")));
        assert_eq!(Error::incomplete("cut short").to_string(), "cut short");
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let cases = [
            (io::ErrorKind::NotFound, ErrorKind::NotFound),
            (io::ErrorKind::PermissionDenied, ErrorKind::PermissionDenied),
            (io::ErrorKind::UnexpectedEof, ErrorKind::Incomplete),
            (io::ErrorKind::IsADirectory, ErrorKind::NotAFile),
            (io::ErrorKind::TimedOut, ErrorKind::Io),
        ];
        for (io_kind, kind) in cases {
            let err = Error::from(io::Error::new(io_kind, "Failed"));
            assert_eq!(err.kind(), kind, "{io_kind:?}");
            assert_eq!(err.message(), "failed");
        }
    }
}

//! The reelwatch core: header-only probing of video containers, parallel
//! directory walks, partial-content fingerprints and path checks.
//!
//! The pure-Rust library has no Python dependency and is tested with
//! `cargo test`; the `python` feature adds the `reelwatch._core` bindings.

pub mod error;
pub mod file;
pub mod fingerprint;
pub mod paths;
pub mod probe;
pub mod walk;
pub mod watch;

#[cfg(feature = "python")]
mod py;
#[cfg(feature = "python")]
mod py_watch;

pub use error::{Error, ErrorKind, Result};
pub use file::{probe_file, probe_many};

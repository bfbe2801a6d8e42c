//! Header parser for one container family; see the module list in `probe`.

use std::io::{Read, Seek};

use super::reader::Reader;
use super::MediaInfo;
use crate::error::{Error, ErrorKind, Result};

/// Reads the container's headers from offset 0 of `reader`.
pub fn probe<R: Read + Seek>(reader: &mut Reader<R>) -> Result<MediaInfo> {
    let _ = reader;
    Err(Error::new(ErrorKind::Unsupported, "parser not written yet"))
}

//! Header parser for one container family; see the module list in `probe`.

use std::io::{Read, Seek};

use super::reader::Reader;
use super::MediaInfo;
use crate::error::{Error, ErrorKind, Result};

/// Reads the stream from offset 0 of `reader`; `packet_size` is 188, or 192 for M2TS.
pub fn probe<R: Read + Seek>(reader: &mut Reader<R>, packet_size: u16) -> Result<MediaInfo> {
    let _ = (reader, packet_size);
    Err(Error::new(ErrorKind::Unsupported, "parser not written yet"))
}

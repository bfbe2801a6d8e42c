//! A seekable reader that counts what it reads and stops at a fixed budget.
//!
//! Every container parser reads through [`Reader`], so no length field in a
//! hostile file can make the core read or allocate more than the budget.

use std::io::{self, Read, Seek, SeekFrom};

use crate::error::{Error, Result};

/// Bytes one probe may read in total before it gives up.
pub const DEFAULT_READ_BUDGET: u64 = 16 * 1024 * 1024;

/// Wraps a `Read + Seek` source of known length with a read budget.
pub struct Reader<R> {
    inner: R,
    len: u64,
    pos: u64,
    bytes_read: u64,
    budget: u64,
}

impl<R: Read + Seek> Reader<R> {
    /// Creates a reader over `inner`, whose total length is `len` bytes,
    /// positioned at offset 0.
    pub fn new(inner: R, len: u64, budget: u64) -> Self {
        Reader {
            inner,
            len,
            pos: 0,
            bytes_read: 0,
            budget,
        }
    }

    /// The source's total length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the source has no bytes at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The current offset.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Bytes left between the current offset and the end of the source.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Bytes read so far, over all seeks.
    #[must_use]
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Moves to `offset` without reading. Seeking past the end is allowed; the
    /// next read then fails as incomplete.
    pub fn seek_to(&mut self, offset: u64) -> Result<()> {
        self.inner.seek(SeekFrom::Start(offset))?;
        self.pos = offset;
        Ok(())
    }

    /// Skips `count` bytes forward without reading them.
    pub fn skip(&mut self, count: u64) -> Result<()> {
        let target = self
            .pos
            .checked_add(count)
            .ok_or_else(|| Error::corrupt("skip past the largest possible offset"))?;
        self.seek_to(target)
    }

    /// Fills `buf` completely, or fails as incomplete at the end of the source.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let wanted = buf.len() as u64;
        self.charge(wanted)?;
        if wanted > self.remaining() {
            return Err(Error::incomplete(format!(
                "needed {wanted} bytes at offset {} but the file ends at {}",
                self.pos, self.len
            )));
        }
        self.inner.read_exact(buf).map_err(map_eof)?;
        self.pos += wanted;
        Ok(())
    }

    /// Reads up to `buf.len()` bytes, fewer only at the end of the source.
    pub fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize> {
        let count = usize::try_from(self.remaining().min(buf.len() as u64)).unwrap_or(buf.len());
        self.read_exact(&mut buf[..count])?;
        Ok(count)
    }

    /// Reads `count` bytes into a new vector. A `count` above `limit` is
    /// rejected as corrupt before anything is allocated.
    pub fn read_vec(&mut self, count: u64, limit: usize) -> Result<Vec<u8>> {
        if count > limit as u64 {
            return Err(Error::corrupt(format!(
                "element of {count} bytes at offset {} exceeds the limit of {limit}",
                self.pos
            )));
        }
        // The check above bounds `count` by a usize.
        let mut buf = vec![0; usize::try_from(count).unwrap_or(limit)];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Reads one byte.
    pub fn read_u8(&mut self) -> Result<u8> {
        Ok(self.read_array::<1>()?[0])
    }

    /// Reads a big-endian u16.
    pub fn read_u16_be(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.read_array()?))
    }

    /// Reads a big-endian u32.
    pub fn read_u32_be(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.read_array()?))
    }

    /// Reads a big-endian u64.
    pub fn read_u64_be(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.read_array()?))
    }

    /// Reads a little-endian u16.
    pub fn read_u16_le(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.read_array()?))
    }

    /// Reads a little-endian u32.
    pub fn read_u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.read_array()?))
    }

    /// Reads a little-endian u64.
    pub fn read_u64_le(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.read_array()?))
    }

    /// Reads exactly `N` bytes into an array.
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0; N];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn charge(&mut self, count: u64) -> Result<()> {
        let total = self.bytes_read.saturating_add(count);
        if total > self.budget {
            return Err(Error::corrupt(format!(
                "headers need more than the read budget of {} bytes",
                self.budget
            )));
        }
        self.bytes_read = total;
        Ok(())
    }
}

fn map_eof(err: io::Error) -> Error {
    // The file shrank between the length check and the read: it is being rewritten.
    if err.kind() == io::ErrorKind::UnexpectedEof {
        Error::incomplete("the file ended early while its headers were being read")
    } else {
        Error::from(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::io::Cursor;

    #[test]
    fn read_past_end_is_incomplete() {
        let mut reader = Reader::new(Cursor::new(vec![1, 2, 3]), 3, 1024);
        let mut buf = [0; 4];
        let err = reader.read_exact(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Incomplete);
    }

    #[test]
    fn budget_stops_reads() {
        let mut reader = Reader::new(Cursor::new(vec![0; 100]), 100, 10);
        assert!(reader.read_vec(8, 64).is_ok());
        let err = reader.read_vec(8, 64).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert_eq!(reader.bytes_read(), 8);
    }

    #[test]
    fn oversized_length_is_rejected_before_allocation() {
        let mut reader = Reader::new(Cursor::new(vec![0; 16]), 16, 1024);
        let err = reader.read_vec(u64::MAX, 1 << 20).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn integers_read_in_both_byte_orders() {
        let bytes: Vec<u8> = (1..=30).collect();
        let mut reader = Reader::new(Cursor::new(bytes), 30, 1024);

        assert_eq!(reader.read_u8().unwrap(), 0x01);
        assert_eq!(reader.read_u16_be().unwrap(), 0x0203);
        assert_eq!(reader.read_u16_le().unwrap(), 0x0504);
        assert_eq!(reader.read_u32_le().unwrap(), 0x0908_0706);
        assert_eq!(reader.read_u64_be().unwrap(), 0x0A0B_0C0D_0E0F_1011);
        assert_eq!(reader.read_u64_le().unwrap(), 0x1918_1716_1514_1312);
        assert_eq!(reader.position(), 25);
        assert_eq!(reader.remaining(), 5);
        assert!(!reader.is_empty());
    }

    #[test]
    fn skip_past_the_largest_offset_is_corrupt() {
        let mut reader = Reader::new(Cursor::new(vec![0; 8]), 8, 1024);
        reader.seek_to(4).unwrap();

        let err = reader.skip(u64::MAX).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert_eq!(reader.position(), 4);
    }

    #[test]
    fn source_shorter_than_its_length_is_incomplete() {
        // The file shrank after its length was taken: 4 bytes left of 16.
        let mut reader = Reader::new(Cursor::new(vec![0; 4]), 16, 1024);
        let mut buf = [0; 8];

        let err = reader.read_exact(&mut buf).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Incomplete);
        assert!(err.message().contains("ended early"), "{err}");
    }

    #[test]
    fn seeks_cost_nothing() {
        let mut reader = Reader::new(Cursor::new(vec![7; 1000]), 1000, 1024);
        reader.seek_to(996).unwrap();
        assert_eq!(reader.read_u32_be().unwrap(), 0x0707_0707);
        assert_eq!(reader.bytes_read(), 4);
    }
}

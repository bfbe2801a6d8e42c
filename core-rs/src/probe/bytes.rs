//! A bounds-checked cursor over a byte slice that a parser already read
//! through [`super::reader::Reader`].
//!
//! Reads past the end return [`Error::corrupt`] naming the structure, so a
//! length field that lies about a child box or element cannot panic.

use crate::error::{Error, Result};

/// A forward-only cursor over borrowed bytes.
#[derive(Debug, Clone)]
pub struct ByteCursor<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> ByteCursor<'a> {
    /// Creates a cursor over `data`; `what` names the structure in error messages.
    #[must_use]
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        ByteCursor { data, pos: 0, what }
    }

    /// Bytes left after the current position.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The current offset from the start of the slice.
    #[must_use]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Takes the next `count` bytes.
    pub fn take(&mut self, count: usize) -> Result<&'a [u8]> {
        if count > self.remaining() {
            return Err(Error::corrupt(format!(
                "{} is too short: needed {count} bytes at offset {}, {} left",
                self.what,
                self.pos,
                self.remaining()
            )));
        }
        let slice = &self.data[self.pos..self.pos + count];
        self.pos += count;
        Ok(slice)
    }

    /// Takes the rest of the slice.
    pub fn rest(&mut self) -> &'a [u8] {
        let slice = &self.data[self.pos..];
        self.pos = self.data.len();
        slice
    }

    /// Skips `count` bytes.
    pub fn skip(&mut self, count: usize) -> Result<()> {
        self.take(count).map(|_| ())
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16_be(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u24 into a u32.
    pub fn u24_be(&mut self) -> Result<u32> {
        let bytes = self.take(3)?;
        Ok(u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]))
    }

    /// Reads a big-endian u32.
    pub fn u32_be(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian i32.
    pub fn i32_be(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u64.
    pub fn u64_be(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a little-endian u16.
    pub fn u16_le(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u32.
    pub fn u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads exactly `N` bytes into an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_and_stops_at_the_end() {
        let mut cursor = ByteCursor::new(&[0, 1, 0, 0, 0, 2, 9], "test box");
        assert_eq!(cursor.u16_be().unwrap(), 1);
        assert_eq!(cursor.u32_be().unwrap(), 2);
        assert_eq!(cursor.remaining(), 1);
        let err = cursor.u16_be().unwrap_err();
        assert!(err.message().contains("test box is too short"), "{err}");
    }

    #[test]
    fn reads_both_byte_orders_and_24_bit_values() {
        let mut cursor =
            ByteCursor::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0xFF, 0xFF, 0xFF, 0xFE], "box");

        assert_eq!(cursor.u24_be().unwrap(), 0x01_0203);
        assert_eq!(cursor.u16_le().unwrap(), 0x0504);
        assert_eq!(cursor.u32_le().unwrap(), 0x0908_0706);
        assert_eq!(cursor.i32_be().unwrap(), -2);
        assert_eq!(cursor.position(), 13);
    }
}

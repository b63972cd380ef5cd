//! Ring-buffer bytes to a validated raw event. Every check fails with a counted
//! error; nothing here can panic on bad input.

use bytes::Buf;
use tcpwatch_common::{
    ABI_VERSION,
    event::{EventHeader, EventKind, TcpEvent},
};

/// Why a record was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its header or its declared size.
    #[error("truncated record ({len} bytes)")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Unknown kind byte.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// Written by programs of another ABI version.
    #[error("record version {0}, expected {ABI_VERSION}")]
    Version(u8),
    /// Declared size does not match the kind's size.
    #[error("record size {declared}, expected {expected}")]
    Size {
        /// Size in the header.
        declared: u16,
        /// Size of the kind's type.
        expected: usize,
    },
}

/// Decodes one ring-buffer record.
pub fn decode(record: &[u8]) -> Result<TcpEvent, DecodeError> {
    let mut header = record;
    if header.remaining() < size_of::<EventHeader>() {
        return Err(DecodeError::Truncated { len: record.len() });
    }
    let kind = header.get_u8();
    let version = header.get_u8();
    let declared = header.get_u16_le();
    if EventKind::from_raw(kind).is_none() {
        return Err(DecodeError::UnknownKind(kind));
    }
    if version != ABI_VERSION {
        return Err(DecodeError::Version(version));
    }
    let expected = size_of::<TcpEvent>();
    if usize::from(declared) != expected {
        return Err(DecodeError::Size { declared, expected });
    }
    if record.len() < expected {
        return Err(DecodeError::Truncated { len: record.len() });
    }
    // SAFETY: `record` holds at least size_of::<TcpEvent>() bytes (checked above);
    // TcpEvent is repr(C) plain integers and byte arrays, valid for any bit
    // pattern; read_unaligned makes no alignment assumption.
    Ok(unsafe { record.as_ptr().cast::<TcpEvent>().read_unaligned() })
}

/// Counts of rejected records, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Truncated records.
    pub truncated: u64,
    /// Unknown kinds.
    pub unknown_kind: u64,
    /// Version mismatches.
    pub version: u64,
    /// Size mismatches.
    pub size: u64,
}

impl DecodeStats {
    /// Counts one error.
    pub fn count(&mut self, error: DecodeError) {
        match error {
            DecodeError::Truncated { .. } => self.truncated += 1,
            DecodeError::UnknownKind(_) => self.unknown_kind += 1,
            DecodeError::Version(_) => self.version += 1,
            DecodeError::Size { .. } => self.size += 1,
        }
    }

    /// All rejected records.
    pub fn total(&self) -> u64 {
        self.truncated + self.unknown_kind + self.version + self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Vec<u8> {
        let event = TcpEvent {
            header: EventHeader {
                kind: EventKind::ResetSent as u8,
                version: ABI_VERSION,
                size: size_of::<TcpEvent>() as u16,
                cpu: 1,
                ts_ns: 42,
            },
            reason: 7,
            ..TcpEvent::default()
        };
        // SAFETY: TcpEvent is repr(C) plain data; viewing it as bytes is sound.
        unsafe {
            std::slice::from_raw_parts((&raw const event).cast::<u8>(), size_of::<TcpEvent>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_a_valid_record() {
        let e = decode(&valid()).unwrap();
        assert_eq!((e.header.ts_ns, e.reason), (42, 7));
    }

    #[test]
    fn rejects_truncated_unknown_and_mismatched() {
        let good = valid();
        assert_eq!(decode(&[]), Err(DecodeError::Truncated { len: 0 }));
        assert_eq!(decode(&good[..3]), Err(DecodeError::Truncated { len: 3 }));
        assert_eq!(
            decode(&good[..100]),
            Err(DecodeError::Truncated { len: 100 })
        );
        let mut bad = good.clone();
        bad[0] = 99;
        assert_eq!(decode(&bad), Err(DecodeError::UnknownKind(99)));
        let mut bad = good.clone();
        bad[1] = ABI_VERSION + 1;
        assert_eq!(decode(&bad), Err(DecodeError::Version(ABI_VERSION + 1)));
        let mut bad = good;
        bad[2] = 16;
        bad[3] = 0;
        assert_eq!(
            decode(&bad),
            Err(DecodeError::Size {
                declared: 16,
                expected: size_of::<TcpEvent>()
            })
        );
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let good = valid();
        let mut stats = DecodeStats::default();
        for len in 0..good.len() {
            if let Err(e) = decode(&good[..len]) {
                stats.count(e);
            }
        }
        for i in 0..good.len() {
            let mut flipped = good.clone();
            flipped[i] ^= 0xff;
            let _ = decode(&flipped);
        }
        assert_eq!(stats.total(), good.len() as u64);
    }
}

//! What a `split` line leaves for the line that judges the code (SPEC §9), as PAM data: a fixed
//! C layout with a magic number, so that two copies of the module in one stack (a packaged one
//! and a local build) read the same bytes the same way, or refuse them. No `unsafe` here; the
//! pointer work is in `ffi/mod.rs`.
#![forbid(unsafe_code)]

use crate::flow::TypedAhead;
use zeroize::{Zeroize, Zeroizing};

/// "pamtotp1": the layout below, version 1.
const MAGIC: u64 = 0x7061_6d74_6f74_7031;
/// Longest code kept (a recovery code typed with dashes is 14).
const CODE_MAX: usize = 32;
const NOTHING: u32 = 0;
const CODE: u32 = 1;

#[repr(C)]
pub(super) struct Datum {
    magic: u64,
    kind: u32,
    len: u32,
    code: [u8; CODE_MAX],
}

impl Datum {
    /// `None` for a code longer than any this module keeps.
    pub(super) fn of(t: &TypedAhead) -> Option<Box<Datum>> {
        let mut d = Box::new(Datum {
            magic: MAGIC,
            kind: NOTHING,
            len: 0,
            code: [0; CODE_MAX],
        });
        if let TypedAhead::Code(c) = t {
            let bytes = c.as_bytes();
            if bytes.len() > CODE_MAX {
                return None;
            }
            d.kind = CODE;
            d.len = u32::try_from(bytes.len()).ok()?;
            d.code[..bytes.len()].copy_from_slice(bytes);
        }
        Some(d)
    }

    /// What it holds; `None` when it is not a datum of this layout (another module's, or
    /// damaged): the caller denies.
    pub(super) fn read(&self) -> Option<TypedAhead> {
        if self.magic != MAGIC {
            return None;
        }
        match self.kind {
            NOTHING => Some(TypedAhead::Nothing),
            CODE => {
                let len = usize::try_from(self.len).ok().filter(|l| *l <= CODE_MAX)?;
                let text = std::str::from_utf8(&self.code[..len]).ok()?;
                Some(TypedAhead::Code(Zeroizing::new(text.to_string())))
            }
            _ => None,
        }
    }
}

impl Drop for Datum {
    fn drop(&mut self) {
        self.code.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_code_or_nothing_then_read_back_the_same() {
        let code = TypedAhead::Code(Zeroizing::new("4fh7-k2m9-xq3p".into()));
        match Datum::of(&code).unwrap().read() {
            Some(TypedAhead::Code(c)) => assert_eq!(c.as_str(), "4fh7-k2m9-xq3p"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Datum::of(&TypedAhead::Nothing).unwrap().read(),
            Some(TypedAhead::Nothing)
        ));
        let long = TypedAhead::Code(Zeroizing::new("1".repeat(CODE_MAX + 1)));
        assert!(Datum::of(&long).is_none());
    }

    #[test]
    fn given_another_layout_or_damage_then_unreadable() {
        let mut d = Datum::of(&TypedAhead::Nothing).unwrap();
        d.magic ^= 1;
        assert!(d.read().is_none());
        let mut d = Datum::of(&TypedAhead::Code(Zeroizing::new("123456".into()))).unwrap();
        d.len = 33;
        assert!(d.read().is_none());
        d.len = 6;
        d.kind = 7;
        assert!(d.read().is_none());
    }
}

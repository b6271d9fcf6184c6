//! Nix's base-32 encoding: its own alphabet (no e, o, u, t) and a reversed, little-endian bit order,
//! so it is not RFC 4648 base32. Used for store path hashes and `sha256:` hash strings.

/// The 32 characters Nix uses, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("character {0:?} is not in Nix's base-32 alphabet ({alphabet})", alphabet = std::str::from_utf8(ALPHABET).unwrap_or(""))]
    BadChar(char),
    #[error("base-32 string {0:?} has non-zero padding bits, it is not a valid encoding")]
    Padding(String),
    #[error("base-32 string has length {got}, expected {want}")]
    Length { got: usize, want: usize },
}

/// Length of the encoding of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n * 8 - 1) / 5 + 1
    }
}

/// Length in bytes of a decoded string of `n` characters.
pub const fn decoded_len(n: usize) -> usize {
    n * 5 / 8
}

/// Encode bytes the way `nix hash to-base32` does.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let lo = (bytes[i] as u16) >> j;
        let hi = if i + 1 < bytes.len() { (bytes[i + 1] as u16) << (8 - j) } else { 0 };
        out.push(ALPHABET[((lo | hi) & 0x1f) as usize] as char);
    }
    out
}

fn digit(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// True for bytes that can appear in a nixbase32 string (used by the reference scanner).
pub fn is_base32_char(c: u8) -> bool {
    matches!(c, b'0'..=b'9' | b'a'..=b'd' | b'f'..=b'n' | b'p'..=b's' | b'v'..=b'z')
}

/// Decode a nixbase32 string.
pub fn decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    let size = decoded_len(s.len());
    let mut out = vec![0u8; size];
    for (n, c) in s.bytes().rev().enumerate() {
        let d = digit(c).ok_or(DecodeError::BadChar(c as char))? as u16;
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let v = d << j;
        if i < size {
            out[i] |= (v & 0xff) as u8;
        } else if v != 0 {
            return Err(DecodeError::Padding(s.to_string()));
        }
        let carry = (v >> 8) as u8;
        if i + 1 < size {
            out[i + 1] |= carry;
        } else if carry != 0 {
            return Err(DecodeError::Padding(s.to_string()));
        }
    }
    Ok(out)
}

/// Decode into a fixed-size array, checking the length.
pub fn decode_fixed<const N: usize>(s: &str) -> Result<[u8; N], DecodeError> {
    if s.len() != encoded_len(N) {
        return Err(DecodeError::Length { got: s.len(), want: encoded_len(N) });
    }
    let v = decode(s)?;
    let mut a = [0u8; N];
    a.copy_from_slice(&v);
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // sha256("") in nixbase32, as printed by `nix hash to-base32`.
        let h = hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap();
        assert_eq!(encode(&h), "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
        assert_eq!(decode("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73").unwrap(), h);
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x1f]), "0z");
    }

    #[test]
    fn roundtrip_lengths() {
        for n in 0..70usize {
            let v: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let s = encode(&v);
            assert_eq!(s.len(), encoded_len(n));
            assert_eq!(decode(&s).unwrap(), v, "n={n}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(decode("e"), Err(DecodeError::BadChar('e'))));
        assert!(matches!(decode("zz"), Err(DecodeError::Padding(_))));
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = encode(&bytes);
            prop_assert!(s.bytes().all(is_base32_char));
            prop_assert_eq!(decode(&s).unwrap(), bytes);
        }
    }
}

//! Arithmetic on the 256-bit identifier circle. Ids and keys are
//! big-endian, so comparing the byte arrays compares the numbers.

/// `x` in the open interval (a, b) going clockwise. When a == b the
/// interval is the whole circle but `a`.
pub fn in_open(x: &[u8; 32], a: &[u8; 32], b: &[u8; 32]) -> bool {
    if a < b {
        a < x && x < b
    } else {
        x > a || x < b
    }
}

/// `x` in (a, b]. When a == b the interval is the whole circle.
pub fn in_half_open(x: &[u8; 32], a: &[u8; 32], b: &[u8; 32]) -> bool {
    if a < b {
        a < x && x <= b
    } else {
        x > a || x <= b
    }
}

/// Clockwise distance from `a` to `b`: (b - a) mod 2^256.
pub fn distance(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0u16;
    for i in (0..32).rev() {
        let d = u16::from(b[i])
            .wrapping_sub(u16::from(a[i]))
            .wrapping_sub(borrow);
        out[i] = d.to_be_bytes()[1];
        borrow = u16::from(d > 0xff);
    }
    out
}

/// a + 2^i mod 2^256, for i in 0..256 (larger i wraps to 0).
pub fn add_pow2(a: &[u8; 32], i: usize) -> [u8; 32] {
    let i = i % 256;
    let mut out = *a;
    let mut byte = 31 - i / 8;
    let mut carry = 1u16 << (i % 8);
    loop {
        let v = u16::from(out[byte]) + carry;
        out[byte] = v.to_be_bytes()[1];
        carry = v >> 8;
        if carry == 0 || byte == 0 {
            break;
        }
        byte -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(v: u128) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[16..].copy_from_slice(&v.to_be_bytes());
        out
    }

    #[test]
    fn intervals_wrap_around() {
        assert!(in_open(&n(5), &n(1), &n(9)));
        assert!(!in_open(&n(9), &n(1), &n(9)));
        assert!(in_half_open(&n(9), &n(1), &n(9)));
        // Wrapping: (9, 1) holds 10 and 0 but not 5.
        assert!(in_open(&n(10), &n(9), &n(1)));
        assert!(in_open(&n(0), &n(9), &n(1)));
        assert!(!in_open(&n(5), &n(9), &n(1)));
        // a == b: everything but a, or everything.
        assert!(in_open(&n(3), &n(7), &n(7)));
        assert!(!in_open(&n(7), &n(7), &n(7)));
        assert!(in_half_open(&n(7), &n(7), &n(7)));
    }

    #[test]
    fn add_pow2_carries_and_wraps() {
        assert_eq!(add_pow2(&n(0), 0), n(1));
        assert_eq!(add_pow2(&n(0xff), 0), n(0x100));
        assert_eq!(add_pow2(&[0xff; 32], 0), [0; 32]);
        let mut top = [0u8; 32];
        top[0] = 0x80;
        assert_eq!(add_pow2(&top, 255), [0; 32]);
    }

    proptest! {
        #[test]
        fn distance_and_add_agree(a in any::<[u8; 32]>(), i in 0usize..256) {
            let b = add_pow2(&a, i);
            let mut expect = [0u8; 32];
            expect[31 - i / 8] = 1 << (i % 8);
            prop_assert_eq!(distance(&a, &b), expect);
        }

        #[test]
        fn every_point_is_in_exactly_one_half(x in any::<[u8; 32]>(), a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            prop_assume!(a != b);
            // (a, b] and (b, a] partition the circle.
            prop_assert!(in_half_open(&x, &a, &b) != in_half_open(&x, &b, &a));
        }
    }
}

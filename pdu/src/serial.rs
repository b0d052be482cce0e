//! Serial number arithmetic (RFC 1982 with SERIAL_BITS = 32), which RFC 7143 §4.2.2.1 requires
//! for CmdSN, ExpCmdSN, MaxCmdSN, StatSN, DataSN and R2TSN comparisons.

/// `a < b` in serial number arithmetic. Values exactly 2^31 apart are incomparable (false).
pub fn lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < (1 << 31)
}

/// `a > b` in serial number arithmetic.
pub fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// `a <= b` in serial number arithmetic.
pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

/// Whether `sn` lies in the window `[low, high]` (RFC 7143 §4.2.2.1: ExpCmdSN ≤ CmdSN ≤ MaxCmdSN).
pub fn in_window(sn: u32, low: u32, high: u32) -> bool {
    le(low, sn) && le(sn, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_around() {
        assert!(lt(0xffff_fff0, 5));
        assert!(gt(5, 0xffff_fff0));
        assert!(!lt(5, 5));
        assert!(le(5, 5));
        assert!(in_window(0, 0xffff_fffe, 3));
        assert!(!in_window(4, 0xffff_fffe, 3));
        // An empty window (MaxCmdSN = ExpCmdSN - 1) admits nothing (RFC 7143 §4.2.2.1).
        assert!(!in_window(10, 10, 9));
    }
}

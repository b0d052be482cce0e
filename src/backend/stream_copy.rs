//! Copies of large writes into a tmpfs LUN's mapping with non-temporal stores. A 256 KiB write
//! lands on pages the CPU has not touched lately, so an ordinary copy first reads every
//! destination cache line (read for ownership) only to overwrite it, and fills the cache with
//! data the server will not read again soon; streaming stores skip both. Smaller copies, and
//! other architectures, use the ordinary copy (docs/architecture.md has the A/B).

/// Copies at least this long stream; below it the line reads an ordinary copy saves are few.
pub(crate) const STREAM_MIN: usize = 64 * 1024;

/// Copies `src` to `dst`, streaming when it is long enough.
///
/// # Safety
/// `dst` must be valid for `src.len()` bytes of writes and must not overlap `src`.
pub(crate) unsafe fn copy_to(dst: *mut u8, src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= STREAM_MIN {
        // SAFETY: the caller's contract, passed on.
        unsafe { stream_x86_64(dst, src) };
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
}

/// SSE2 (part of x86-64 itself, so no feature check): an ordinary copy up to the first 16-byte
/// boundary of `dst`, then 64 bytes per step with `movntdq`, the rest ordinarily, and a store
/// fence so that the streamed data is ordered before anything the caller stores next.
#[cfg(target_arch = "x86_64")]
unsafe fn stream_x86_64(dst: *mut u8, src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    let len = src.len();
    let head = dst.align_offset(16).min(len);
    // SAFETY (every block below): offsets stay below `len`, which the caller vouches for in
    // `dst` and the slice guarantees in `src`; `dst + head` is 16-byte aligned, as movntdq needs.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, head);
        let mut at = head;
        while at + 64 <= len {
            let s = src.as_ptr().add(at) as *const __m128i;
            let d = dst.add(at) as *mut __m128i;
            let (a, b, c, e) =
                (_mm_loadu_si128(s), _mm_loadu_si128(s.add(1)), _mm_loadu_si128(s.add(2)), _mm_loadu_si128(s.add(3)));
            _mm_stream_si128(d, a);
            _mm_stream_si128(d.add(1), b);
            _mm_stream_si128(d.add(2), c);
            _mm_stream_si128(d.add(3), e);
            at += 64;
        }
        std::ptr::copy_nonoverlapping(src.as_ptr().add(at), dst.add(at), len - at);
        _mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_and_alignment_arrives_intact() {
        let src: Vec<u8> = (0..STREAM_MIN * 2 + 200).map(|i| (i * 7 + i / 251) as u8).collect();
        for dst_shift in [0usize, 1, 3, 8, 15, 16] {
            for (from, len) in
                [(0, STREAM_MIN), (5, STREAM_MIN + 1), (17, STREAM_MIN + 63), (0, 2 * STREAM_MIN), (3, 100)]
            {
                let mut dst = vec![0xeeu8; len + 64];
                // SAFETY: dst has room for dst_shift + len bytes (len + 64 > len + 16); separate vectors.
                unsafe { copy_to(dst.as_mut_ptr().add(dst_shift), &src[from..from + len]) };
                assert_eq!(
                    &dst[dst_shift..dst_shift + len],
                    &src[from..from + len],
                    "shift {dst_shift} from {from} len {len}"
                );
                assert!(dst[..dst_shift].iter().all(|&b| b == 0xee), "wrote before the destination");
                assert!(dst[dst_shift + len..].iter().all(|&b| b == 0xee), "wrote past the destination");
            }
        }
    }
}

//! Unit tests of the connection's pure helpers; the state machine is tested through the
//! endpoint in `tests/`.

use super::default_mss;
use super::handshake::window_shift_for;

#[test]
fn window_shift_is_the_smallest_that_fits() {
    assert_eq!(window_shift_for(0), 0);
    assert_eq!(window_shift_for(65_535), 0);
    assert_eq!(window_shift_for(65_536), 1);
    assert_eq!(window_shift_for(256 * 1024), 3);
    assert_eq!(window_shift_for(6 * 1024 * 1024), 7);
    // RFC 7323 §2.3: never more than 14, however large the buffer.
    assert_eq!(window_shift_for(usize::MAX), 14);
}

#[test]
fn default_mss_per_family() {
    assert_eq!(default_mss(false), 536);
    assert_eq!(default_mss(true), 1220);
}

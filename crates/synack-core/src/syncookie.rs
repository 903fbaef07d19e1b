//! SYN cookies: answering a SYN without keeping state, after Linux's `secure_tcp_syn_cookie`
//! (D. J. Bernstein's idea, RFC 4987 §3.6).
//!
//! When a listener's SYN queue is full, the endpoint still answers each SYN, but encodes what it
//! must remember (the peer's MSS, and whether the SYN was recent and really sent to us) in the
//! initial sequence number of its SYN-ACK. The peer echoes it, plus one, in the ACK that
//! completes the handshake, and [`check_cookie`] recovers the MSS from it or rejects it. The
//! options that do not fit in the ISN (window scale, SACK) ride in the low bits of our TSval,
//! which the peer echoes in TSecr ([`encode_ts_options`], [`decode_ts_options`]).
//!
//! The layout of the 32-bit cookie follows Linux:
//!
//! ```text
//! cookie = H0(4-tuple) + client_isn + (count << 24) + (T(4-tuple, count, mss_index) mod 2^24)
//! ```
//!
//! `H0` hides the cookie from anyone who does not know the secret; `client_isn` ties it to this
//! very SYN; the top byte carries the low byte of a 64-second `count`, so the cookie expires;
//! the low 24 bits authenticate the 4-tuple, the full count and the MSS index.
//!
//! One deliberate difference: Linux's low 24 bits are `H1(4-tuple, count) + mss_index`, which
//! is malleable: a cookie or client ISN off by one to three still validates, with another MSS.
//! Here each of the four MSS indices has its own keyed tag `T`, so that every change to the
//! cookie or the ISN (a flipped bit, an added constant) is rejected unless it happens to hit
//! another index's secret tag, with odds of about 3 in 2^24; a blind forgery passes with odds
//! of about 4 in 2^24 per guess once the age byte is right, as in Linux. The price is up to
//! four SipHash evaluations per check instead of one.
//!
//! These are pure functions of their inputs: the endpoint passes `now` and its [`Secrets`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::isn::Secrets;
use crate::seq::SeqNumber;
use crate::time::Instant;

/// The MSS values a cookie can encode for IPv4 (Linux `msstab` in `net/ipv4/syncookies.c`),
/// sorted. They follow Alcock and Nelson's 2011 survey of announced MSS values: 536 (the
/// RFC 9293 §3.7.1 default), 1300 (common behind tunnels), 1440 and 1460 (Ethernet).
pub const MSS_TABLE_V4: [u16; 4] = [536, 1300, 1440, 1460];

/// The MSS values a cookie can encode for IPv6 (Linux `msstab` in `net/ipv6/syncookies.c`):
/// the MTUs 1280 (the IPv6 minimum, RFC 8200 §5), 1480 (PPPoE and common encapsulations), 1500
/// and 9000 (Ethernet and jumbo frames), each less 60 bytes of IPv6 and TCP header.
pub const MSS_TABLE_V6: [u16; 4] = [1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60];

/// How long one step of the cookie clock lasts (Linux: `tcp_cookie_time()`).
pub const COOKIE_PERIOD: Duration = Duration::from_secs(64);

/// A cookie is accepted while the clock has advanced by less than this many steps since it was
/// made (Linux `MAX_SYNCOOKIE_AGE`): so it lives between 64 and 128 seconds, enough for any
/// handshake, short enough that a captured cookie soon stops working.
pub const MAX_AGE: u32 = 2;

/// Bits of the cookie below the count byte.
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;

/// Bits of the count that go into the tag, so that the tag's hash input `count << 2 | index` and
/// the time-independent hash's input `1 << 31` never meet: `H0` and the four tags come from one
/// keyed PRF ([`Secrets::cookie_hash`]) on disjoint inputs, and so are independent, as Linux's
/// two keys are. 2^29 steps of 64 s is over a thousand years; only equality of the count within
/// a cookie's lifetime matters, so the truncation is harmless.
const COUNT_MASK: u32 = (1 << 29) - 1;
const H0_INPUT: u32 = 1 << 31;
/// The number of MSS indices, one per table entry.
const MSS_INDICES: u8 = 4;

/// The low bits of TSval that carry the SYN's options (Linux `TSBITS`).
const TS_BITS: u32 = 6;
const TS_MASK: u32 = (1 << TS_BITS) - 1;
/// Four bits of window scale; all ones means the SYN had no window scale option.
const TS_WSCALE_MASK: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;
/// The SYN asked for ECN and we agreed (Linux `TS_OPT_ECN`).
const TS_ECN: u32 = 1 << 5;
/// RFC 7323 §2.3: "the Shift.cnt value ... MUST NOT exceed 14".
const MAX_WSCALE: u8 = 14;

fn table(ipv6: bool) -> &'static [u16; 4] {
    if ipv6 {
        &MSS_TABLE_V6
    } else {
        &MSS_TABLE_V4
    }
}

/// The index of the largest table MSS not above `mss`, or 0 (the smallest) if all are above
/// it. Rounding down never makes us send segments larger than the peer asked for, except
/// below the smallest entry, which for IPv4 is the RFC 9293 default MSS and for IPv6 is what
/// the minimum MTU (RFC 8200 §5) guarantees anyway.
pub fn mss_index(mss: u16, ipv6: bool) -> u8 {
    let mut index = 0;
    for (i, &entry) in table(ipv6).iter().enumerate() {
        if entry <= mss {
            index = i;
        }
    }
    // The table has four entries, so the index fits in a u8.
    index as u8
}

/// The MSS that `idx` stands for, or `None` for an index no cookie can carry.
pub fn mss_from_index(idx: u8, ipv6: bool) -> Option<u16> {
    table(ipv6).get(usize::from(idx)).copied()
}

/// The 64-second cookie clock at `now`, in 31 bits.
fn counter(now: Instant) -> u32 {
    let steps = now.total_micros() / COOKIE_PERIOD.as_micros() as u64;
    // Truncation is intended: only the low bits are ever compared.
    (steps as u32) & COUNT_MASK
}

/// `H0(4-tuple)`: the time-independent part.
fn h0(secrets: &Secrets, local: SocketAddr, remote: SocketAddr) -> u32 {
    secrets.cookie_hash(local, remote, H0_INPUT)
}

/// `T(4-tuple, count, index)`: the 24-bit tag that authenticates the count and the MSS index.
fn tag(secrets: &Secrets, local: SocketAddr, remote: SocketAddr, count: u32, index: u8) -> u32 {
    let input = ((count & COUNT_MASK) << 2) | u32::from(index & (MSS_INDICES - 1));
    secrets.cookie_hash(local, remote, input) & COOKIE_MASK
}

/// Our ISN for a SYN answered without keeping state.
///
/// `local` and `remote` are the 4-tuple of the connection as we see it; `client_isn` is the
/// SYN's sequence number and `mss` the MSS it announced (or the default when it had none),
/// which is rounded down to a table entry (see [`mss_index`]). The family of `local` picks the
/// table.
pub fn cookie_isn(
    secrets: &Secrets,
    local: SocketAddr,
    remote: SocketAddr,
    client_isn: SeqNumber,
    now: Instant,
    mss: u16,
) -> SeqNumber {
    let count = counter(now);
    let low = tag(
        secrets,
        local,
        remote,
        count,
        mss_index(mss, local.is_ipv6()),
    );
    SeqNumber(
        h0(secrets, local, remote)
            .wrapping_add(client_isn.0)
            .wrapping_add(count << COOKIE_BITS)
            .wrapping_add(low),
    )
}

/// Validates the ACK that completes a cookie handshake: `cookie` is SEG.ACK - 1 and
/// `client_isn` is SEG.SEQ - 1 of that ACK. Returns the MSS the cookie encodes if we made it
/// for this 4-tuple and this client ISN less than [`MAX_AGE`] clock steps ago; `None`
/// otherwise.
pub fn check_cookie(
    secrets: &Secrets,
    local: SocketAddr,
    remote: SocketAddr,
    client_isn: SeqNumber,
    cookie: SeqNumber,
    now: Instant,
) -> Option<u16> {
    let count = counter(now);
    // What is left is (count << 24) + tag: the tag is below 2^24, so the top byte is exactly
    // the low byte of the count the cookie was made at.
    let rest = cookie
        .0
        .wrapping_sub(h0(secrets, local, remote))
        .wrapping_sub(client_isn.0);
    let age = count.wrapping_sub(rest >> COOKIE_BITS) & (u32::MAX >> COOKIE_BITS);
    // A cookie from the future (a wrapped age) is as old as any other: rejected.
    if age >= MAX_AGE {
        return None;
    }
    let made_at = count.wrapping_sub(age);
    let low = rest & COOKIE_MASK;
    // The index whose tag matches; none does for a cookie forged, tampered with, made for
    // another 4-tuple or client ISN, or under another secret.
    let index = (0..MSS_INDICES).find(|&i| tag(secrets, local, remote, made_at, i) == low)?;
    mss_from_index(index, local.is_ipv6())
}

/// Our TSval for a SYN-ACK that carries a cookie: `ts_now` with its low six bits replaced by
/// the SYN's options (four bits of the peer's window scale, all ones for none; one bit for
/// SACK permitted; one bit for ECN agreed, RFC 3168 §6.1.1, where Linux puts them).
///
/// The result never exceeds `ts_now` in the timestamp's modulo-2^32 order (RFC 7323 §5.2):
/// it is at most 63 ticks behind, so the peer's PAWS check still sees time move forward.
/// (Only when `ts_now` is below 64 does that wrap below zero, as it does in Linux.)
/// A window scale above 14 is encoded as 14 (RFC 7323 §2.3).
pub fn encode_ts_options(ts_now: u32, wscale: Option<u8>, sack: bool, ecn: bool) -> u32 {
    let mut options = match wscale {
        Some(shift) => u32::from(shift.min(MAX_WSCALE)),
        None => TS_WSCALE_MASK,
    };
    if sack {
        options |= TS_SACK;
    }
    if ecn {
        options |= TS_ECN;
    }
    let ts = (ts_now & !TS_MASK) | options;
    if ts > ts_now {
        ts.wrapping_sub(1 << TS_BITS)
    } else {
        ts
    }
}

/// The options [`encode_ts_options`] put in our TSval, from the TSecr the peer echoed:
/// `(the peer's window scale, SACK permitted, ECN)`.
pub fn decode_ts_options(tsecr: u32) -> (Option<u8>, bool, bool) {
    let shift = tsecr & TS_WSCALE_MASK;
    let wscale = if shift == TS_WSCALE_MASK {
        None
    } else {
        // Four bits other than 0xf are 0..=14: a valid shift count.
        Some(shift as u8)
    };
    (wscale, tsecr & TS_SACK != 0, tsecr & TS_ECN != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn secrets() -> Secrets {
        Secrets::new(Some([7; 32]))
    }

    fn v4(last: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, last)), port)
    }

    fn v6(last: u16, port: u16) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, last)),
            port,
        )
    }

    const ISN: SeqNumber = SeqNumber(0x1234_5678);
    const T0: Instant = Instant::from_secs(1_000_000);

    /// Makes a cookie and checks it at `later`.
    fn round_trip(local: SocketAddr, remote: SocketAddr, mss: u16, later: Instant) -> Option<u16> {
        let s = secrets();
        let cookie = cookie_isn(&s, local, remote, ISN, T0, mss);
        check_cookie(&s, local, remote, ISN, cookie, later)
    }

    // ---- MSS table ----

    #[test]
    fn mss_tables_are_sorted_and_linux_valued() {
        assert_eq!(MSS_TABLE_V4, [536, 1300, 1440, 1460]);
        assert_eq!(MSS_TABLE_V6, [1220, 1420, 1440, 8940]);
        for t in [MSS_TABLE_V4, MSS_TABLE_V6] {
            assert!(t.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn mss_index_rounds_down_to_a_table_entry() {
        assert_eq!(mss_index(0, false), 0);
        assert_eq!(mss_index(535, false), 0);
        assert_eq!(mss_index(536, false), 0);
        assert_eq!(mss_index(1299, false), 0);
        assert_eq!(mss_index(1300, false), 1);
        assert_eq!(mss_index(1439, false), 1);
        assert_eq!(mss_index(1440, false), 2);
        assert_eq!(mss_index(1460, false), 3);
        assert_eq!(mss_index(u16::MAX, false), 3);
        assert_eq!(mss_index(1219, true), 0);
        assert_eq!(mss_index(1220, true), 0);
        assert_eq!(mss_index(1460, true), 2);
        assert_eq!(mss_index(8939, true), 2);
        assert_eq!(mss_index(8940, true), 3);
        assert_eq!(mss_index(u16::MAX, true), 3);
    }

    #[test]
    fn mss_from_index_inverts_and_rejects_out_of_range() {
        for ipv6 in [false, true] {
            for (i, &mss) in table(ipv6).iter().enumerate() {
                assert_eq!(mss_from_index(i as u8, ipv6), Some(mss));
                assert_eq!(mss_index(mss, ipv6) as usize, i);
            }
            for idx in 4..=u8::MAX {
                assert_eq!(mss_from_index(idx, ipv6), None);
            }
        }
    }

    // ---- Cookie round trips ----

    #[test]
    fn round_trip_every_mss_ipv4() {
        for &mss in &MSS_TABLE_V4 {
            assert_eq!(round_trip(v4(2, 80), v4(1, 40000), mss, T0), Some(mss));
        }
        // A value between entries comes back rounded down.
        assert_eq!(round_trip(v4(2, 80), v4(1, 40000), 1400, T0), Some(1300));
    }

    #[test]
    fn round_trip_every_mss_ipv6() {
        for &mss in &MSS_TABLE_V6 {
            assert_eq!(round_trip(v6(2, 443), v6(1, 50000), mss, T0), Some(mss));
        }
        assert_eq!(round_trip(v6(2, 443), v6(1, 50000), 1460, T0), Some(1440));
    }

    #[test]
    fn round_trip_across_many_tuples_and_isns() {
        let s = secrets();
        for i in 0..200u32 {
            let local = v4(2, 80);
            let remote = v4((i % 250) as u8 + 1, 1024 + i as u16);
            let isn = SeqNumber(i.wrapping_mul(0x9e37_79b9));
            let mss = MSS_TABLE_V4[(i % 4) as usize];
            let now = T0 + Duration::from_millis(u64::from(i) * 997);
            let cookie = cookie_isn(&s, local, remote, isn, now, mss);
            assert_eq!(check_cookie(&s, local, remote, isn, cookie, now), Some(mss));
        }
    }

    #[test]
    fn cookies_differ_per_tuple_and_isn() {
        let s = secrets();
        let a = cookie_isn(&s, v4(2, 80), v4(1, 40000), ISN, T0, 1460);
        let b = cookie_isn(&s, v4(2, 80), v4(1, 40001), ISN, T0, 1460);
        let c = cookie_isn(&s, v4(2, 80), v4(1, 40000), ISN + 1, T0, 1460);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    // ---- Rejections ----

    #[test]
    fn wrong_four_tuple_is_rejected() {
        let s = secrets();
        let (local, remote) = (v4(2, 80), v4(1, 40000));
        let cookie = cookie_isn(&s, local, remote, ISN, T0, 1460);
        assert_eq!(check_cookie(&s, local, v4(1, 40001), ISN, cookie, T0), None);
        assert_eq!(check_cookie(&s, local, v4(3, 40000), ISN, cookie, T0), None);
        assert_eq!(check_cookie(&s, v4(2, 81), remote, ISN, cookie, T0), None);
        assert_eq!(check_cookie(&s, remote, local, ISN, cookie, T0), None);
        assert_eq!(check_cookie(&s, local, remote, ISN, cookie, T0), Some(1460));
    }

    #[test]
    fn wrong_client_isn_is_rejected() {
        let s = secrets();
        let (local, remote) = (v4(2, 80), v4(1, 40000));
        let cookie = cookie_isn(&s, local, remote, ISN, T0, 536);
        for delta in [1u32, 2, 3, 4, 0x100, 0x0100_0000, 0x8000_0000, u32::MAX] {
            let isn = SeqNumber(ISN.0.wrapping_add(delta));
            assert_eq!(check_cookie(&s, local, remote, isn, cookie, T0), None);
        }
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let s = secrets();
        for (local, remote) in [(v4(2, 80), v4(1, 40000)), (v6(2, 80), v6(1, 40000))] {
            for mss in [536, 1460, 8940] {
                let cookie = cookie_isn(&s, local, remote, ISN, T0, mss);
                for bit in 0..32 {
                    let tampered = SeqNumber(cookie.0 ^ (1 << bit));
                    assert_eq!(
                        check_cookie(&s, local, remote, ISN, tampered, T0),
                        None,
                        "bit {bit}"
                    );
                }
            }
        }
    }

    #[test]
    fn small_additive_changes_are_rejected() {
        // An attacker who knows a valid cookie cannot shift it to another MSS index.
        let s = secrets();
        let (local, remote) = (v4(2, 80), v4(1, 40000));
        let cookie = cookie_isn(&s, local, remote, ISN, T0, 536);
        for delta in 1..=16u32 {
            let up = SeqNumber(cookie.0.wrapping_add(delta));
            let down = SeqNumber(cookie.0.wrapping_sub(delta));
            assert_eq!(check_cookie(&s, local, remote, ISN, up, T0), None);
            assert_eq!(check_cookie(&s, local, remote, ISN, down, T0), None);
        }
    }

    #[test]
    fn cookie_from_another_secret_is_rejected() {
        let ours = secrets();
        let theirs = Secrets::new(Some([8; 32]));
        let (local, remote) = (v4(2, 80), v4(1, 40000));
        for mss in MSS_TABLE_V4 {
            let cookie = cookie_isn(&theirs, local, remote, ISN, T0, mss);
            assert_eq!(check_cookie(&ours, local, remote, ISN, cookie, T0), None);
            assert_eq!(
                check_cookie(&theirs, local, remote, ISN, cookie, T0),
                Some(mss)
            );
        }
    }

    #[test]
    fn random_cookies_are_rejected() {
        // A fixed pseudo-random sequence, so the test is deterministic.
        let s = secrets();
        let (local, remote) = (v4(2, 80), v4(1, 40000));
        let mut x: u32 = 0x2545_f491;
        let mut accepted = 0;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if check_cookie(&s, local, remote, ISN, SeqNumber(x), T0).is_some() {
                accepted += 1;
            }
        }
        // Odds per guess are about 2/256 * 4/2^24: none in 20,000.
        assert_eq!(accepted, 0);
    }

    // ---- The 64-second clock ----

    #[test]
    fn cookie_valid_for_current_and_previous_count_only() {
        let (local, remote) = (v4(2, 80), v4(1, 40000));
        // T0 is 1,000,000 s: 15625 * 64 exactly, the start of a count.
        assert_eq!(T0.total_micros() % 64_000_000, 0);
        let just_before_next = T0 + Duration::from_micros(63_999_999);
        let next = T0 + COOKIE_PERIOD;
        let last_valid = T0 + (2 * COOKIE_PERIOD - Duration::from_micros(1));
        let expired = T0 + 2 * COOKIE_PERIOD;
        assert_eq!(round_trip(local, remote, 1300, T0), Some(1300));
        assert_eq!(
            round_trip(local, remote, 1300, just_before_next),
            Some(1300)
        );
        assert_eq!(round_trip(local, remote, 1300, next), Some(1300));
        assert_eq!(round_trip(local, remote, 1300, last_valid), Some(1300));
        assert_eq!(round_trip(local, remote, 1300, expired), None);
        assert_eq!(
            round_trip(local, remote, 1300, T0 + 100 * COOKIE_PERIOD),
            None
        );
    }

    #[test]
    fn cookie_made_at_end_of_a_count_lives_just_over_one_period() {
        let s = secrets();
        let (local, remote) = (v4(2, 80), v4(1, 40000));
        let made = T0 + Duration::from_micros(63_999_999);
        let cookie = cookie_isn(&s, local, remote, ISN, made, 1440);
        let at = |d: Duration| check_cookie(&s, local, remote, ISN, cookie, made + d);
        assert_eq!(at(Duration::from_micros(1)), Some(1440), "next count");
        assert_eq!(at(Duration::from_secs(64)), Some(1440));
        assert_eq!(at(Duration::from_micros(64_000_001)), None, "two counts on");
    }

    #[test]
    fn cookie_from_the_future_is_rejected() {
        let (local, remote) = (v4(2, 80), v4(1, 40000));
        let earlier = Instant::from_micros(T0.total_micros() - 1);
        assert_eq!(round_trip(local, remote, 1460, earlier), None);
        assert_eq!(round_trip(local, remote, 1460, T0), Some(1460));
    }

    #[test]
    fn cookie_is_rejected_a_multiple_of_256_counts_later() {
        // The cookie carries only the count's low byte; the hash over the full count is what
        // rejects a cookie whose byte happens to match again.
        let (local, remote) = (v4(2, 80), v4(1, 40000));
        for k in 1..4u32 {
            let later = T0 + COOKIE_PERIOD * (256 * k);
            assert_eq!(round_trip(local, remote, 1460, later), None);
            assert_eq!(round_trip(local, remote, 1460, later + COOKIE_PERIOD), None);
        }
    }

    #[test]
    fn clock_extremes_do_not_panic_and_still_round_trip() {
        let s = secrets();
        let (local, remote) = (v6(2, 80), v6(1, 40000));
        for now in [Instant::ZERO, Instant::from_micros(u64::MAX)] {
            let cookie = cookie_isn(&s, local, remote, ISN, now, 1220);
            assert_eq!(
                check_cookie(&s, local, remote, ISN, cookie, now),
                Some(1220)
            );
        }
    }

    // ---- Timestamp options ----

    #[test]
    fn ts_options_round_trip_every_wscale_with_and_without_sack() {
        let wscales = (0..=14).map(Some).chain([None]);
        for wscale in wscales {
            for (sack, ecn) in [(false, false), (true, false), (false, true), (true, true)] {
                for ts_now in [0u32, 1, 63, 64, 1000, 0x8000_0000, u32::MAX] {
                    let ts = encode_ts_options(ts_now, wscale, sack, ecn);
                    let want = (wscale, sack, ecn);
                    assert_eq!(decode_ts_options(ts), want, "{ts_now} {wscale:?}");
                }
            }
        }
    }

    #[test]
    fn ts_wscale_above_fourteen_is_clamped() {
        for shift in 15..=u8::MAX {
            let ts = encode_ts_options(1 << 20, Some(shift), false, false);
            assert_eq!(decode_ts_options(ts), (Some(14), false, false));
        }
    }

    #[test]
    fn encoded_ts_never_exceeds_ts_now() {
        for ts_now in (64u32..2000).chain([u32::MAX - 1, u32::MAX]) {
            for wscale in (0..=14).map(Some).chain([None]) {
                for sack in [false, true] {
                    let ts = encode_ts_options(ts_now, wscale, sack, sack);
                    assert!(ts <= ts_now, "{ts} > {ts_now}");
                    assert!(ts_now - ts < 64, "at most 63 ticks behind");
                }
            }
        }
    }

    #[test]
    fn encoded_ts_below_64_wraps_backwards() {
        // No TSval below 64 has the low bits 0b011111; the previous value with them wraps.
        let ts = encode_ts_options(5, None, true, false);
        assert_eq!(ts, 0xffff_ffdf);
        assert!(ts_now_minus(5, ts) < 64);
        assert_eq!(
            encode_ts_options(31, None, true, false),
            31,
            "exact fit kept"
        );
    }

    fn ts_now_minus(ts_now: u32, ts: u32) -> u32 {
        ts_now.wrapping_sub(ts)
    }

    #[test]
    fn decode_reads_the_ecn_bit_and_ignores_the_clock_bits() {
        assert_eq!(decode_ts_options(0xffff_ffc0 | 3), (Some(3), false, false));
        assert_eq!(decode_ts_options(0x20 | 0x10 | 0xf), (None, true, true));
        assert_eq!(decode_ts_options(0x20 | 2), (Some(2), false, true));
        assert_eq!(decode_ts_options(0), (Some(0), false, false));
    }

    proptest! {
        #[test]
        fn check_cookie_never_panics(
            a in any::<[u8; 16]>(), lp in any::<u16>(), rp in any::<u16>(),
            isn in any::<u32>(), cookie in any::<u32>(), now in any::<u64>(), v6_family in any::<bool>(),
        ) {
            let s = secrets();
            let (local, remote) = if v6_family {
                let ip = Ipv6Addr::from(a);
                (SocketAddr::new(ip.into(), lp), SocketAddr::new(ip.into(), rp))
            } else {
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                (SocketAddr::new(ip.into(), lp), SocketAddr::new(ip.into(), rp))
            };
            let now = Instant::from_micros(now);
            if let Some(mss) = check_cookie(&s, local, remote, SeqNumber(isn), SeqNumber(cookie), now) {
                prop_assert!(table(v6_family).contains(&mss));
            }
        }

        #[test]
        fn any_cookie_round_trips(
            lp in any::<u16>(), rp in any::<u16>(), isn in any::<u32>(),
            now in any::<u64>(), mss in any::<u16>(), age in 0u64..64_000_000,
        ) {
            let s = secrets();
            let (local, remote) = (v4(2, lp), v4(1, rp));
            let made = Instant::from_micros(now);
            let cookie = cookie_isn(&s, local, remote, SeqNumber(isn), made, mss);
            let expected = mss_from_index(mss_index(mss, false), false);
            let later = made + Duration::from_micros(age);
            prop_assert_eq!(check_cookie(&s, local, remote, SeqNumber(isn), cookie, later), expected);
        }

        #[test]
        fn ts_options_any_input(
            ts_now in any::<u32>(), wscale in any::<Option<u8>>(), sack in any::<bool>(), ecn in any::<bool>(),
        ) {
            let ts = encode_ts_options(ts_now, wscale, sack, ecn);
            prop_assert!(ts_now.wrapping_sub(ts) < 64);
            prop_assert_eq!(decode_ts_options(ts), (wscale.map(|w| w.min(14)), sack, ecn));
            let _ = decode_ts_options(ts_now);
        }
    }
}

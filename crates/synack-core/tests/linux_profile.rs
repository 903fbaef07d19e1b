//! `Config::linux()`: Linux 6.x's SYN retransmission timeline, and the snapshot of a
//! connection (`Endpoint::info`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::ControlFlow;

use synack_core::{testing, Config, Endpoint, Event, Instant};

fn endpoint(config: Config) -> Endpoint {
    let mut config = config;
    config.seed(Some([7; 32]));
    Endpoint::new(config, &[IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2))])
}

/// The times (in ms) at which SYNs leave, and when `connect` fails, with every SYN lost.
fn syn_timeline(config: Config) -> (Vec<u64>, Option<u64>) {
    let mut ep = endpoint(config);
    let remote: SocketAddr = "198.18.0.1:80".parse().unwrap();
    let mut now = Instant::ZERO;
    let h = ep.connect(now, remote).unwrap();
    let mut buf = vec![0; 2048];
    let mut sent = Vec::new();
    let mut failed = None;
    for _ in 0..64 {
        testing::drain(&mut ep, now, &mut buf, |_, _| {
            sent.push(now.total_millis());
            ControlFlow::Continue(())
        });
        while let Some(e) = ep.poll_event() {
            if let Event::Closed(c, Some(_)) = e {
                assert_eq!(c, h);
                failed = Some(now.total_millis());
            }
        }
        if failed.is_some() {
            break;
        }
        match ep.poll_timeout() {
            Some(t) => {
                now = t;
                ep.handle_timeout(now);
            }
            None => break,
        }
    }
    (sent, failed)
}

#[test]
fn linux_profile_retransmits_syns_linearly_then_exponentially() {
    // Linux 6.18, tcp_syn_retries 6, tcp_syn_linear_timeouts 4 (measured with packetdrill
    // against the kernel): five RTOs of 1 s, then 2, 4, ... s; 6 + 4 retransmissions.
    let (sent, failed) = syn_timeline(Config::linux());
    let secs: Vec<u64> = vec![0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67];
    assert_eq!(sent, secs.iter().map(|s| s * 1000).collect::<Vec<_>>());
    assert_eq!(failed, Some(131_000));
}

#[test]
fn default_profile_keeps_its_exponential_syn_backoff() {
    let (sent, failed) = syn_timeline(Config::default());
    assert_eq!(sent, vec![0, 2000, 6000, 14_000, 30_000, 62_000, 126_000]);
    assert_eq!(failed, Some(246_000));
}

#[test]
fn info_reports_a_fresh_active_open() {
    let mut ep = endpoint(Config::linux());
    let now = Instant::ZERO;
    let h = ep.connect(now, "198.18.0.1:80".parse().unwrap()).unwrap();
    let mut buf = vec![0; 2048];
    testing::drain(&mut ep, now, &mut buf, |_, _| ControlFlow::Continue(()));
    let info = ep.info(now, h).unwrap();
    assert_eq!(info.state, Some(synack_core::State::SynSent));
    assert_eq!(info.unacked, 1, "the SYN counts as one segment in flight");
    assert_eq!(info.rto, std::time::Duration::from_secs(1));
}

#[test]
fn a_fixed_receive_buffer_bounds_the_window_in_the_syn() {
    let mut ep = endpoint(Config::linux());
    let now = Instant::ZERO;
    let h = ep.connect(now, "198.18.0.1:80".parse().unwrap()).unwrap();
    ep.set_recv_buffer(h, 8192).unwrap();
    ep.set_send_buffer(h, 4608).unwrap();
    let mut buf = vec![0; 2048];
    let t = ep.poll_transmit(now, &mut buf).expect("the SYN");
    assert!(t.len >= 40);
    // IPv4 header (20 bytes, no options), then the TCP window at offset 14.
    let window = u16::from_be_bytes([buf[20 + 14], buf[20 + 15]]);
    assert_eq!(window, 8192);
    assert_eq!(ep.info(now, h).unwrap().send_buffer, 4608);
    assert_eq!(ep.info(now, h).unwrap().recv_buffer, 8192);
}

#[test]
fn linux_profile_syn_retries_run_out_by_time() {
    // Linux 6.18 with TCP_SYNCNT 1 (measured with packetdrill against the kernel): SYNs at
    // 0, 1 and 2 s, ETIMEDOUT at 3 s, the time one doubling retry would take.
    let mut config = Config::linux();
    config.syn_retries(1);
    let (sent, failed) = syn_timeline(config);
    assert_eq!(sent, vec![0, 1000, 2000]);
    assert_eq!(failed, Some(3000));
}

/// Settings at their extremes saturate the SYN schedule rather than overflow it: an uncapped
/// RTO with 31, 32 or 127 retries (Linux's `tcp_model_timeout` doubles per retry), a
/// microsecond's initial SYN RTO under an hour's cap, an initial SYN RTO of `Duration::MAX`.
/// Each connect sends its SYNs without a panic. TCP_SYNCNT takes 1 to 127, as Linux.
#[test]
fn extreme_syn_settings_saturate() {
    use std::time::Duration;
    for retries in [31, 32, 127] {
        let mut c = Config::linux();
        c.max_rto(Duration::MAX).syn_retries(retries);
        let (sent, _) = syn_timeline(c);
        assert!(sent.len() > 10, "{retries}: {sent:?}");
    }
    let mut c = Config::default();
    c.max_rto(Duration::from_secs(3600))
        .initial_syn_rto(Duration::from_micros(1))
        .syn_linear_timeouts(1)
        .syn_retries(31);
    let (sent, _) = syn_timeline(c);
    assert!(sent.len() > 10, "{sent:?}");
    let mut c = Config::linux();
    c.initial_syn_rto(Duration::MAX);
    let (sent, _) = syn_timeline(c);
    assert!(!sent.is_empty());

    let mut ep = endpoint(Config::default());
    let h = ep
        .connect(Instant::ZERO, "198.18.0.1:80".parse().unwrap())
        .unwrap();
    for bad in [0, synack_core::MAX_SYN_RETRIES + 1, u32::MAX] {
        assert_eq!(
            ep.set_syn_retries(h, bad),
            Err(synack_core::Error::InvalidInput)
        );
    }
    assert_eq!(ep.set_syn_retries(h, synack_core::MAX_SYN_RETRIES), Ok(()));
}

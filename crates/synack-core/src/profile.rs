//! Configuration profiles: named sets of defaults beside [`Config::default`].

use std::time::Duration;

use crate::config::Config;

impl Config {
    /// Linux 6.x's defaults, for comparing synack with the kernel (packetdrill scripts assume
    /// them): the first SYN retransmission after 1 s (Linux `TCP_TIMEOUT_INIT`, where a
    /// listener's SYN-ACK starts in both) instead of synack's 2 s, the first four SYN retransmissions 1 s apart before the
    /// backoff doubles, and the connect failing once the SYN has been out as long as
    /// `syn_retries` doublings would take (`tcp_syn_linear_timeouts`, Linux 6.17+: SYNs at 0,
    /// 1, 2, 3, 4, 5, 7, 11, 19, 35 and 67 s, ETIMEDOUT at 131 s), and buffers that start at Linux's `tcp_rmem[1]` (128 KiB)
    /// and `tcp_wmem[1]` (16 KiB) and grow to `tcp_rmem[2]` (6 MiB) and `tcp_wmem[2]`
    /// (4 MiB), no pacing (as Linux's cubic without the fq qdisc), the send buffer charged per packet
    /// as Linux charges its skbs ([`Config::skb_accounting`]), a fast retransmit's
    /// ssthresh taken from cwnd ([`Config::fast_recovery_from_cwnd`]), loss recovery
    /// counted in packets ([`Config::recovery_in_packets`]), and an RTT sample from every
    /// ACK ([`Config::rtt_every_ack`]), and CUBIC's window grown in segments at Linux's pace
    /// ([`Config::linux_cwnd_growth`]). Those are all the differences:
    /// everything else already follows Linux in [`Config::default`].
    pub fn linux() -> Config {
        let mut c = Config::default();
        c.initial_syn_rto(Duration::from_secs(1))
            .initial_rto(Duration::from_secs(1))
            .syn_retries(6)
            .syn_linear_timeouts(4)
            .synack_retries(5)
            .recv_buffer(128 * 1024)
            .recv_buffer_max(6 * 1024 * 1024)
            .send_buffer(16 * 1024)
            .send_buffer_max(4 * 1024 * 1024)
            // Linux paces a cubic or reno flow only under the fq qdisc (`tcp_needs_internal_pacing`
            // is for BBR and SO_MAX_PACING_RATE); with the default fq_codel or pfifo (what
            // packetdrill's tun0 gets) a window leaves at once.
            .pacing(false)
            // Writes sized, the buffer charged and grown as Linux's skbs are.
            .skb_accounting(true)
            // A fast retransmit's ssthresh from cwnd (tcp_init_cwnd_reduction).
            .fast_recovery_from_cwnd(true)
            // PRR and RACK's DupThresh in packets (tcp_cwnd_reduction, tcp_rack_reo_wnd).
            .recovery_in_packets(true)
            // The RTT sampled from every ACK, as tcp_clean_rtx_queue samples it.
            .rtt_every_ack(true)
            // CUBIC's growth in packets (bictcp_update, tcp_cong_avoid_ai).
            .linux_cwnd_growth(true);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_profile_differs_from_default_only_where_linux_does() {
        let linux = Config::linux();
        assert_eq!(linux.get_initial_syn_rto(), Duration::from_secs(1));
        assert_eq!(
            Config::default().get_initial_syn_rto(),
            Duration::from_secs(2)
        );
        assert_eq!(linux.get_syn_retries(), 6);
        assert!(linux.linux_cwnd_growth && !Config::default().linux_cwnd_growth);
    }
}

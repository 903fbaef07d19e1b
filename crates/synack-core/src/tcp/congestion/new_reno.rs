//! NewReno (RFC 5681, RFC 6582).

use std::time::Duration;

use super::{Controller, ControllerFactory};
use crate::time::Instant;

/// NewReno congestion control.
#[derive(Debug, Clone)]
pub struct NewReno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
}

impl NewReno {
    /// A controller with the RFC 5681 §3.1 initial window.
    pub fn new(mss: usize) -> Self {
        NewReno {
            mss,
            cwnd: 10 * mss,
            ssthresh: usize::MAX,
        }
    }
}

impl Controller for NewReno {
    fn window(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
    fn on_ack(
        &mut self,
        _now: Instant,
        bytes_acked: usize,
        _in_flight: usize,
        _rtt: Option<Duration>,
    ) {
        self.cwnd += bytes_acked.min(self.mss);
    }
    fn on_fast_retransmit(&mut self, _now: Instant, in_flight: usize) {
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh + 3 * self.mss;
    }
    fn on_recovery_dup_ack(&mut self) {
        self.cwnd += self.mss;
    }
    fn on_partial_ack(&mut self, bytes_acked: usize) {
        self.cwnd = self.cwnd.saturating_sub(bytes_acked) + self.mss;
    }
    fn on_recovery_end(&mut self, in_flight: usize) {
        self.cwnd = self.ssthresh.min(in_flight + self.mss);
    }
    fn on_rto(&mut self, _now: Instant, in_flight: usize) {
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
    }
    fn set_mss(&mut self, mss: usize) {
        self.mss = mss;
    }
}

/// Builds [`NewReno`] controllers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRenoFactory;

impl ControllerFactory for NewRenoFactory {
    fn build(&self, _now: Instant, mss: usize) -> Box<dyn Controller> {
        Box::new(NewReno::new(mss))
    }
}

//! The little protocol between a measuring client and a kernel-side server.
//!
//! The client opens with a 17-byte header: an operation, a byte limit and a time limit (both
//! big-endian). Then:
//!
//! - `Upload`: the client sends the pattern until either limit, then half-closes; the server
//!   checks every byte, and answers with the count (8 bytes) and an intact flag (1 byte) before
//!   closing. The client stops its clock at that answer, so the rate counts delivered bytes.
//! - `Download`: the server sends the pattern until either limit, then half-closes; the
//!   client checks every byte until the FIN and stops its clock there.
//! - `PingPong`: the client sends one byte and waits for it to come back, again and again,
//!   for the time limit; then it half-closes. Each echo is one round trip.
//!
//! Every implementation under test (synack, smoltcp, a kernel client in another namespace)
//! speaks this to the same kernel-side server, so they differ only in the client's stack.

use std::time::Duration;

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Client to server bulk.
    Upload,
    /// Server to client bulk.
    Download,
    /// One-byte round trips.
    PingPong,
}

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::Upload => b'U',
            Op::Download => b'D',
            Op::PingPong => b'P',
        }
    }

    /// The name used on the helper's command line.
    pub fn name(self) -> &'static str {
        match self {
            Op::Upload => "upload",
            Op::Download => "download",
            Op::PingPong => "pingpong",
        }
    }

    /// The inverse of [`Op::name`].
    pub fn from_name(s: &str) -> Option<Op> {
        [Op::Upload, Op::Download, Op::PingPong]
            .into_iter()
            .find(|op| op.name() == s)
    }
}

/// The header's length on the wire.
pub const HEADER_LEN: usize = 17;
/// The upload answer's length: count and intact flag.
pub const REPLY_LEN: usize = 9;

/// The client's opening: what to do and when to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The operation.
    pub op: Op,
    /// The most bytes to move.
    pub limit: u64,
    /// The longest to keep moving them.
    pub duration: Duration,
}

impl Header {
    /// The header's 17 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        b[0] = self.op.code();
        b[1..9].copy_from_slice(&self.limit.to_be_bytes());
        let ms = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX);
        b[9..17].copy_from_slice(&ms.to_be_bytes());
        b
    }

    /// Parses a header; `None` for an unknown operation.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Option<Header> {
        let op = [Op::Upload, Op::Download, Op::PingPong]
            .into_iter()
            .find(|op| op.code() == b[0])?;
        let mut limit = [0; 8];
        limit.copy_from_slice(&b[1..9]);
        let mut ms = [0; 8];
        ms.copy_from_slice(&b[9..17]);
        Some(Header {
            op,
            limit: u64::from_be_bytes(limit),
            duration: Duration::from_millis(u64::from_be_bytes(ms)),
        })
    }
}

/// The outcome of one client run, on every side of the harness.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Bytes delivered (bulk) or round trips (ping-pong).
    pub count: u64,
    /// Seconds from connect to the end.
    pub secs: f64,
    /// Every byte matched the pattern and the two ends agree on the count.
    pub intact: bool,
    /// The run hit its timeout before finishing.
    pub timed_out: bool,
}

/// The server's answer to an upload: the bytes it counted and whether they all matched the
/// pattern.
pub fn encode_reply(count: u64, intact: bool) -> [u8; REPLY_LEN] {
    let mut reply = [0; REPLY_LEN];
    reply[..8].copy_from_slice(&count.to_be_bytes());
    reply[8] = u8::from(intact);
    reply
}

impl Outcome {
    /// Records the server's [`encode_reply`] to an upload of `sent` bytes: intact only if
    /// the server saw every byte match and counted exactly what was sent.
    pub fn take_reply(&mut self, reply: &[u8; REPLY_LEN], sent: u64) {
        let mut count = [0; 8];
        count.copy_from_slice(&reply[..8]);
        self.count = u64::from_be_bytes(count);
        self.intact = reply[8] == 1 && self.count == sent;
    }

    /// One line for the helper's stdout: `count=N secs=S intact=0|1 timed_out=0|1`.
    pub fn to_line(self) -> String {
        format!(
            "count={} secs={:.6} intact={} timed_out={}",
            self.count,
            self.secs,
            u8::from(self.intact),
            u8::from(self.timed_out)
        )
    }

    /// Parses [`Outcome::to_line`]'s output.
    pub fn from_line(line: &str) -> Option<Outcome> {
        let mut out = Outcome {
            count: 0,
            secs: 0.0,
            intact: false,
            timed_out: false,
        };
        let mut seen = 0;
        for field in line.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            match k {
                "count" => out.count = v.parse().ok()?,
                "secs" => out.secs = v.parse().ok()?,
                "intact" => out.intact = v == "1",
                "timed_out" => out.timed_out = v == "1",
                _ => continue,
            }
            seen += 1;
        }
        (seen == 4).then_some(out)
    }

    /// Bytes per second as Gbit/s.
    pub fn gbits(&self) -> f64 {
        self.count as f64 * 8.0 / self.secs.max(1e-9) / 1e9
    }

    /// Count per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.secs.max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        for op in [Op::Upload, Op::Download, Op::PingPong] {
            let h = Header {
                op,
                limit: 0x0102_0304_0506_0708,
                duration: Duration::from_millis(2500),
            };
            assert_eq!(Header::decode(&h.encode()), Some(h));
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        let mut bad = [0; HEADER_LEN];
        bad[0] = b'X';
        assert_eq!(Header::decode(&bad), None);
    }

    #[test]
    fn reply_is_intact_only_if_the_counts_agree() {
        let mut out = Outcome {
            count: 0,
            secs: 0.0,
            intact: false,
            timed_out: false,
        };
        out.take_reply(&encode_reply(5000, true), 5000);
        assert_eq!((out.count, out.intact), (5000, true));
        out.take_reply(&encode_reply(4999, true), 5000);
        assert_eq!((out.count, out.intact), (4999, false));
        out.take_reply(&encode_reply(5000, false), 5000);
        assert!(!out.intact);
    }

    #[test]
    fn outcome_line_round_trips() {
        let o = Outcome {
            count: 123,
            secs: 1.5,
            intact: true,
            timed_out: false,
        };
        assert_eq!(Outcome::from_line(&o.to_line()), Some(o));
        assert_eq!(Outcome::from_line("count=1 secs=2"), None);
    }
}

//! Urgent data (RFC 9293 §3.8.5, RFC 6093), with Linux's semantics: received, and sent
//! with `MSG_OOB`.
//!
//! The urgent pointer points one past the urgent byte (RFC 6093 §3: what every widely used
//! stack does, BSD-style, whatever RFC 1122 said), and only the last byte before it is
//! "out of band": without `SO_OOBINLINE` it is taken out of the stream and handed out only by
//! a `MSG_OOB` read, as Linux (and BSD) do. RFC 6093 §5 advises applications against urgent
//! data; it is still what `recv(MSG_OOB)`, `SIOCATMARK` and splice's stop at the mark see,
//! so the stack models it as Linux does (`tcp_check_urg`, `tcp_urg`, `tcp_recvmsg_locked`,
//! `tcp_recv_urg`, `tcp_read_sock`).
//!
//! The state is bounded: one mark at a time (Linux's `urg_seq`/`urg_data`). A newer urgent
//! pointer replaces an older one; a pointer at or below what was already received, or below
//! what the application already read, is ignored (no replay of old urgent data). Any 16-bit
//! pointer is a valid position, so no value is malformed: one far beyond the data only waits
//! for the byte to arrive, and the mark is never older than 64 KiB past the segment that set
//! it.

use super::Connection;
use crate::error::Error;
use crate::options::SendFlags;
use crate::seq::SeqNumber;
use crate::wire::{TcpFlags, TcpRepr};

/// Where the urgent byte stands (Linux's `TCP_URG_NOTYET`, `TCP_URG_VALID | byte`,
/// `TCP_URG_READ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrgentByte {
    /// The pointer was announced; the byte has not arrived yet.
    NotYet,
    /// The byte arrived; a `MSG_OOB` read has not taken it.
    Valid(u8),
    /// A `MSG_OOB` read took it.
    Read,
}

/// The one urgent mark a connection tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Urgent {
    /// The urgent byte's sequence number: the byte just before the peer's urgent pointer.
    pub seq: SeqNumber,
    pub byte: UrgentByte,
}

impl Connection {
    /// The sequence number of the next byte the application reads (Linux's `copied_seq`):
    /// RCV.NXT less the unread bytes, less the peer's FIN once it is taken.
    pub(super) fn read_seq(&self) -> SeqNumber {
        self.rcv.nxt - self.rcv.buffer.len() - usize::from(self.rcv.fin_received)
    }

    /// RFC 9293 §3.10.7.4 "sixth, check the URG bit": note a new urgent pointer, and take the
    /// urgent byte out of the segment that carries it. Called for an acceptable segment,
    /// before its text is stored (Linux `tcp_urg` runs before `tcp_data_queue`).
    pub(super) fn check_urgent(&mut self, seg: &TcpRepr<'_>) {
        if seg.flags.contains(TcpFlags::URG) {
            self.new_urgent_pointer(seg);
        }
        let Some(urg) = &mut self.rcv.urgent else {
            return;
        };
        if urg.byte != UrgentByte::NotYet || urg.seq < seg.seq_number {
            return;
        }
        let at = urg.seq - seg.seq_number;
        if let Some(&b) = seg.payload.get(at) {
            urg.byte = UrgentByte::Valid(b);
            // A reader waiting in poll for POLLPRI (Linux: sk_data_ready).
            self.notify.readable = true;
        }
    }

    /// Linux `tcp_check_urg`.
    fn new_urgent_pointer(&mut self, seg: &TcpRepr<'_>) {
        // RFC 6093 §3: the pointer is one past the urgent byte. A pointer of zero (no byte
        // before it in this segment) is taken, as Linux takes it, to name the first byte.
        let ptr = usize::from(seg.urgent_pointer).saturating_sub(1);
        let seq = seg.seq_number + ptr;
        let read = self.read_seq();
        // Urgent data the application already read past, or a pointer into bytes already
        // received (a retransmission's, or a stale one): no replay.
        if seq < read || seq < self.rcv.nxt {
            return;
        }
        if let Some(old) = self.rcv.urgent {
            // The same mark again, or an older one.
            if seq <= old.seq {
                return;
            }
            // The reader sits at the old urgent byte, already received: a normal read would
            // have skipped it, and the new mark makes it ordinary data no read may return, so
            // it goes now (Linux advances copied_seq past it).
            if old.seq == read && !self.oob_inline && !self.rcv.buffer.is_empty() {
                self.rcv.buffer.skip(1);
            }
        }
        self.rcv.urgent = Some(Urgent {
            seq,
            byte: UrgentByte::NotYet,
        });
    }

    /// Forget the mark once the application has read past it.
    fn clear_passed_urgent(&mut self) {
        if self.rcv.urgent.is_some_and(|u| u.seq < self.read_seq()) {
            self.rcv.urgent = None;
        }
    }

    /// How many bytes a read may take now, at most `want`, stopping at the urgent mark: a
    /// read never crosses it (Linux `tcp_recvmsg_locked`: the read that reaches it ends
    /// there). At the mark, without `SO_OOBINLINE`, the urgent byte is skipped first.
    /// Returns `(skip, take)`: bytes to drop (0 or 1), then bytes to copy.
    pub(super) fn urgent_read_plan(&self, want: usize) -> (usize, usize) {
        let avail = self.rcv.buffer.len();
        let read = self.read_seq();
        // A mark behind the reader is forgotten after every read; were one left, it must
        // not stop reads for good.
        let Some(urg) = self.rcv.urgent.filter(|u| u.seq >= read) else {
            return (0, want.min(avail));
        };
        if urg.seq == read {
            if self.oob_inline || avail == 0 {
                // Inline, the urgent byte is read as data, with whatever follows it.
                return (0, want.min(avail));
            }
            return (1, want.min(avail - 1));
        }
        // The mark lies ahead (or past the data received): stop before it.
        let before = urg.seq - read;
        (0, want.min(avail).min(before))
    }

    /// After a read: forget a mark read past.
    pub(super) fn after_urgent_read(&mut self) {
        self.clear_passed_urgent();
    }

    /// Whether a normal read would return data now, not counting an urgent byte it would
    /// skip (Linux's `tcp_poll` asks one byte more at the mark).
    pub(super) fn readable_bytes(&self) -> usize {
        let len = self.rcv.buffer.len();
        match self.rcv.urgent {
            Some(u) if !self.oob_inline && u.seq == self.read_seq() && len > 0 => len - 1,
            _ => len,
        }
    }

    /// Bytes readable before the mark while one is pending, `Some(0)` at it; `None` with no
    /// mark (Linux: `SIOCATMARK` is `urg_data && urg_seq == copied_seq`).
    pub fn urgent_mark(&self) -> Option<usize> {
        let read = self.read_seq();
        let urg = self.rcv.urgent.filter(|u| u.seq >= read)?;
        Some(urg.seq - read)
    }

    /// Whether the urgent byte arrived and no `MSG_OOB` read took it yet (POLLPRI).
    pub fn urgent_pending(&self) -> bool {
        matches!(
            self.rcv.urgent,
            Some(Urgent {
                byte: UrgentByte::Valid(_),
                ..
            })
        )
    }

    /// A `MSG_OOB` read (Linux `tcp_recv_urg`): the urgent byte, once. `Ok(None)` is end of
    /// stream. `InvalidInput` (EINVAL) with `SO_OOBINLINE`, with no mark, or once the byte
    /// was read; `NotConnected` on a connection closed before its peer's FIN; `WouldBlock`
    /// (EAGAIN, even for a blocking socket) while the byte has not arrived.
    pub fn recv_urgent(&mut self, peek: bool) -> Result<Option<u8>, Error> {
        let byte = match self.rcv.urgent {
            Some(u) if !self.oob_inline => u.byte,
            _ => return Err(Error::InvalidInput),
        };
        let closed = self.state == crate::tcp::State::Closed;
        match byte {
            UrgentByte::Read => Err(Error::InvalidInput),
            _ if closed && !self.rcv.fin_received => Err(Error::NotConnected),
            UrgentByte::Valid(b) => {
                if !peek {
                    if let Some(u) = &mut self.rcv.urgent {
                        u.byte = UrgentByte::Read;
                    }
                }
                Ok(Some(b))
            }
            UrgentByte::NotYet
                if closed || self.app_closed || self.read_shut || self.rcv.fin_received =>
            {
                Ok(None)
            }
            UrgentByte::NotYet => Err(Error::WouldBlock),
        }
    }

    /// `SO_OOBINLINE`: the urgent byte stays in the stream.
    pub fn set_oob_inline(&mut self, inline: bool) {
        self.oob_inline = inline;
    }

    /// A write with `MSG_OOB`: queued as any write, then SND.UP moves to its end, so that
    /// its last byte is the urgent one (RFC 6093 §3, Linux `tcp_mark_urg`). Every segment
    /// that starts below SND.UP carries URG until the peer acknowledges it.
    pub fn send_urgent(&mut self, data: &[u8], flags: SendFlags) -> Result<usize, Error> {
        let n = self.send(data, flags)?;
        if n > 0 {
            self.snd.up = Some(self.snd.data_start() + self.snd.buffer.len());
        }
        Ok(n)
    }

    /// Whether a segment starting at `seq` carries URG (Linux: `tcp_urg_mode` and
    /// `seq < snd_up`).
    pub(super) fn urgent_covers(&self, seq: SeqNumber) -> bool {
        self.snd.up.is_some_and(|up| seq < up)
    }

    /// URG and the urgent pointer on an outgoing segment that starts below SND.UP (Linux
    /// `__tcp_transmit_skb`): the offset of SND.UP from the segment's sequence number, or
    /// the largest offset the field holds when SND.UP is further (RFC 6093 §4 leaves a
    /// sender that much), as long as SND.NXT lies within it too.
    pub(super) fn mark_urgent(&self, seg: &mut TcpRepr<'_>) {
        let Some(up) = self.snd.up else { return };
        let seq = seg.seq_number;
        if seq >= up || seg.flags.contains(TcpFlags::SYN) || seg.flags.contains(TcpFlags::RST) {
            return;
        }
        let offset = up - seq;
        if offset <= usize::from(u16::MAX) {
            seg.urgent_pointer = offset as u16;
        } else if self.snd.nxt < seq + usize::from(u16::MAX) {
            seg.urgent_pointer = u16::MAX;
        } else {
            return;
        }
        seg.flags |= TcpFlags::URG;
    }
}

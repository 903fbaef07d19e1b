//! TCP headers and options (RFC 9293 §3.1, RFC 7323, RFC 2018).

use core::fmt;
use core::ops::{BitOr, BitOrAssign};
use std::net::IpAddr;

use super::checksum;
use super::ip::IpProtocol;
use super::WireError;
use crate::seq::SeqNumber;

/// The length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// The longest TCP header: a 4-bit data offset counts at most 15 words (RFC 9293 §3.1).
pub const MAX_HEADER_LEN: usize = 60;
/// Room for options: 40 bytes.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

/// Field offsets, RFC 9293 §3.1.
mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Option kinds (IANA "TCP Option Kind Numbers") and their fixed lengths.
mod opt {
    /// RFC 9293 §3.2: End of Option List.
    pub const EOL: u8 = 0;
    /// RFC 9293 §3.2: No-Operation.
    pub const NOP: u8 = 1;
    /// RFC 9293 §3.2: Maximum Segment Size, length 4.
    pub const MSS: u8 = 2;
    pub const MSS_LEN: u8 = 4;
    /// RFC 7323 §2.2: Window Scale, length 3.
    pub const WS: u8 = 3;
    pub const WS_LEN: u8 = 3;
    /// RFC 2018 §2: SACK-Permitted, length 2.
    pub const SACK_PERM: u8 = 4;
    pub const SACK_PERM_LEN: u8 = 2;
    /// RFC 2018 §3: SACK, length 2 + 8n.
    pub const SACK: u8 = 5;
    /// RFC 7323 §3.2: Timestamps, length 10.
    pub const TS: u8 = 8;
    pub const TS_LEN: u8 = 10;
    /// RFC 2385 §3.0: TCP MD5 Signature, length 18.
    pub const MD5: u8 = 19;
    pub const MD5_LEN: u8 = 18;
    /// RFC 5925 §2.2: TCP Authentication Option, length 4 + MAC.
    pub const AO: u8 = 29;
    pub const AO_HEADER_LEN: u8 = 4;
    /// RFC 7413 §4.1.1: TCP Fast Open Cookie, length 2 + cookie (0, or 4 to 16 bytes).
    pub const FAST_OPEN: u8 = 34;
    /// RFC 6994 §3: the shared experimental kind, with Fast Open's ExID (the form used before
    /// kind 34 was assigned; Linux still accepts it).
    pub const EXPERIMENTAL: u8 = 254;
    pub const FAST_OPEN_EXID: u16 = 0xF989;
}

/// A TCP Fast Open cookie (RFC 7413 §4.1.1): 4 to 16 bytes from the server, or none at all
/// in a SYN that asks for one (a "cookie request").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FastOpenCookie {
    len: u8,
    /// Carried in the experimental option (kind 254 with ExID 0xF989, RFC 6994) rather than
    /// kind 34: a server answers in the form it was asked in, and a client keeps the form its
    /// server used (Linux's `tcp_fastopen_cookie.exp`).
    exp: bool,
    bytes: [u8; FastOpenCookie::MAX_LEN],
}

impl FastOpenCookie {
    /// The shortest cookie (RFC 7413 §4.1.1).
    pub const MIN_LEN: usize = 4;
    /// The longest cookie (RFC 7413 §4.1.1).
    pub const MAX_LEN: usize = 16;
    /// The empty option of a SYN asking the server for a cookie (RFC 7413 §4.1.2).
    pub const REQUEST: FastOpenCookie = FastOpenCookie {
        len: 0,
        exp: false,
        bytes: [0; FastOpenCookie::MAX_LEN],
    };

    /// A cookie of these bytes, if their number is one RFC 7413 allows: 4 to 16, and even,
    /// as Linux requires (`tcp_parse_fastopen_option`).
    pub fn new(cookie: &[u8]) -> Option<FastOpenCookie> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&cookie.len())
            || !cookie.len().is_multiple_of(2)
        {
            return None;
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..cookie.len()].copy_from_slice(cookie);
        Some(FastOpenCookie {
            len: cookie.len() as u8,
            exp: false,
            bytes,
        })
    }

    /// Whether it travels in the experimental option (kind 254, ExID 0xF989).
    pub fn is_experimental(&self) -> bool {
        self.exp
    }

    /// The same cookie in the experimental option's form (`true`) or kind 34's.
    pub fn experimental(mut self, exp: bool) -> FastOpenCookie {
        self.exp = exp;
        self
    }

    /// The cookie's bytes (empty for a request).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether this is a cookie request (no cookie).
    pub fn is_request(&self) -> bool {
        self.len == 0
    }

    /// The option's bytes on the wire, padded with NOPs to a multiple of four as Linux pads
    /// it (`tcp_options_write`).
    fn wire_len(&self) -> usize {
        self.option_len().div_ceil(4) * 4
    }

    /// The option's length field: kind, length (and ExID) and the cookie.
    fn option_len(&self) -> usize {
        let base = if self.exp { 4 } else { 2 };
        base + usize::from(self.len)
    }
}

/// The eight TCP control bits of header byte 13 (RFC 9293 §3.1; ECE and CWR from RFC 3168).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// No flags.
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set in `self`.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for TcpFlags {
    /// Prints set flags in bit order joined by `|`, e.g. `SYN|ACK`; no flags print as `-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The Timestamps option (RFC 7323 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimestamp {
    /// TS Value: the sender's timestamp clock.
    pub tsval: u32,
    /// TS Echo Reply: the most recent TSval received (valid when ACK is set).
    pub tsecr: u32,
}

/// A zero-copy view of a TCP segment.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking anything; getters may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the fixed header is present, the data offset is at least 5 words (RFC 9293
    /// §3.1: "the TCP header (even one including options) is an integer multiple of 32 bits"
    /// and at least 20 bytes), and the header it claims fits the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::SEQ_NUM))
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::ACK_NUM))
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The eight control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window field, unscaled.
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WIN_SIZE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_pointer(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    /// The option bytes. Call `check_len` first.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload. Call `check_len` first.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum verifies against the pseudo-header of `src`, `dst`. False when the
    /// families differ.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u32::try_from(data.len()) else {
            return false;
        };
        match checksum::pseudo_header(src, dst, IpProtocol::Tcp, len) {
            Some(pseudo) => checksum::verifies(pseudo + checksum::partial(data)),
            None => false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    fn set_u32(&mut self, at: usize, v: u32) {
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16(field::SRC_PORT, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16(field::DST_PORT, v);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, v: SeqNumber) {
        self.set_u32(field::SEQ_NUM, v.0);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, v: SeqNumber) {
        self.set_u32(field::ACK_NUM, v.0);
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60); clears the reserved
    /// bits.
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    /// Sets the control bits.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the window field.
    pub fn set_window_len(&mut self, v: u16) {
        self.set_u16(field::WIN_SIZE, v);
    }

    /// Sets the checksum field to a raw value.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_pointer(&mut self, v: u16) {
        self.set_u16(field::URGENT, v);
    }

    /// Stores only the folded sum of the pseudo-header, for the buffer's whole length, not
    /// complemented: transmit checksum offload (Linux's `CHECKSUM_PARTIAL`, as
    /// `tcp_v4_send_check` leaves it; virtio-net's `VIRTIO_NET_HDR_F_NEEDS_CSUM`). The device
    /// completes it by summing from the start of the TCP header to the end (this field
    /// included) and storing the complement, which gives the full checksum: the pseudo-header
    /// sum is already in the field, and the one's complement sum is order-independent
    /// (RFC 1071 §2). For a super-segment the device, cutting it, adjusts the length it holds
    /// per segment, as Linux's `tcp_gso_segment` does. The payload is not read.
    pub fn fill_checksum_partial(&mut self, src: IpAddr, dst: IpAddr) {
        let len = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp, len).unwrap_or(0);
        self.set_checksum(checksum::fold(pseudo));
    }

    /// Computes and stores the checksum over the whole buffer and the pseudo-header.
    ///
    /// Mixed address families have no pseudo-header; the checksum is then computed without
    /// one, which no receiver will accept. Callers never build such a packet: `IpRepr::new`
    /// refuses it.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp, len).unwrap_or(0);
        let c = checksum::finish(pseudo + checksum::partial(data));
        self.set_checksum(c);
    }
}

/// A parsed TCP segment: header fields, the options this stack understands, and the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    /// Source port (0 parses: reserved, not malformed).
    pub src_port: u16,
    /// Destination port (0 parses: reserved, not malformed).
    pub dst_port: u16,
    /// Control bits, as received: judging combinations is the state machine's business.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq_number: SeqNumber,
    /// Acknowledgment number; emitted as given, meaningful when `flags` has ACK.
    pub ack_number: SeqNumber,
    /// Window field, unscaled.
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_pointer: u16,
    /// The MSS option (RFC 9293 §3.7.1), if present.
    pub max_seg_size: Option<u16>,
    /// The Window Scale option's raw shift (RFC 7323 §2), if present; not clamped here.
    pub window_scale: Option<u8>,
    /// Whether SACK-Permitted (RFC 2018 §2) is present.
    pub sack_permitted: bool,
    /// SACK blocks (RFC 2018 §3) as (left, right) edges, in option order, filled from the
    /// front.
    pub sack_ranges: [Option<(SeqNumber, SeqNumber)>; 4],
    /// The Timestamps option (RFC 7323 §3), if present.
    pub timestamp: Option<TcpTimestamp>,
    /// The TCP Fast Open option (RFC 7413 §4.1.1), if present and well formed; only SYNs and
    /// SYN-ACKs carry it.
    pub fast_open: Option<FastOpenCookie>,
    /// Whether the segment is signed: it carries a TCP MD5 Signature (RFC 2385) or a TCP-AO
    /// MAC (RFC 5925). Parsed, never emitted: synack holds no keys, so the endpoint drops
    /// such segments as Linux drops them at a socket that has none.
    pub signed: bool,
    /// The segment's data.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// A repr with the given ports/flags/seq/ack and everything else zero/None/empty.
    pub fn new(
        src_port: u16,
        dst_port: u16,
        flags: TcpFlags,
        seq: SeqNumber,
        ack: SeqNumber,
    ) -> Self {
        TcpRepr {
            src_port,
            dst_port,
            flags,
            seq_number: seq,
            ack_number: ack,
            window_len: 0,
            urgent_pointer: 0,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 4],
            timestamp: None,
            fast_open: None,
            signed: false,
            payload: &[],
        }
    }

    /// Parses a segment carried between `src` and `dst` (the IP payload, exactly).
    ///
    /// In order: fixed header present (`Truncated`), data offset (< 5 `Malformed`, past the
    /// end `Truncated`), address families agree (`Malformed`), checksum (`Checksum`), ports
    /// (0 is `Malformed`), then the option list (`BadOption`), by RFC 9293 §3.1/§3.2:
    /// - EOL ends the list; NOP is skipped; any other kind has a length byte covering kind and
    ///   length, which must be ≥ 2 and stay inside the option area.
    /// - Unknown kinds are skipped by that length.
    /// - Known kinds must have their RFC length: MSS 4, Window Scale 3 (RFC 7323 §2.2),
    ///   SACK-Permitted 2 (RFC 2018 §2), Timestamps 10 (RFC 7323 §3.2), SACK 2 + 8n
    ///   (RFC 2018 §3; n ≤ 4 follows from the 40-byte option area).
    /// - Fast Open (RFC 7413 §4.1.1, kind 34, or kind 254 with ExID 0xF989) is taken only
    ///   with a length Linux takes (a request, or an even cookie of 4 to 16 bytes) and is
    ///   otherwise ignored, not an error, as Linux ignores it.
    /// - The signature options, TCP MD5 (RFC 2385 §3.0, length 18) and TCP-AO (RFC 5925
    ///   §2.2, longer than its 4-byte header), set `signed`; a wrong length, or a second
    ///   signature of either kind, is an error (Linux's `tcp_do_parse_auth_options`; RFC 5925
    ///   §2.2: TCP-AO "MUST NOT" be used with TCP MD5 on one segment).
    ///
    /// `checksum_verified` says the link has already verified the checksum, or computed it
    /// itself (receive checksum offload, Linux `CHECKSUM_UNNECESSARY`; see
    /// [`RecvMeta::checksum_verified`](crate::RecvMeta::checksum_verified)): every check but
    /// the checksum is made. Pass `false` for bytes of unknown origin.
    ///
    /// Option values are not range-checked (MSS 0, a shift of 200 parse); a later copy of an
    /// option replaces an earlier one.
    pub fn parse(
        segment: &'a [u8],
        src: IpAddr,
        dst: IpAddr,
        checksum_verified: bool,
    ) -> Result<TcpRepr<'a>, WireError> {
        let packet = Packet::new_checked(segment)?;
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(WireError::Malformed);
        }
        // RFC 9293 §3.1: the checksum covers pseudo-header, header and data; RFC 1122
        // §4.2.2.7: a segment with a bad checksum is silently discarded.
        if !checksum_verified && !packet.verify_checksum(src, dst) {
            return Err(WireError::Checksum);
        }
        // Port 0 is reserved (IANA) but not malformed: Linux's `tcp_v4_rcv` looks a segment
        // to port 0 up like any other (no socket has it, so a SYN draws an RST) and lets a
        // SYN from port 0 reach a listener. The demultiplexer never takes 0 as a wildcard.
        let mut repr = TcpRepr::new(
            packet.src_port(),
            packet.dst_port(),
            packet.flags(),
            packet.seq_number(),
            packet.ack_number(),
        );
        repr.window_len = packet.window_len();
        repr.urgent_pointer = packet.urgent_pointer();
        parse_options(&segment[HEADER_LEN..packet.header_len()], &mut repr)?;
        repr.payload = &segment[packet.header_len()..];
        Ok(repr)
    }

    /// The option bytes this repr emits, before padding.
    fn options_len(&self) -> usize {
        let len = self.fixed_options_len();
        match self.emitted_sack_blocks(len) {
            0 => len,
            blocks => len + 4 + 8 * blocks,
        }
    }

    /// The option bytes beside the SACK blocks: MSS, timestamps/SACK-permitted, window scale,
    /// Fast Open. At most 20 without Fast Open (so SACK always has room for at least two
    /// blocks); Fast Open rides only on SYNs, which carry no SACK blocks.
    fn fixed_options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.timestamp.is_some() {
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        if let Some(cookie) = self.fast_open {
            len += cookie.wire_len();
        }
        len
    }

    /// How many SACK blocks fit after `used` bytes of other options: as many as are given, up
    /// to what the 40-byte option area leaves (Linux does the same: 3 next to timestamps).
    fn emitted_sack_blocks(&self, used: usize) -> usize {
        let given = self.sack_ranges.iter().flatten().count();
        let room = MAX_OPTIONS_LEN.saturating_sub(used + 4) / 8;
        given.min(room)
    }

    /// Header length: 20 plus options, a multiple of 4 (at most 60).
    pub fn header_len(&self) -> usize {
        // Every option block we emit is already word-sized; the rounding is belt and braces.
        HEADER_LEN + self.options_len().div_ceil(4) * 4
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// The sequence space the segment occupies: payload, plus one each for SYN and FIN (RFC
    /// 9293 §3.4: "SEG.LEN = the number of octets occupied by the data in the segment
    /// (counting SYN and FIN)").
    pub fn seq_len(&self) -> usize {
        let mut len = self.payload.len();
        if self.flags.contains(TcpFlags::SYN) {
            len += 1;
        }
        if self.flags.contains(TcpFlags::FIN) {
            len += 1;
        }
        len
    }

    /// Writes header, options, payload and checksum into `buf[..buffer_len()]`.
    ///
    /// SACK blocks that do not fit the 40-byte option area beside the other options are left
    /// out (the first ones are kept: RFC 2018 §4 puts the most recent block first). The
    /// reserved bits and the historic NS/AE bit of byte 12 are sent as zero.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr) {
        let header_len = self.header_len();
        let end = header_len + self.payload.len();
        buf[header_len..end].copy_from_slice(self.payload);
        self.emit_in_place(buf, src, dst, self.payload.len());
    }

    /// Like [`emit`](Self::emit), but the `payload_len` payload bytes already sit at
    /// `buf[header_len()..]` and `self.payload` is ignored, so a sender can copy from its
    /// send buffer straight into the packet.
    ///
    /// # Panics
    /// If `buf` is shorter than `header_len() + payload_len`.
    pub fn emit_in_place(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr, payload_len: usize) {
        self.emit_header(buf, payload_len).fill_checksum(src, dst);
    }

    /// Writes header fields and options over `buf[..header_len()]`, leaving the checksum
    /// to the caller ([`Packet::fill_checksum`], or [`Packet::fill_checksum_partial`] for a
    /// device that completes it), and returns the packet of `header_len() + payload_len`
    /// bytes.
    pub(crate) fn emit_header<'b>(
        &self,
        buf: &'b mut [u8],
        payload_len: usize,
    ) -> Packet<&'b mut [u8]> {
        let header_len = self.header_len();
        let mut packet = Packet::new_unchecked(&mut buf[..header_len + payload_len]);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_pointer(self.urgent_pointer);
        let written = self.emit_options(&mut packet.buffer[HEADER_LEN..header_len]);
        // Pad with EOL (zero) bytes up to the data offset (RFC 9293 §3.1 "Padding").
        packet.buffer[HEADER_LEN + written..header_len].fill(opt::EOL);
        packet
    }

    /// Writes the options in Linux's `tcp_options_write` order, so that our SYNs look like the
    /// kernel's (and middleboxes that learned the kernel's layout see nothing new):
    /// `<mss>`, then `<sackOK, TS>` sharing a word (or `<nop, nop, TS>`, or `<nop, nop,
    /// sackOK>`), then `<nop, wscale>`, then `<nop, nop, SACK blocks>`, then `<FO cookie>`
    /// padded with NOPs. Returns bytes written.
    fn emit_options(&self, out: &mut [u8]) -> usize {
        let blocks = self.emitted_sack_blocks(self.fixed_options_len());
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.max_seg_size {
            let m = mss.to_be_bytes();
            put(&[opt::MSS, opt::MSS_LEN, m[0], m[1]]);
        }
        if let Some(ts) = self.timestamp {
            if self.sack_permitted {
                put(&[opt::SACK_PERM, opt::SACK_PERM_LEN, opt::TS, opt::TS_LEN]);
            } else {
                put(&[opt::NOP, opt::NOP, opt::TS, opt::TS_LEN]);
            }
            put(&ts.tsval.to_be_bytes());
            put(&ts.tsecr.to_be_bytes());
        } else if self.sack_permitted {
            put(&[opt::NOP, opt::NOP, opt::SACK_PERM, opt::SACK_PERM_LEN]);
        }
        if let Some(shift) = self.window_scale {
            put(&[opt::NOP, opt::WS, opt::WS_LEN, shift]);
        }
        if blocks > 0 {
            put(&[opt::NOP, opt::NOP, opt::SACK, (2 + 8 * blocks) as u8]);
            for (left, right) in self.sack_ranges.iter().flatten().take(blocks) {
                put(&left.0.to_be_bytes());
                put(&right.0.to_be_bytes());
            }
        }
        if let Some(cookie) = self.fast_open {
            let len = cookie.option_len();
            if cookie.is_experimental() {
                let [hi, lo] = opt::FAST_OPEN_EXID.to_be_bytes();
                put(&[opt::EXPERIMENTAL, len as u8, hi, lo]);
            } else {
                put(&[opt::FAST_OPEN, len as u8]);
            }
            put(cookie.as_bytes());
            for _ in len..cookie.wire_len() {
                put(&[opt::NOP]);
            }
        }
        at
    }
}

/// A Fast Open option's value: a request (empty) or a cookie Linux would take.
fn fast_open_cookie(value: &[u8]) -> Option<FastOpenCookie> {
    if value.is_empty() {
        Some(FastOpenCookie::REQUEST)
    } else {
        FastOpenCookie::new(value)
    }
}

/// Walks the option area into `repr` (RFC 9293 §3.2).
fn parse_options(mut options: &[u8], repr: &mut TcpRepr<'_>) -> Result<(), WireError> {
    while let Some(&kind) = options.first() {
        match kind {
            // RFC 9293 §3.2: "End of Option List ... used at the end of all options, not the
            // end of each option"; what follows is padding.
            opt::EOL => break,
            opt::NOP => {
                options = &options[1..];
                continue;
            }
            _ => {}
        }
        // RFC 9293 §3.2: every other option has a length octet that counts kind and length.
        // RFC 9293 §3.1 (MUST-68 context): an implementation must be prepared for illegal
        // option lengths without crashing; we drop the segment.
        let len = usize::from(*options.get(1).ok_or(WireError::BadOption)?);
        if len < 2 || len > options.len() {
            return Err(WireError::BadOption);
        }
        let value = &options[2..len];
        match kind {
            opt::MSS => {
                if len != usize::from(opt::MSS_LEN) {
                    return Err(WireError::BadOption);
                }
                repr.max_seg_size = Some(u16::from_be_bytes([value[0], value[1]]));
            }
            opt::WS => {
                if len != usize::from(opt::WS_LEN) {
                    return Err(WireError::BadOption);
                }
                repr.window_scale = Some(value[0]);
            }
            opt::SACK_PERM => {
                if len != usize::from(opt::SACK_PERM_LEN) {
                    return Err(WireError::BadOption);
                }
                repr.sack_permitted = true;
            }
            opt::TS => {
                if len != usize::from(opt::TS_LEN) {
                    return Err(WireError::BadOption);
                }
                repr.timestamp = Some(TcpTimestamp {
                    tsval: u32::from_be_bytes([value[0], value[1], value[2], value[3]]),
                    tsecr: u32::from_be_bytes([value[4], value[5], value[6], value[7]]),
                });
            }
            opt::SACK => {
                // RFC 2018 §3: "Length: Variable", 8 bytes per block. The 40-byte option
                // area bounds n at 4, which is also the size of `sack_ranges`.
                if !value.chunks_exact(8).remainder().is_empty() {
                    return Err(WireError::BadOption);
                }
                let mut ranges = [None; 4];
                if value.len() / 8 > ranges.len() {
                    return Err(WireError::BadOption);
                }
                for (slot, block) in ranges.iter_mut().zip(value.chunks_exact(8)) {
                    let left = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
                    let right = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                    *slot = Some((SeqNumber(left), SeqNumber(right)));
                }
                repr.sack_ranges = ranges;
            }
            opt::MD5 | opt::AO => {
                let ok = match kind {
                    opt::MD5 => len == usize::from(opt::MD5_LEN),
                    _ => len > usize::from(opt::AO_HEADER_LEN),
                };
                if !ok || repr.signed {
                    return Err(WireError::BadOption);
                }
                repr.signed = true;
            }
            opt::FAST_OPEN => repr.fast_open = fast_open_cookie(value).or(repr.fast_open),
            opt::EXPERIMENTAL
                if value.len() >= 2
                    && u16::from_be_bytes([value[0], value[1]]) == opt::FAST_OPEN_EXID =>
            {
                repr.fast_open = fast_open_cookie(&value[2..])
                    .map(|c| c.experimental(true))
                    .or(repr.fast_open);
            }
            // RFC 9293 §3.2 (MUST-6): "A TCP implementation MUST ignore without error any TCP
            // option it does not implement, assuming that the option has a length field".
            _ => {}
        }
        options = &options[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2));

    fn emit(repr: &TcpRepr<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf, A, B);
        buf
    }

    fn syn() -> TcpRepr<'static> {
        TcpRepr::new(1000, 80, TcpFlags::SYN, SeqNumber(7), SeqNumber(0))
    }

    #[test]
    fn fast_open_options_are_laid_out_as_linux_lays_them() {
        // A cookie request after the other SYN options, padded: Linux's
        // `<mss 1460,nop,nop,sackOK,nop,wscale 8,FO,nop,nop>`.
        let mut r = syn();
        r.max_seg_size = Some(1460);
        r.sack_permitted = true;
        r.window_scale = Some(8);
        r.fast_open = Some(FastOpenCookie::REQUEST);
        let b = emit(&r);
        assert_eq!(b[20..], [2, 4, 5, 180, 1, 1, 4, 2, 1, 3, 3, 8, 34, 2, 1, 1]);
        assert_eq!(TcpRepr::parse(&b, A, B, false).unwrap(), r);
        // An 8-byte cookie next to timestamps: 10 bytes, two NOPs; 40 bytes in all at most.
        r.timestamp = Some(TcpTimestamp { tsval: 1, tsecr: 0 });
        r.fast_open = FastOpenCookie::new(&[0xab, 0xcd, 0x12, 0x34, 5, 6, 7, 8]);
        let b = emit(&r);
        assert_eq!(
            b[40..52],
            [34, 10, 0xab, 0xcd, 0x12, 0x34, 5, 6, 7, 8, 1, 1]
        );
        assert_eq!(TcpRepr::parse(&b, A, B, false).unwrap(), r);
        r.fast_open = FastOpenCookie::new(&[9; 16]);
        assert_eq!(r.header_len(), 60);
        let b = emit(&r);
        assert_eq!(TcpRepr::parse(&b, A, B, false).unwrap(), r);
        // The experimental form, as a server answers a client that used it: kind 254, the
        // ExID, the cookie; 12 bytes for 8, no padding (`FOEXP 0102030405060708`).
        r.fast_open = FastOpenCookie::new(&[1, 2, 3, 4, 5, 6, 7, 8]).map(|c| c.experimental(true));
        let b = emit(&r);
        assert_eq!(b[40..52], [254, 12, 0xf9, 0x89, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(TcpRepr::parse(&b, A, B, false).unwrap(), r);
    }

    #[test]
    fn fast_open_option_of_odd_or_wrong_length_is_ignored_and_the_old_form_is_read() {
        assert_eq!(FastOpenCookie::new(&[1, 2, 3]), None);
        assert_eq!(FastOpenCookie::new(&[1; 5]), None);
        assert_eq!(FastOpenCookie::new(&[1; 18]), None);
        let parse = |options: &[u8]| {
            let mut b = emit(&syn());
            let mut packet = b[..20].to_vec();
            packet.extend_from_slice(options);
            while !packet.len().is_multiple_of(4) {
                packet.push(0);
            }
            b = packet;
            let len = b.len();
            Packet::new_unchecked(&mut b[..]).set_header_len(len);
            Packet::new_unchecked(&mut b[..]).fill_checksum(A, B);
            TcpRepr::parse(&b, A, B, false).map(|r| r.fast_open)
        };
        assert_eq!(parse(&[34, 5, 1, 2, 3]), Ok(None));
        assert_eq!(parse(&[34, 2]), Ok(Some(FastOpenCookie::REQUEST)));
        assert_eq!(
            parse(&[254, 8, 0xf9, 0x89, 1, 2, 3, 4]),
            Ok(FastOpenCookie::new(&[1, 2, 3, 4]).map(|c| c.experimental(true)))
        );
        assert_eq!(
            parse(&[254, 4, 0xf9, 0x89]),
            Ok(Some(FastOpenCookie::REQUEST.experimental(true)))
        );
        assert_eq!(parse(&[254, 8, 0xf9, 0x88, 1, 2, 3, 4]), Ok(None));
    }

    #[test]
    fn flags_debug_and_ops() {
        assert_eq!(format!("{:?}", TcpFlags::SYN | TcpFlags::ACK), "SYN|ACK");
        assert_eq!(format!("{:?}", TcpFlags::empty()), "-");
        assert_eq!(
            format!("{:?}", TcpFlags(0xff)),
            "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR"
        );
        let mut f = TcpFlags::FIN;
        f |= TcpFlags::ACK;
        assert!(f.contains(TcpFlags::ACK) && f.contains(TcpFlags::FIN));
        assert!(f.contains(TcpFlags::FIN | TcpFlags::ACK));
        assert!(!f.contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(f.contains(TcpFlags::empty()));
        assert_eq!(TcpFlags::default(), TcpFlags::empty());
    }

    #[test]
    fn seq_len_counts_syn_and_fin() {
        let mut r = syn();
        assert_eq!(r.seq_len(), 1);
        r.flags = TcpFlags::SYN | TcpFlags::FIN;
        r.payload = b"abc";
        assert_eq!(r.seq_len(), 5);
        r.flags = TcpFlags::ACK;
        assert_eq!(r.seq_len(), 3);
    }

    #[test]
    fn option_layouts_match_linux() {
        let mut r = syn();
        r.max_seg_size = Some(1460);
        assert_eq!(&emit(&r)[20..], &[2, 4, 0x05, 0xb4]);

        r.window_scale = Some(7);
        assert_eq!(&emit(&r)[20..], &[2, 4, 5, 0xb4, 1, 3, 3, 7]);

        r.window_scale = None;
        r.sack_permitted = true;
        assert_eq!(&emit(&r)[20..], &[2, 4, 5, 0xb4, 1, 1, 4, 2]);

        r.window_scale = Some(10);
        assert_eq!(&emit(&r)[20..], &[2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 10]);

        r.timestamp = Some(TcpTimestamp {
            tsval: 0x01020304,
            tsecr: 0,
        });
        assert_eq!(
            &emit(&r)[20..],
            &[2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 10]
        );

        r.sack_permitted = false;
        assert_eq!(
            &emit(&r)[20..],
            &[2, 4, 5, 0xb4, 1, 1, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 10]
        );
    }

    #[test]
    fn non_syn_timestamp_then_sack() {
        let mut r = TcpRepr::new(1000, 80, TcpFlags::ACK, SeqNumber(7), SeqNumber(9));
        r.timestamp = Some(TcpTimestamp { tsval: 5, tsecr: 6 });
        r.sack_ranges[0] = Some((SeqNumber(100), SeqNumber(200)));
        let bytes = emit(&r);
        assert_eq!(
            &bytes[20..],
            &[1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6, 1, 1, 5, 10, 0, 0, 0, 100, 0, 0, 0, 200]
        );
        assert_eq!(TcpRepr::parse(&bytes, A, B, false).unwrap(), r);
    }

    #[test]
    fn sack_blocks_are_cut_to_fit() {
        let mut r = TcpRepr::new(1000, 80, TcpFlags::ACK, SeqNumber(7), SeqNumber(9));
        for i in 0..4u32 {
            r.sack_ranges[i as usize] = Some((SeqNumber(i * 100), SeqNumber(i * 100 + 50)));
        }
        // Without timestamps all four fit: 4 + 32 = 36 bytes.
        assert_eq!(r.header_len(), 56);
        assert_eq!(TcpRepr::parse(&emit(&r), A, B, false).unwrap(), r);
        // With timestamps only three do: 12 + 4 + 24 = 40.
        r.timestamp = Some(TcpTimestamp { tsval: 1, tsecr: 2 });
        assert_eq!(r.header_len(), 60);
        let parsed_bytes = emit(&r);
        let parsed = TcpRepr::parse(&parsed_bytes, A, B, false).unwrap();
        assert_eq!(parsed.sack_ranges[..3], r.sack_ranges[..3]);
        assert_eq!(parsed.sack_ranges[3], None);
    }

    #[test]
    fn emit_in_place_matches_emit() {
        let mut r = TcpRepr::new(
            1000,
            80,
            TcpFlags::PSH | TcpFlags::ACK,
            SeqNumber(1),
            SeqNumber(2),
        );
        r.window_len = 512;
        r.timestamp = Some(TcpTimestamp { tsval: 9, tsecr: 8 });
        r.payload = b"hello, world";
        let whole = emit(&r);
        let mut buf = vec![0xaau8; r.buffer_len()];
        buf[r.header_len()..].copy_from_slice(b"hello, world");
        let mut header_only = r;
        header_only.payload = &[];
        header_only.emit_in_place(&mut buf, A, B, 12);
        assert_eq!(buf, whole);
    }

    #[test]
    fn view_getters_and_checksum() {
        let mut r = syn();
        r.window_len = 0xfaf0;
        r.urgent_pointer = 3;
        r.max_seg_size = Some(536);
        let bytes = emit(&r);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (1000, 80));
        assert_eq!(p.seq_number(), SeqNumber(7));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert_eq!(p.window_len(), 0xfaf0);
        assert_eq!(p.urgent_pointer(), 3);
        assert_eq!(p.options(), &[2, 4, 2, 0x18]);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(A, B));
        // The pseudo-header sum is symmetric in src/dst, so change an address instead.
        let c = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 3));
        assert!(!p.verify_checksum(A, c));
        let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        assert!(!p.verify_checksum(A, v6));
    }

    #[test]
    fn mixed_families_are_malformed() {
        let bytes = emit(&syn());
        let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        assert_eq!(
            TcpRepr::parse(&bytes, A, v6, false),
            Err(WireError::Malformed)
        );
    }
}

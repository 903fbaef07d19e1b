"""Hand-built IPv4/TCP packets and the two ways the attack scripts put them on the TUN.

Shared by the scripts in this directory (each is run as `python3 SCRIPT ARGS` inside the test's
network namespace, so this directory is on sys.path). No scapy here: the flood and the sweeps
need tens of thousands of packets a second, which struct packing gives and scapy does not.
"""
import socket
import struct

IPPROTO_TCP = 6
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


def checksum(data):
    """RFC 1071 internet checksum of `data`."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_header(src, dst, payload_len, proto=IPPROTO_TCP, ident=0, frag=0, options=b""):
    """A 20-byte (plus options) IPv4 header with a correct checksum; `frag` is the raw
    flags+offset field (0x4000 is DF alone)."""
    ihl = 5 + len(options) // 4
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl, 0, ihl * 4 + payload_len, ident, frag, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    ) + options
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]


def tcp_segment(src, dst, sport, dport, seq, ack, flags, window=65535, options=b"", payload=b"",
                doff=None, fix_checksum=True):
    """A TCP segment whose checksum covers the RFC 9293 §3.1 pseudo-header, unless
    `fix_checksum` is false (then it is left 0, wrong for almost every segment)."""
    if doff is None:
        doff = 5 + len(options) // 4
    seg = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
        (doff & 0xF) << 4, flags & 0xFF, window, 0, 0,
    ) + options + payload
    if fix_checksum:
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(
            "!BBH", 0, IPPROTO_TCP, len(seg))
        seg = seg[:16] + struct.pack("!H", checksum(pseudo + seg)) + seg[18:]
    return seg


def tcp_packet(src, dst, sport, dport, seq, ack, flags, **kw):
    seg = tcp_segment(src, dst, sport, dport, seq, ack, flags, **kw)
    return ipv4_header(src, dst, len(seg)) + seg


class RawSender:
    """An IPPROTO_RAW socket (IP_HDRINCL): the kernel routes our headers as they are, spoofed
    source included, but rewrites the IP checksum and total length. Good for well-formed
    packets from any source."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)

    def send(self, packet):
        dst = socket.inet_ntoa(packet[16:20])
        try:
            self.sock.sendto(packet, (dst, 0))
            return True
        except OSError:
            return False


class LinkSender:
    """An AF_PACKET socket on the TUN itself: the bytes reach the stack exactly as given, with
    wrong checksums, lengths and truncations intact (a TUN in IFF_NO_PI mode has no link
    header)."""

    ETH_P_IP = 0x0800

    def __init__(self, iface):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(self.ETH_P_IP))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        self.addr = (iface, self.ETH_P_IP)

    def send(self, packet):
        try:
            self.sock.sendto(packet, self.addr)
            return True
        except OSError:
            return False

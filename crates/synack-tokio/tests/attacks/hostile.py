"""Builds thousands of hostile packets for the stack, one file per kind, with scapy.

Each kind is a family of malformations with one expected fate in the stack; the Rust test
(kernel_attacks.rs, `kernel_hostile_packets_are_counted_and_survived`) holds the expectation
per kind. Every packet goes from a spoofed source in 198.19.0.0/16 to DST, so whatever the
stack answers dies in the namespace's kernel and nothing comes back to muddle the counts.
Packets that must reach a connection-less port use CLOSED; those for a listener use LISTEN.

usage: hostile.py OUTDIR DST CLOSED LISTEN SEED BCAST
(BCAST: the TUN link's broadcast address, the source of some of the martians)
writes: OUTDIR/KIND.bin, each packet as a 2-byte big-endian length and its bytes
prints: "KIND COUNT" per kind
"""
import os
import random
import struct
import sys

from scapy.all import ICMP, IP, TCP, UDP, Raw, fragment, raw  # noqa: E402

import rawip

outdir, dst = sys.argv[1], sys.argv[2]
closed, listen, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
bcast = sys.argv[6]
rng = random.Random(seed)
# How many times each variant is repeated (each time from a fresh source address and port).
REPEAT = 16


def src():
    return "198.19.%d.%d" % (rng.randrange(256), rng.randrange(1, 255))


def sport():
    return rng.randrange(1024, 65536)


def ack_to(port, flags="A", **kw):
    """A well-formed segment, an ACK unless `flags` says otherwise (scapy computes lengths and
    checksums)."""
    return IP(src=src(), dst=dst) / TCP(sport=sport(), dport=port, flags=flags,
                                        seq=rng.getrandbits(32), ack=rng.getrandbits(32), **kw)


def fix_tcp_checksum(pkt):
    """Recomputes the TCP checksum of an IPv4 packet (20-byte IP header) after byte surgery
    on its TCP header, so that only the intended defect remains."""
    ip, seg = pkt[:20], bytearray(pkt[20:])
    seg[16:18] = b"\0\0"
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(seg))
    seg[16:18] = struct.pack("!H", rawip.checksum(pseudo + bytes(seg)))
    return ip + bytes(seg)


def with_options(port, flags, opts):
    """An IPv4 packet carrying a TCP segment with exactly the option bytes `opts` (padded with
    EOL to a multiple of 4), data offset and checksums right."""
    opts = opts + b"\0" * (-len(opts) % 4)
    s = src()
    seg = rawip.tcp_segment(s, dst, sport(), port, rng.getrandbits(32), rng.getrandbits(32),
                            flags, options=opts)
    return rawip.ipv4_header(s, dst, len(seg)) + seg


kinds = {}

# IP headers cut short, or claiming lengths the packet does not have: RFC 791 §3.1.
v = []
for _ in range(REPEAT):
    whole = raw(ack_to(closed))
    v += [whole[:n] for n in range(1, 20)]                     # shorter than a header
    for ihl in range(0, 5):                                    # IHL below 5 words
        b = bytearray(whole); b[0] = 0x40 | ihl; v.append(bytes(b))
    b = bytearray(whole); b[0] = 0x4F; v.append(bytes(b[:40]))  # IHL 60 bytes in 40
    b = bytearray(whole); b[2:4] = struct.pack("!H", 200); v.append(bytes(b))  # total > buffer
    b = bytearray(whole); b[2:4] = struct.pack("!H", 12); v.append(bytes(b))   # total < header
kinds["ip_truncated"] = v

# Valid IP (scapy's checksum), TCP cut short: 0 to 19 bytes of a 20-byte header.
v = []
for _ in range(REPEAT):
    seg = raw(ack_to(closed)[TCP])
    for n in range(0, 20):
        v.append(raw(IP(src=src(), dst=dst, proto=6) / Raw(seg[:n])))
kinds["tcp_truncated"] = v

# Data offsets below 5 words, and above what the segment holds (RFC 9293 §3.1).
v = []
for _ in range(REPEAT):
    for doff in list(range(0, 5)) + list(range(6, 16)):
        b = bytearray(raw(ack_to(closed)))
        b[32] = (doff << 4) | (b[32] & 0x0F)
        v.append(fix_tcp_checksum(bytes(b)))
kinds["bad_data_offset"] = v

# Option lists that do not parse: lengths 0 and 1, lengths past the end of the option area,
# known options with the wrong length, a kind with no length byte, SACK blocks that are not
# 8 bytes (RFC 9293 §3.2, RFC 2018 §3).
bad_opts = [
    b"\x02\x00\x05\xb4", b"\x02\x01\x05\xb4", b"\x63\x00", b"\x63\x01",
    b"\x02\x28", b"\x08\x0a\x00\x00", b"\x01\x01\x01\x02", b"\x1e\xff\x00\x00",
    b"\x02\x05\x05\xb4\x00", b"\x02\x03\x05", b"\x03\x04\x07\x00", b"\x03\x02",
    b"\x04\x03\x00", b"\x08\x06\x00\x00\x00\x00", b"\x08\x0b" + b"\0" * 9,
    b"\x05\x0b" + b"\0" * 9, b"\x05\x09" + b"\0" * 7, b"\x05\x03\x00", b"\x05\x00",
    b"\x01" * 36 + b"\x05\x0a",
]
v = []
for _ in range(REPEAT):
    for opts in bad_opts:
        v.append(with_options(closed, rawip.ACK, opts))
        v.append(with_options(listen, rawip.SYN, opts))
kinds["bad_option"] = v

# Signed segments, well formed: a TCP MD5 signature (RFC 2385) and a TCP-AO MAC (RFC 5925).
# The stack holds no keys, so each is dropped, to a closed port (no RST) and to a listener.
signatures = [b"\x13\x12" + bytes(range(16)), b"\x1d\x10\x01\x01" + b"\xcd" * 12]
v = []
for _ in range(REPEAT):
    for opts in signatures:
        v.append(with_options(closed, rawip.ACK, opts))
        v.append(with_options(closed, rawip.SYN, opts))
        v.append(with_options(listen, rawip.SYN, opts))
kinds["signed"] = v

# Option values that parse but are hostile: MSS 0 and 1, window scale 200 and 15 (RFC 7323
# §2.3 clamps to 14), zero timestamps, duplicated and unknown options, SACK-permitted twice.
# In a SYN to a listener each is a valid SYN that the stack answers with a SYN-ACK.
odd_syn_options = [
    [("MSS", 0)], [("MSS", 1)], [("MSS", 65535)], [("WScale", 200)], [("WScale", 15)],
    [("MSS", 0), ("WScale", 200), ("SAckOK", b""), ("Timestamp", (0, 0))],
    [("Timestamp", (0xFFFFFFFF, 0xFFFFFFFF))], [("SAckOK", b""), ("SAckOK", b"")],
    [("MSS", 536), ("MSS", 9000)], [("NOP", None)] * 40, [(99, b"\xff" * 6)], [(253, b"")],
    [("EOL", None)], [("SAck", (1, 2))],
]
v = []
for _ in range(REPEAT):
    for opts in odd_syn_options:
        p = IP(src=src(), dst=dst) / TCP(sport=sport(), dport=listen, flags="S",
                                          seq=rng.getrandbits(32), options=opts)
        v.append(raw(p))
kinds["syn_odd_options"] = v

# Garbage SACK blocks (RFC 2018) on ACKs, well-formed as options: reversed, empty, huge, the
# whole space. To the closed port and to the listener, an ACK is answered with an RST.
v = []
for _ in range(REPEAT):
    for blocks in [(5, 1), (0, 0), (0, 0xFFFFFFFF), (0xFFFFFFFF, 0),
                   (1, 2, 3, 4, 5, 6), (7, 7, 7, 7, 7, 7, 7, 7)]:
        for port in (closed, listen):
            v.append(raw(ack_to(port, options=[("SAck", blocks)])))
kinds["sack_garbage"] = v

# IP options (RFC 791 §3.1): NOPs, EOL, a record-route with room, a made-up option. The
# stack skips them, so each packet is a well-formed ACK to the closed port, answered by RST.
v = []
for _ in range(REPEAT):
    for opt in [b"\x01" * 4, b"\x00" * 4, b"\x01" * 40, b"\x07\x07\x04" + b"\0" * 5,
                b"\x07\x27\x04" + b"\0" * 37, b"\x9e\x04\x00\x00", b"\x94\x04\x00\x00"]:
        s = src()
        seg = rawip.tcp_segment(s, dst, sport(), closed, rng.getrandbits(32),
                                rng.getrandbits(32), rawip.ACK)
        v.append(rawip.ipv4_header(s, dst, len(seg), options=opt) + seg)
kinds["ip_options"] = v

# Fragments: first, middle and last pieces of a 3000-byte ACK, and MF alone (RFC 791 §3.2).
v = []
for _ in range(REPEAT):
    v += [raw(f) for f in fragment(ack_to(closed) / Raw(b"x" * 3000), fragsize=1000)]
    v.append(raw(IP(src=src(), dst=dst, flags="MF") / TCP(sport=sport(), dport=closed)))
    v.append(raw(IP(src=src(), dst=dst, frag=100) / Raw(b"y" * 64)))
kinds["fragments"] = v

# Checksums: a wrong IP header checksum, a wrong TCP checksum (RFC 1122 §3.2.1.2, §4.2.2.7).
v = []
for _ in range(REPEAT * 10):
    b = bytearray(raw(ack_to(closed)))
    b[10] ^= 0x5A
    v.append(bytes(b))
    b = bytearray(raw(ack_to(rng.choice([closed, listen]), flags="S")))
    b[36] ^= 0xA5
    v.append(bytes(b))
kinds["bad_checksum"] = v

# Port 0 at either end: reserved, but looked up like any port (as Linux's tcp_v4_rcv does),
# so each SYN here, to a closed port or to port 0, draws an RST.
v = []
for _ in range(REPEAT * 4):
    v.append(raw(IP(src=src(), dst=dst) / TCP(sport=0, dport=closed, flags="S")))
    v.append(raw(IP(src=src(), dst=dst) / TCP(sport=sport(), dport=0, flags="S")))
kinds["port_zero"] = v

# Not TCP or UDP, or not IP as we know it: SCTP, an unassigned protocol, version nibbles
# other than 4 and 6.
v = []
for _ in range(REPEAT * 4):
    v.append(raw(IP(src=src(), dst=dst, proto=132) / Raw(b"\0" * 12)))
    v.append(raw(IP(src=src(), dst=dst, proto=253) / Raw(b"\0" * 8)))
    for version in (0, 5, 7, 15):
        b = bytearray(raw(ack_to(closed)))
        b[0] = (version << 4) | 5
        v.append(bytes(b))
kinds["unsupported"] = v

# UDP to a port with no socket: dropped and counted, answered with a port unreachable as
# the rate limit allows (RFC 1122 §4.1.3.1).
v = []
for _ in range(REPEAT * 4):
    v.append(raw(IP(src=src(), dst=dst) / UDP(sport=sport(), dport=53) / Raw(b"q")))
kinds["udp_closed_port"] = v

# Martian sources (Linux's `ip_route_input_slow` jumps to `martian_source`): the link's
# broadcast address (its route is RTN_BROADCAST; an answer would go to the whole link), the
# stack's own address (a LAND attack), loopback and "this network" (RFC 1122 §3.2.1.3). From
# each, a SYN to the listener, an echo request and a datagram to a closed port: none is
# answered.
v = []
for _ in range(REPEAT):
    for s in (bcast, dst, "127.0.0.1", "0.1.2.3"):
        v.append(raw(IP(src=s, dst=dst) / TCP(sport=sport(), dport=listen, flags="S",
                                              seq=rng.getrandbits(32))))
        v.append(raw(IP(src=s, dst=dst) / ICMP(id=rng.getrandbits(16), seq=1) / Raw(b"ping")))
        v.append(raw(IP(src=s, dst=dst) / UDP(sport=sport(), dport=53) / Raw(b"q")))
kinds["martian_sources"] = v

# Every combination of the 8 TCP flags (RFC 9293 §3.1), to the closed port and to the
# listener, each from its own source so that none of them meets another's state.
for name, port in (("flags_closed", closed), ("flags_listen", listen)):
    v = []
    for flags in range(256):
        v.append(raw(IP(src=src(), dst=dst) / TCP(sport=sport(), dport=port, flags=flags,
                                                  seq=rng.getrandbits(32),
                                                  ack=rng.getrandbits(32))))
    kinds[name] = v

for name, packets in kinds.items():
    with open(os.path.join(outdir, name + ".bin"), "wb") as f:
        for p in packets:
            f.write(struct.pack("!H", len(p)) + p)
    print("%s %d" % (name, len(packets)))

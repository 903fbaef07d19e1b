"""Sends the packets of one file written by hostile.py, byte for byte, into the TUN IFACE
through an AF_PACKET socket (so the kernel neither checks nor fixes them), pausing now and
then so the TUN's queue never overflows.

usage: send_packets.py IFACE FILE
prints: "sent N"
"""
import struct
import sys
import time

import rawip

iface, path = sys.argv[1], sys.argv[2]
out = rawip.LinkSender(iface)
data = open(path, "rb").read()
pos = sent = 0
while pos + 2 <= len(data):
    (n,) = struct.unpack_from("!H", data, pos)
    packet = data[pos + 2:pos + 2 + n]
    pos += 2 + n
    sent += out.send(packet)
    if sent % 128 == 127:
        time.sleep(0.002)
print("sent %d" % sent)

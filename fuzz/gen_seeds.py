#!/usr/bin/env python3
"""Writes the ip_parse seed corpus from the Linux capture.

Each seed is one control byte (0x03: repair the IPv4 header and TCP/ICMP checksums after
mutation, see fuzz/src/wire.rs) followed by one IP packet of
crates/synack-core/tests/data/linux-handshakes.pcap: classic pcap, a 24-byte file header,
then 16-byte record headers, each followed by an Ethernet frame (14-byte link header). One
packet is kept per distinct (family, TCP flags, TCP header length, has payload) so the seed
set stays small: every option layout and control segment of the five flows, one data segment
per family.

Run from the repository root: python3 fuzz/gen_seeds.py
"""
import os
import struct

PCAP = "crates/synack-core/tests/data/linux-handshakes.pcap"
OUT = "fuzz/corpus/ip_parse"


def frames(data):
    at = 24
    while at + 16 <= len(data):
        incl, orig = struct.unpack("<II", data[at + 8 : at + 16])
        yield data[at + 16 : at + 16 + incl]
        at += 16 + incl


def key(packet):
    version = packet[0] >> 4
    if version == 4:
        tcp = packet[(packet[0] & 0x0F) * 4 :]
    else:
        tcp = packet[40:]
    header_len = (tcp[12] >> 4) * 4
    return (version, tcp[13], header_len, len(tcp) > header_len)


def main():
    os.makedirs(OUT, exist_ok=True)
    seen = set()
    with open(PCAP, "rb") as f:
        data = f.read()
    for i, frame in enumerate(frames(data)):
        packet = frame[14:]
        k = key(packet)
        if k in seen:
            continue
        seen.add(k)
        name = "seed-capture-%03d" % i
        with open(os.path.join(OUT, name), "wb") as out:
            out.write(b"\x03" + packet)
    print("wrote %d seeds to %s" % (len(seen), OUT))


if __name__ == "__main__":
    main()

#!/bin/sh
# defaults.sh with net.ipv4.tcp_rfc1337=1, for rfc1337-on-*.pkt.
./defaults.sh
sysctl -q net.ipv4.tcp_rfc1337=1
exit 0

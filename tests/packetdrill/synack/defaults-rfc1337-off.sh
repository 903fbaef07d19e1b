#!/bin/sh
# defaults.sh with net.ipv4.tcp_rfc1337=0 (Linux's default), for rfc1337-off-*.pkt.
./defaults.sh
sysctl -q net.ipv4.tcp_rfc1337=0
exit 0

#!/bin/sh
# defaults.sh with net.ipv4.tcp_dsack=0, for dsack-sysctl-off.pkt.
./defaults.sh
sysctl -q net.ipv4.tcp_dsack=0
exit 0

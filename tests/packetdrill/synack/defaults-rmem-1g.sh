#!/bin/sh
# defaults.sh with tcp_rmem's ceiling at 1 GiB, for wscale-14-large-rmem.pkt: the shim reads
# the sysctls when it starts, so the script's own header must set them, not the script.
./defaults.sh
sysctl -q net.ipv4.tcp_rmem="4096 540000 1073741824"
exit 0

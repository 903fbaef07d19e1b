#!/bin/sh
# The sysctls our own scripts assume, in the namespace scripts/packetdrill.sh made for them:
# Linux's defaults for the buffers as upstream's scripts set them (so that the window scale is
# 8 whatever the host's tcp_rmem), timestamps and SACK on.
sysctl -q net.ipv4.tcp_rmem="4096 540000 15728640"
sysctl -q net.ipv4.tcp_wmem="4096 262144 4194304"
sysctl -q net.ipv4.tcp_timestamps=1
sysctl -q net.ipv4.tcp_sack=1
sysctl -q net.ipv4.tcp_syn_retries=6
sysctl -q net.ipv4.tcp_synack_retries=5
# Linux 6.17+ only.
sysctl -q net.ipv4.tcp_syn_linear_timeouts=4 2>/dev/null
# CUBIC, as upstream's defaults select it (scripts/packetdrill.sh allows it for the run): a new
# namespace otherwise takes the host's default, whose skb sizing and ssthresh after a timeout
# may differ (BBR's do), while synack runs CUBIC whatever the sysctl says.
sysctl -q net.ipv4.tcp_congestion_control=cubic 2>/dev/null
exit 0

#!/usr/bin/env bash
# Run packetdrill scripts against synack (through crates/synack-packetdrill, a .so that
# packetdrill loads) or, with --kernel, against the Linux kernel, for a side-by-side view.
#
#   scripts/packetdrill.sh [--kernel] [--profile linux|synack] [--exclude PATTERN]...
#                          [--timeout SECS] [--verbose] [--both]
#                          [--ip-version ipv4|ipv6|ipv4-mapped-ipv6] SCRIPT.pkt|DIR...
#
# --both: run each script against the kernel and against synack, one line per script with
# both results side by side; the summary and the exit status are synack's.
#
# --verbose: packetdrill's own -v, and the .so's trace of each socket call, in the logs.
#
# --ip-version: the variant to run the scripts in, as upstream's run_all.py runs each script
# three times: ipv4 (the default), ipv6 (MTU 1520, so that the MSS stays 1460) and
# ipv4-mapped-ipv6 (AF_INET6 sockets, IPv4 on the wire). Like run_all.py, a script whose name
# ends in v4.pkt is not run in ipv6, nor one ending in v6.pkt in the other two. A script that
# names its own --ip_version runs only in the default pass (ipv4), in the variant it names.
#
# For instance, the 98 upstream TCP scripts outside fastopen/:
#   scripts/packetdrill.sh --exclude /fastopen/ ../shared/packetdrill/gtests/net/tcp
#
# packetdrill is built once from $PACKETDRILL_SRC (default ../shared/packetdrill beside the
# repository; GPLv2, so it is copied into target/packetdrill-build and built there, never
# into the repository). Patches of ours in scripts/packetdrill-patches/*.patch are applied to
# that copy.
#
# Each script runs in a network namespace of its own (synack-pd-PID-N, deleted again on every
# exit path, its processes killed), from the script's own folder (upstream scripts source
# ../common/defaults.sh), with addresses in 198.18.0.0/15 (IPv6: 2001:2::/48) given on the
# command line, which overrides packetdrill's defaults and the scripts' own. Nothing leaves
# the namespace: it has no link but its loopback and packetdrill's tun0 (or, for the .so, a
# tun0 with no one attached, that only exists so that defaults.sh can set its qdisc).
#
# Ends with "N passed, M failed" and the failing scripts; exit status 0 only if all passed.
# Logs: target/packetdrill-logs/{synack,kernel}/<script path>.log
set -euo pipefail

usage() {
    echo "usage: $0 [--kernel|--both] [--profile linux|synack] [--exclude PATTERN]... [--timeout SECS]" \
        "[--ip-version ipv4|ipv6|ipv4-mapped-ipv6] SCRIPT.pkt|DIR..." >&2
    exit 2
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KERNEL=0
PROFILE=linux
TIMEOUT=${PACKETDRILL_TIMEOUT:-180}
PATHS=()
EXCLUDES=()
VERBOSE=0
BOTH=0
IP_VERSION=ipv4
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) KERNEL=1 ;;
        --profile) shift; [ $# -gt 0 ] || usage; PROFILE=$1 ;;
        --profile=*) PROFILE=${1#--profile=} ;;
        --timeout) shift; [ $# -gt 0 ] || usage; TIMEOUT=$1 ;;
        -v|--verbose) VERBOSE=1 ;;
        --both) BOTH=1 ;;
        --exclude) shift; [ $# -gt 0 ] || usage; EXCLUDES+=("$1") ;;
        --exclude=*) EXCLUDES+=("${1#--exclude=}") ;;
        --ip-version) shift; [ $# -gt 0 ] || usage; IP_VERSION=$1 ;;
        --ip-version=*) IP_VERSION=${1#--ip-version=} ;;
        -h|--help) usage ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *) PATHS+=("$1") ;;
    esac
    shift
done
case "$PROFILE" in linux|synack) ;; *) echo "--profile is linux or synack" >&2; exit 2 ;; esac
case "$IP_VERSION" in
    ipv4|ipv6|ipv4-mapped-ipv6) ;;
    *) echo "--ip-version is ipv4, ipv6 or ipv4-mapped-ipv6" >&2; exit 2 ;;
esac
[ ${#PATHS[@]} -gt 0 ] || usage
if [ "$(id -u)" != 0 ]; then
    echo "$0: needs root (ip netns add)" >&2
    exit 2
fi

PACKETDRILL_SRC=${PACKETDRILL_SRC:-$ROOT/../shared/packetdrill}
PACKETDRILL_SRC=$(cd "$PACKETDRILL_SRC" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BUILD=$CARGO_TARGET_DIR/packetdrill-build
PD=$BUILD/src/packetdrill
SO=$CARGO_TARGET_DIR/debug/libsynack_packetdrill.so
MODE=$([ $KERNEL = 1 ] && echo kernel || echo synack)
LOGS=$CARGO_TARGET_DIR/packetdrill-logs/$MODE

# ---- build -----------------------------------------------------------------------------------
build_packetdrill() {
    local stamp=$BUILD/stamp want
    want=$( { (cd "$PACKETDRILL_SRC" && git rev-parse HEAD 2>/dev/null) || echo nogit
              cat "$PACKETDRILL_SRC"/PINNED.md "$ROOT"/scripts/packetdrill-patches/*.patch \
                  2>/dev/null || true; } | sha256sum | cut -c1-16)
    if [ -x "$PD" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    local missing=()
    for tool in gcc make bison flex patch; do
        command -v $tool >/dev/null || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]} to build packetdrill" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null 2>&1; } ||
            true
    fi
    for tool in "${missing[@]}"; do
        if ! command -v "$tool" >/dev/null; then
            echo "packetdrill needs $tool: apt-get install -y gcc make bison flex patch" >&2
            exit 2
        fi
    done
    echo "building packetdrill from $PACKETDRILL_SRC in $BUILD" >&2
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    cp -r "$PACKETDRILL_SRC/gtests/net/packetdrill" "$BUILD/src"
    chmod -R u+w "$BUILD/src"
    for p in "$ROOT"/scripts/packetdrill-patches/*.patch; do
        [ -e "$p" ] || continue
        patch -d "$BUILD/src" -p1 --quiet < "$p"
    done
    (cd "$BUILD/src" && ./configure >/dev/null && make -j2 packetdrill >"$BUILD/build.log" 2>&1) || {
        tail -20 "$BUILD/build.log" >&2
        exit 2
    }
    echo "$want" > "$stamp"
}
build_packetdrill

# The upstream scripts run from a copy of their tree ($BUILD/net), in which symbolic links
# that the pinned copy holds as text files (tcp/common/defaults.sh names
# ../../common/defaults.sh) are links again.
stage_scripts() {
    local net=$BUILD/net
    [ -d "$net" ] && return
    rm -rf "$net.tmp"
    cp -r "$PACKETDRILL_SRC/gtests/net" "$net.tmp"
    rm -rf "$net.tmp/packetdrill"
    chmod -R u+w "$net.tmp"
    find "$net.tmp" -type f -size -200c ! -perm -u+x | while IFS= read -r f; do
        target=$(head -c 200 "$f")
        case "$target" in
            */*) ;;
            *) continue ;;
        esac
        [ "$(wc -l < "$f")" -le 1 ] || continue
        if [ -f "$(dirname "$f")/$target" ]; then
            ln -sf "$target" "$f"
        fi
    done
    mv "$net.tmp" "$net"
}
stage_scripts
if [ $KERNEL = 0 ] || [ $BOTH = 1 ]; then
    (cd "$ROOT" && cargo build -q -p synack-packetdrill)
fi

# ---- scripts ---------------------------------------------------------------------------------
SCRIPTS=()
excluded() {
    local x
    for x in "${EXCLUDES[@]}"; do
        case "$1" in *"$x"*) return 0 ;; esac
    done
    return 1
}
for p in "${PATHS[@]}"; do
    if [ -d "$p" ]; then
        while IFS= read -r f; do
            excluded "$f" || SCRIPTS+=("$f")
        done < <(find "$p" -name '*.pkt' | sort)
    elif [ -f "$p" ]; then
        excluded "$p" || SCRIPTS+=("$p")
    else
        echo "no such script or folder: $p" >&2
        exit 2
    fi
done

# ---- namespaces, cleaned up on every exit path -----------------------------------------------
NS=""
CHILD=""
cleanup_ns() {
    if [ -n "$CHILD" ]; then
        kill -TERM -- "-$CHILD" 2>/dev/null || kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
        CHILD=""
    fi
    if [ -n "$NS" ]; then
        local pids
        pids=$(ip netns pids "$NS" 2>/dev/null || true)
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
        ip netns delete "$NS" 2>/dev/null || true
        NS=""
    fi
    remove_restore_scripts
}
# Upstream's set_sysctls.py (run by many scripts) writes /tmp/sysctl_restore_<packetdrill's
# pid>.sh for the script to run at its end, and nothing deletes it. The sysctls it restores
# lived in the namespace just deleted, so a run's file goes with it: those written since this
# wrapper started whose packetdrill has exited (a concurrent run's are left alone).
START_MARK=$(mktemp)
remove_restore_scripts() {
    local f pid
    for f in /tmp/sysctl_restore_*.sh; do
        [ -f "$f" ] && [ "$f" -nt "$START_MARK" ] || continue
        pid=${f#/tmp/sysctl_restore_}
        pid=${pid%.sh}
        kill -0 "$pid" 2>/dev/null || rm -f "$f"
    done
}
# The scripts ask for cubic (defaults.sh), and a namespace may pick only a congestion
# control the host allows (net.ipv4.tcp_allowed_congestion_control, host-wide). Cubic is
# allowed for the run, as the kernel's own test runs have it, against the kernel and
# against synack alike (so that a script's init command that selects it succeeds the same
# way in both); the host's list is put back on every exit path. Its default congestion
# control is left alone. Runs of this script may overlap: the host's own list is kept in
# $CC_SAVED by the run that added cubic, and only the last run to end puts it back (a run
# that restored it under another's feet left that one's kernel side on the host's default,
# BBR here, whose pacing holds segments that the scripts expect at once).
# The check-and-change steps below hold $CC_LOCK (flock), so that a run starting while
# another ends sees either the list before or after, never half of it.
CC_SAVED=/run/synack-pd-allowed-cc
CC_LOCK=/run/synack-pd-cc.lock
CC_LOCK_FD=""
cc_lock() {
    # Held already (a signal's trap while this run held it): flock again on a second open
    # of the file would wait on ourselves.
    [ -z "$CC_LOCK_FD" ] || return 0
    # (A failed redirection on `exec` would end the script: the file is checked first.)
    touch "$CC_LOCK" 2>/dev/null && [ -w "$CC_LOCK" ] || return 0
    exec {CC_LOCK_FD}>>"$CC_LOCK"
    flock "$CC_LOCK_FD" 2>/dev/null || true
}
cc_unlock() {
    [ -z "$CC_LOCK_FD" ] || exec {CC_LOCK_FD}>&-
    CC_LOCK_FD=""
}
ALLOWED_CC=""
allow_cubic() {
    local allowed
    allowed=$(sysctl -n net.ipv4.tcp_allowed_congestion_control 2>/dev/null || true)
    case " $allowed " in
        *" cubic "*)
            # Added by a run still going (or one killed outright): put back by the last.
            [ ! -s "$CC_SAVED" ] || ALLOWED_CC=$(cat "$CC_SAVED")
            ;;
        *)
            if sysctl -qw net.ipv4.tcp_allowed_congestion_control="$allowed cubic" 2>/dev/null; then
                ALLOWED_CC=$allowed
                echo "$allowed" > "$CC_SAVED" 2>/dev/null || true
            else
                echo "warning: cannot allow cubic; the kernel runs its default congestion control" >&2
            fi
            ;;
    esac
}
# A process's start time (field 22 of /proc/PID/stat, counted past the command name, which
# may hold spaces): with the PID, it names one process, even once the PID is reused.
proc_start() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    set -- ${stat##*) }
    echo "${20}"
}
# Runs going on: a file named after each one's PID, holding its start time.
RUNS=/run/synack-pd-runs
other_run_live() {
    local f pid started
    for f in "$RUNS"/*; do
        [ -e "$f" ] || continue
        pid=${f##*/}
        [ "$pid" != $$ ] || continue
        started=$(cat "$f" 2>/dev/null || true)
        if [ -n "$started" ] && [ "$(proc_start "$pid" || true)" = "$started" ]; then
            return 0
        fi
        rm -f "$f"
    done
    return 1
}
restore_cc() {
    cc_lock
    rm -f "$RUNS/$$"
    if [ -n "$ALLOWED_CC" ] && ! other_run_live; then
        sysctl -qw net.ipv4.tcp_allowed_congestion_control="$ALLOWED_CC" 2>/dev/null || true
        rm -f "$CC_SAVED"
    fi
    ALLOWED_CC=""
    cc_unlock
}
trap 'cleanup_ns; restore_cc; rm -f "$START_MARK"' EXIT
trap 'cleanup_ns; restore_cc; rm -f "$START_MARK"; exit 130' INT TERM
cc_lock
mkdir -p "$RUNS" 2>/dev/null && { proc_start $$ > "$RUNS/$$"; } 2>/dev/null || true
allow_cubic
cc_unlock

# Namespaces left by runs of this script that were killed outright (SIGKILL): named after
# a process that no longer exists.
for stale in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^synack-pd-[0-9]*-[0-9]*$' || true); do
    pid=${stale#synack-pd-}
    pid=${pid%%-*}
    if ! kill -0 "$pid" 2>/dev/null; then
        pids=$(ip netns pids "$stale" 2>/dev/null || true)
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
        ip netns delete "$stale" 2>/dev/null || true
    fi
done

# The variant a script runs in: the one it names (`--ip_version=...` in its options), or
# the one this run asked for.
variant_of() {
    local named
    named=$(grep -o -m1 -E -- '--ip_version=[a-z0-9-]+' "$1" || true)
    if [ -n "$named" ]; then
        echo "${named#--ip_version=}"
    else
        echo "$IP_VERSION"
    fi
}

# Whether a script belongs in this run's variant (see --ip-version above).
in_variant() {
    local script=$1
    if grep -q -E -- '--ip_version=' "$script"; then
        [ "$IP_VERSION" = ipv4 ]
        return
    fi
    case "$IP_VERSION:$script" in
        ipv6:*v4.pkt) return 1 ;;
        ipv4:*v6.pkt | ipv4-mapped-ipv6:*v6.pkt) return 1 ;;
    esac
}

# The Fast Open cookie for the IPv6 addresses below, under defaults.sh's key (the kernel's
# value; upstream's run_all.py defines TFO_COOKIE for its own addresses alike).
TFO_COOKIE_V6=c8e8e5bf91aedcb2

# Run one script in a namespace of its own; $1 is synack or kernel. Sets RC, REL and LOG.
NSCOUNT=0
run_one() {
    local mode=$1 script=$2 dir name addrs args so_local so_flags
    NSCOUNT=$((NSCOUNT + 1))
    dir=$(cd "$(dirname "$script")" && pwd)
    name=$(basename "$script")
    REL=${dir#"$PACKETDRILL_SRC"/gtests/net/}/$name
    case "$dir/" in
        "$PACKETDRILL_SRC"/gtests/net/*) dir=$BUILD/net/${dir#"$PACKETDRILL_SRC"/gtests/net/} ;;
        "$ROOT"/*) REL=${dir#"$ROOT"/}/$name ;;
    esac
    LOG=$CARGO_TARGET_DIR/packetdrill-logs/$mode/$REL.log
    mkdir -p "$(dirname "$LOG")"

    NS=synack-pd-$$-$NSCOUNT
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    local version mtu=1500
    version=$(variant_of "$script")
    case "$version" in
        ipv6)
            addrs=(--local_ip=2001:2::2 --gateway_ip=2001:2::1 --remote_ip=2001:2:0:1::1/64)
            so_local="local6=2001:2::2"
            # The error-queue cmsg's level and type, as upstream's run_all.py defines them.
            addrs+=(-D CMSG_LEVEL_IP=SOL_IPV6 -D CMSG_TYPE_RECVERR=IPV6_RECVERR)
            # The Fast Open cookie 2001:2::2 gives 2001:2:0:1::1 under defaults.sh's key,
            # and under a key of zeros (the kernel selftests' TFO_COOKIE_ZERO).
            addrs+=(-D TFO_COOKIE=$TFO_COOKIE_V6 -D TFO_COOKIE_ZERO=336a9e08e730b61c)
            # A script that does not name IPv6 itself was written for IPv4: as run_all.py
            # does, the link's MTU is 20 bytes larger, so that its MSS stays 1460.
            if [ "$IP_VERSION" = ipv6 ]; then
                mtu=1520
                addrs+=(--mtu=$mtu)
            fi
            ;;
        *)
            addrs=(--local_ip=198.18.0.2 --gateway_ip=198.18.0.1 --netmask_ip=255.255.0.0
                   --remote_ip=198.19.0.1/24)
            so_local="local=198.18.0.2"
            if [ "$version" = ipv4 ]; then
                addrs+=(-D CMSG_LEVEL_IP=SOL_IP -D CMSG_TYPE_RECVERR=IP_RECVERR)
            else
                addrs+=(-D CMSG_LEVEL_IP=SOL_IPV6 -D CMSG_TYPE_RECVERR=IPV6_RECVERR)
            fi
            # What upstream's run_all.py defines for the fastopen/ scripts, for these addresses:
            # the Fast Open cookie 198.18.0.2 gives 198.19.0.1 under defaults.sh's key
            # (a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4; the kernel's value, which synack computes
            # alike), and the ICMP code the icmp-*.pkt scripts send.
            addrs+=(-D TFO_COOKIE=7019b19dabe78281 -D CODE=host_unreachable)
            # The same cookie under a key of zeros, as the kernel's selftests define it.
            addrs+=(-D TFO_COOKIE_ZERO=62af1e4e20e01793)
            ;;
    esac
    addrs=(--ip_version="$version" "${addrs[@]}")
    args=("${addrs[@]}")
    if [ "$mode" = synack ]; then
        # The .so has no tun0, but defaults.sh sets tun0's qdisc: give it one that nothing reads.
        ip -n "$NS" tuntap add dev tun0 mode tun
        ip -n "$NS" link set tun0 mtu $mtu up
        so_flags="$so_local,profile=$PROFILE"
        [ $VERBOSE = 0 ] || so_flags="$so_flags,verbose"
        args+=(--so_filename="$SO" --so_flags="$so_flags")
    fi
    [ $VERBOSE = 0 ] || args+=(--verbose)

    set +e
    (
        cd "$dir"
        exec setsid timeout -k 5 "$TIMEOUT" ip netns exec "$NS" "$PD" "${args[@]}" "$name"
    ) >"$LOG" 2>&1 &
    CHILD=$!
    wait "$CHILD"
    RC=$?
    CHILD=""
    set -e
    cleanup_ns
}

# Why a run failed, in one line.
why() {
    if [ "$RC" = 124 ]; then
        echo "timed out after ${TIMEOUT}s"
    else
        grep -m1 -E 'error|fail|Assertion|timed out' "$LOG" | cut -c1-160 || true
    fi
}

PASSED=0
FAILED=0
FAILURES=()
KPASSED=0
KFAILED=0
SKIPPED=0
for script in "${SCRIPTS[@]}"; do
    if ! in_variant "$script"; then
        SKIPPED=$((SKIPPED + 1))
        continue
    fi
    if [ $BOTH = 1 ]; then
        run_one kernel "$script"
        krc=$RC
        [ $krc = 0 ] && KPASSED=$((KPASSED + 1)) || KFAILED=$((KFAILED + 1))
        run_one synack "$script"
        if [ $RC = 0 ]; then
            PASSED=$((PASSED + 1))
        else
            FAILED=$((FAILED + 1))
            FAILURES+=("$REL")
        fi
        printf '%-6s %-6s %s\n' "$([ $RC = 0 ] && echo PASS || echo FAIL)" \
            "$([ $krc = 0 ] && echo PASS || echo FAIL)" "$REL"
        continue
    fi
    run_one "$MODE" "$script"
    if [ $RC = 0 ]; then
        PASSED=$((PASSED + 1))
        echo "PASS $REL"
    else
        FAILED=$((FAILED + 1))
        FAILURES+=("$REL")
        reason=$(why)
        echo "FAIL $REL${reason:+: $reason}"
    fi
done

echo
if [ $BOTH = 1 ]; then
    echo "(columns: synack, profile $PROFILE; kernel; logs in $CARGO_TARGET_DIR/packetdrill-logs)"
    echo "kernel: $KPASSED passed, $KFAILED failed"
    echo "synack:"
elif [ $KERNEL = 0 ]; then
    echo "mode: synack, profile $PROFILE, logs in $LOGS"
else
    echo "mode: kernel, logs in $LOGS"
fi
echo "$PASSED passed, $FAILED failed"
[ $SKIPPED = 0 ] || echo "($SKIPPED not run in $IP_VERSION: see --ip-version)"
for f in "${FAILURES[@]}"; do
    echo "  failed: $f"
done
[ "$FAILED" = 0 ]

#!/usr/bin/env bash
# bench/run.sh — benchmark echosrv against the minimal epoll baseline, alternating both in one run.
#
# Environment (defaults in brackets):
#   ECHOSRV [../server/echosrv]  PLUGIN_DIR [../plugins]  LOADGEN [./loadgen]  BASELINE [./baseline]
#   (relative to this script's directory)
#   IOS ["epoll io_uring"] echosrv back ends, each measured as its own kind echosrv-IO (--io IO);
#   one that refuses to start is skipped with its reason
#   THREADS [2] echosrv worker threads      DURATION [5] seconds per measurement
#   ROUNDS [3] rounds per point (median)    WARMUP [0] loadgen warm-up seconds
#   POINTS ["256x64x1 1024x64x1 256x64x16 4x1048576x1"] CONNSxSIZExPIPELINE
#   IPERF_POINTS ["4x1048576x1"] points of POINTS also measured with iperf3 -P CONNS (empty skips)
#   CHURN_POINTS ["64x64"] CONNSxSIZE for loadgen --churn (empty skips)
#   IDLE_CONNS [10000] (0 skips the memory part)   LOADGEN_THREADS [1]
#   MANY_CONNS [19000] connections held at MANY_RATE [1] messages/s each of MANY_SIZE [64] B (0 skips)
#   BASELINE_ONLY [0] 1: measure the baseline alone   START_TIMEOUT [10] seconds
#   SERVER_CPUS, LOADGEN_CPUS [unset] taskset CPU lists to pin the servers / loadgen (e.g. 0 and 1)
#   ECHOCLI [../client/echocli]   CLIENT_POINTS ["256x64x1 256x64x16"] points of the last section,
#   `echocli bench` against loadgen on the same echosrv (empty skips it; so does BASELINE_ONLY=1)
#   IPERF3 [iperf3] the iperf3 binary
set -u -o pipefail
export LC_NUMERIC=C             # decimal points in $EPOCHREALTIME and awk's output

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ECHOSRV=$(realpath -m "${ECHOSRV:-$here/../server/echosrv}")
PLUGIN_DIR=$(realpath -m "${PLUGIN_DIR:-$here/../plugins}")
LOADGEN=$(realpath -m "${LOADGEN:-$here/loadgen}")
BASELINE=$(realpath -m "${BASELINE:-$here/baseline}")
IOS=${IOS:-"epoll io_uring"}
THREADS=${THREADS:-2}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-0}
POINTS=${POINTS:-"256x64x1 1024x64x1 256x64x16 4x1048576x1"}
IPERF_POINTS=${IPERF_POINTS-"4x1048576x1"}
IPERF3=${IPERF3:-iperf3}
CHURN_POINTS=${CHURN_POINTS-"64x64"}
IDLE_CONNS=${IDLE_CONNS:-10000}
MANY_CONNS=${MANY_CONNS:-19000}
MANY_RATE=${MANY_RATE:-1}
MANY_SIZE=${MANY_SIZE:-64}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
BASELINE_ONLY=${BASELINE_ONLY:-0}
START_TIMEOUT=${START_TIMEOUT:-10}
SERVER_CPUS=${SERVER_CPUS:-}
LOADGEN_CPUS=${LOADGEN_CPUS:-}
ECHOCLI=$(realpath -m "${ECHOCLI:-$here/../client/echocli}")
CLIENT_POINTS=${CLIENT_POINTS-"256x64x1 256x64x16"}
SERVER_PIN=() LOADGEN_PIN=()    # taskset execs the program: the PID stays the server's own
[[ -n $SERVER_CPUS ]] && SERVER_PIN=(taskset -c "$SERVER_CPUS")
[[ -n $LOADGEN_CPUS ]] && LOADGEN_PIN=(taskset -c "$LOADGEN_CPUS")

CLK_TCK=$(getconf CLK_TCK)
PIDS=()                 # every process this script started and has not yet stopped
FAILED=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/echosrv-bench.XXXXXX") || exit 1

die() { echo "run.sh: $*" >&2; exit 1; }

# Stop one process by PID: SIGTERM, up to 15 s for it to exit, then SIGKILL; reap it.
stop_pid() {
    local pid=$1 i rest=()
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || rest+=("$i"); done
    PIDS=("${rest[@]}")
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# utime + stime of all threads of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() {
    local stat f
    stat=$(< "/proc/$1/stat") || return 1
    read -ra f <<< "${stat##*) }"      # f[0] is field 3 (state): comm may hold spaces
    echo $(( f[11] + f[12] ))
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

fd_count() { local f=(/proc/"$1"/fd/*); echo ${#f[@]}; }

# accepted PID PORT FD0: how many connections the server on PORT has accepted. With ss (iproute2):
# the server side's established connections on PORT minus those still waiting in the listeners'
# accept queues (a listening socket's Recv-Q) -- the kernel's view, right whatever the server
# does with descriptors (an io_uring server may accept into registered files, which
# /proc/PID/fd does not list). Without ss: the growth of the server's descriptor count since FD0.
HAVE_SS=0
command -v ss > /dev/null && HAVE_SS=1
accepted() {
    if (( HAVE_SS )); then
        local est queued
        est=$(ss -Htn state established "sport = :$2" | wc -l)
        queued=$(ss -Hltn "sport = :$2" | awk '{ s += $2 } END { print s + 0 }')
        echo $(( est - queued ))
    else
        echo $(( $(fd_count "$1") - $3 ))
    fi
}

# field NAME LINE: the value of NAME=... in a loadgen output line.
field() { [[ " $2 " =~ \ $1=([^ ]*)\  ]] && echo "${BASH_REMATCH[1]}"; }

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s..%s", lo, hi }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }
# record KEY LABEL UNIT: store $MEASURED ("rate p50 p99 cpu rc") as RES[KEY] and
# print it as one progress line (n/total, LABEL, cpu per UNIT).
record() {
    local rate p50 p99 cpu rc
    RES[$1]=$MEASURED
    read -r rate p50 p99 cpu rc <<< "$MEASURED"
    (( rc == 0 )) || FAILED=1
    printf '[%d/%d] %s: rate=%s p50_us=%s p99_us=%s cpu_us/%s=%s%s\n' "$n" "$total" "$2" \
        "$rate" "$p50" "$p99" "$3" "$cpu" "$( (( rc == 0 )) || echo ' ERRORS')" >&2
}
# row KEY LABEL NAME WIDTH: the medians over ROUNDS of RES[KEY,round] as one table row
# (NAME in a WIDTH-wide column); leaves them in ROW_RATE, ROW_P99 and ROW_CPU.
row() {
    local r rate p50 p99 cpu rc bad="" rates=() p50s=() p99s=() cpus=()
    for ((r = 1; r <= ROUNDS; r++)); do
        read -r rate p50 p99 cpu rc <<< "${RES[$1,$r]}"
        rates+=("$rate"); p50s+=("$p50"); p99s+=("$p99"); cpus+=("$cpu")
        (( rc == 0 )) || bad=" ERRORS"
    done
    ROW_RATE=$(median "${rates[@]}") ROW_P99=$(median "${p99s[@]}") ROW_CPU=$(median "${cpus[@]}")
    printf "%-24s %-${4}s %12.0f %8s %8s %11.3f  (%s)%s\n" "$2" "$3" "$ROW_RATE" \
        "$(median "${p50s[@]}")" "$ROW_P99" "$ROW_CPU" "$(minmax "${cpus[@]}")" "$bad"
}

human_size() {
    local s=$1
    if (( s >= 1048576 && s % 1048576 == 0 )); then echo "$((s / 1048576)) MiB"
    elif (( s >= 1024 && s % 1024 == 0 )); then echo "$((s / 1024)) KiB"
    else echo "$s B"; fi
}

# in_list WORD LIST: whether WORD is one of the words of the string LIST.
in_list() {
    local x words
    read -rd '' -a words <<< "$2"
    for x in "${words[@]}"; do [[ $x == "$1" ]] && return 0; done
    return 1
}

write_ini() {
    local maxc=20000
    (( IDLE_CONNS + 1000 > maxc )) && maxc=$((IDLE_CONNS + 1000))
    (( MANY_CONNS + 1000 > maxc )) && maxc=$((MANY_CONNS + 1000))
    cat > "$tmp/echosrv.ini" <<EOF_INI
; generated by bench/run.sh
[server]
bind = 127.0.0.1:0
threads = $THREADS
plugin = echo
plugin_dir = $PLUGIN_DIR
max_connections = $maxc
log_level = info

[echo]
EOF_INI
}

# start_server KIND: start baseline or echosrv-IO (echosrv --io IO) on a free loopback port; wait
# for its "listening on" line. Sets SRV_PID, SRV_PORT and SRV_LOG; on failure returns 1 with the
# reason in SRV_ERR (its log shown on stderr unless QUIET_START=1).
NSTART=0
start_server() {
    local kind=$1 log line deadline
    NSTART=$((NSTART + 1))
    log="$tmp/$kind.$NSTART.log"
    SRV_ERR=""
    : > "$log"                  # there before the server's own redirection, for the grep below
    if [[ $kind == baseline ]]; then
        "${SERVER_PIN[@]}" "$BASELINE" -a 127.0.0.1:0 2> "$log" < /dev/null &
    else
        "${SERVER_PIN[@]}" "$ECHOSRV" --allow-root -c "$tmp/echosrv.ini" --io "${kind#echosrv-}" \
            2> "$log" < /dev/null &
    fi
    SRV_PID=$!
    SRV_LOG=$log
    PIDS+=("$SRV_PID")
    deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        line=$(grep -m1 'listening on' "$log")
        if [[ $line =~ listening\ on\ [^[:space:]]*:([0-9]+) ]]; then
            SRV_PORT=${BASH_REMATCH[1]}
            return 0
        fi
        if ! kill -0 "$SRV_PID" 2>/dev/null; then
            # echosrv says why on a line of its own: "echosrv: --io io_uring: ..."
            SRV_ERR=$(grep -m1 -E '^(echosrv|baseline): ' "$log" | sed -E 's/^(echosrv|baseline): //')
            [[ -n $SRV_ERR ]] || SRV_ERR="exited before listening: $(tail -1 "$log")"
        elif (( SECONDS >= deadline )); then
            SRV_ERR="no 'listening on' line within ${START_TIMEOUT}s"
        fi
        if [[ -n $SRV_ERR ]]; then
            if [[ ${QUIET_START:-0} != 1 ]]; then
                echo "run.sh: $kind did not start: $SRV_ERR; its log:" >&2
                sed 's/^/    /' "$log" >&2
            fi
            stop_pid "$SRV_PID"
            return 1
        fi
        sleep 0.02
    done
}

# measure KIND PID PORT CONNS SIZE PIPELINE [LOADGEN ARGS...]: one loadgen run; sets MEASURED to
# "rate p50 p99 cpu_us_per_msg rc" (per cycle with --churn). Runs in this shell so a trap can
# stop loadgen by PID.
measure() {
    local kind=$1 pid=$2 port=$3 c=$4 s=$5 p=$6 c0 c1 out lpid rc msgs
    shift 6
    c0=$(cpu_ticks "$pid") || return 1
    "${LOADGEN_PIN[@]}" "$LOADGEN" -a "127.0.0.1:$port" -c "$c" -s "$s" -P "$p" -d "$DURATION" -w "$WARMUP" \
        -T "$LOADGEN_THREADS" "$@" > "$tmp/loadgen.out" 2> "$tmp/loadgen.err" < /dev/null &
    lpid=$!
    PIDS+=("$lpid")
    wait "$lpid"
    rc=$?
    c1=$(cpu_ticks "$pid") || return 1
    stop_pid "$lpid"
    out=$(< "$tmp/loadgen.out")
    if (( rc != 0 )); then
        echo "run.sh: loadgen $* against $kind failed (exit $rc): $out" >&2
        sed 's/^/    /' "$tmp/loadgen.err" >&2
    fi
    msgs=$(field total_msgs "$out") || msgs=$(field total_cycles "$out")
    [[ -n $msgs ]] || return 1
    MEASURED=$(awk -v r="$(field rate "$out")" -v p50="$(field p50_us "$out")" -v p99="$(field p99_us "$out")" \
        -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v m="$msgs" -v rc="$rc" \
        'BEGIN { printf "%s %s %s %.3f %s\n", r, p50, p99, (m > 0 ? t * 1e6 / hz / m : 0), rc }')
}

# json_bps FILE: end.sum_received.bits_per_second of an iperf3 -J report (jq, else python3).
json_bps() {
    if command -v jq > /dev/null; then
        jq -r '.end.sum_received.bits_per_second // empty' "$1" 2>/dev/null
    else
        python3 -c 'import json, sys
try: print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])
except Exception: pass' "$1"
    fi
}
json_error() {
    if command -v jq > /dev/null; then jq -r '.error // empty' "$1" 2>/dev/null
    else python3 -c 'import json, sys
try: print(json.load(open(sys.argv[1])).get("error", ""))
except Exception: print("no JSON report")' "$1"; fi
}

# measure_iperf3 CONNS: iperf3 -s -1 on a free loopback port (loadgen --free-port: the kernel's
# choice; tried again if someone takes it before iperf3 binds it), then iperf3 -c -P CONNS for
# DURATION seconds (whole seconds, at least 1). Sets MEASURED to "bytes_per_s rc": the bytes the
# receiving side got per second, all streams together (end.sum_received).
measure_iperf3() {
    local c=$1 port try spid cpid rc=1 bps t line deadline
    t=$(awk -v d="$DURATION" 'BEGIN { t = int(d + 0.5); print (t < 1 ? 1 : t) }')
    for try in 1 2 3; do
        port=$("$LOADGEN" --free-port) || return 1
        # --forceflush: the "Server listening" line reaches the file at once. The file is
        # emptied here first: the child's own '>' may come after the first grep below, which
        # would then read the previous round's line.
        : > "$tmp/iperf3-s.log"
        "${SERVER_PIN[@]}" "$IPERF3" -s -1 -B 127.0.0.1 -p "$port" --forceflush \
            > "$tmp/iperf3-s.log" 2>&1 < /dev/null &
        spid=$!
        PIDS+=("$spid")
        line=""
        deadline=$((SECONDS + START_TIMEOUT))
        while kill -0 "$spid" 2>/dev/null && (( SECONDS < deadline )); do
            line=$(grep -m1 'Server listening on' "$tmp/iperf3-s.log") && break
            sleep 0.02
        done
        [[ -n $line ]] && break
        echo "run.sh: iperf3 -s -p $port (try $try): $(tail -2 "$tmp/iperf3-s.log" | tr '\n' ' ')" >&2
        stop_pid "$spid"
        spid=""
    done
    [[ -n $spid ]] || return 1
    "${LOADGEN_PIN[@]}" "$IPERF3" -c 127.0.0.1 -p "$port" -t "$t" -P "$c" -J \
        > "$tmp/iperf3.json" 2> "$tmp/iperf3-c.err" < /dev/null &
    cpid=$!
    PIDS+=("$cpid")
    wait "$cpid"
    rc=$?
    stop_pid "$cpid"
    stop_pid "$spid"            # -1: it has exited after the one test; this reaps it
    bps=$(json_bps "$tmp/iperf3.json")
    if (( rc != 0 )) || [[ -z $bps ]]; then
        echo "run.sh: iperf3 -c failed (exit $rc): $(json_error "$tmp/iperf3.json") $(< "$tmp/iperf3-c.err")" >&2
        MEASURED="0 1"
        return 0
    fi
    MEASURED=$(awk -v b="$bps" 'BEGIN { printf "%.0f 0\n", b / 8 }')
}

# ---------------------------------------------------------------------------------------------
if (( ${#SERVER_PIN[@]} + ${#LOADGEN_PIN[@]} > 0 )); then
    command -v taskset > /dev/null || die "SERVER_CPUS/LOADGEN_CPUS need taskset (util-linux)"
fi
for bin in "$LOADGEN" "$BASELINE"; do
    [[ -x $bin ]] || die "$bin not found or not executable (run make first)"
done
# Descriptors: the servers and loadgen inherit this shell's limits; loadgen raises its own soft
# limit to the hard one anyway, the servers do not. Raise ours, so that both get the hard limit.
hard_nofile=$(ulimit -Hn)
[[ $hard_nofile == unlimited ]] || ulimit -n "$hard_nofile" 2>/dev/null
NOFILE=$(ulimit -n)
read -r port_lo port_hi < /proc/sys/net/ipv4/ip_local_port_range
# fits N: whether N connections (N + 64 descriptors in each process, N client ports) fit here.
fits() {
    if [[ $NOFILE != unlimited ]] && (( $1 + 64 > NOFILE )); then
        echo "needs $(($1 + 64)) descriptors per process, RLIMIT_NOFILE is $NOFILE (ulimit -n)"
        return 1
    fi
    if (( $1 > port_hi - port_lo + 1 )); then
        echo "needs $1 client ports, net.ipv4.ip_local_port_range has $((port_hi - port_lo + 1))"
        return 1
    fi
}

ECHO_KINDS=()
if [[ $BASELINE_ONLY != 1 ]]; then
    [[ -x $ECHOSRV ]] || die "$ECHOSRV not found (run make, set ECHOSRV=, or BASELINE_ONLY=1)"
    for io in $IOS; do
        case $io in
        epoll | io_uring | auto) in_list "echosrv-$io" "${ECHO_KINDS[*]}" || ECHO_KINDS+=("echosrv-$io") ;;
        *) die "IOS: '$io' is not epoll, io_uring or auto" ;;
        esac
    done
    (( ${#ECHO_KINDS[@]} > 0 )) || die "IOS is empty (or set BASELINE_ONLY=1)"
    write_ini
    if [[ -n $CLIENT_POINTS ]]; then
        [[ -x $ECHOCLI ]] || die "$ECHOCLI not found (run make, set ECHOCLI=, or CLIENT_POINTS=)"
    fi
else
    CLIENT_POINTS=""
fi
# The iperf3 comparison: the points of IPERF_POINTS that POINTS has, if iperf3 is there.
IPERF_SKIP=""
if [[ -n $IPERF_POINTS ]]; then
    iperf_have=""
    for point in $IPERF_POINTS; do in_list "$point" "$POINTS" && iperf_have+=" $point"; done
    if ! command -v "$IPERF3" > /dev/null; then
        IPERF_SKIP="$IPERF3 not found (Debian package iperf3)"
    elif ! command -v jq > /dev/null && ! command -v python3 > /dev/null; then
        IPERF_SKIP="neither jq nor python3 to read iperf3's JSON report"
    elif [[ -z $iperf_have ]]; then
        IPERF_SKIP="none of IPERF_POINTS ($IPERF_POINTS) is in POINTS"
    fi
    IPERF_POINTS=${iperf_have# }
    [[ -z $IPERF_SKIP ]] || IPERF_POINTS=""
fi

echo "machine: nproc=$(nproc) kernel=$(uname -r) $(uname -m); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
if [[ $BASELINE_ONLY != 1 ]]; then
    echo "echosrv: $ECHOSRV (threads=$THREADS, plugin_dir=$PLUGIN_DIR); kinds: ${ECHO_KINDS[*]} (echosrv --io IO)"
fi
echo "baseline: $BASELINE    loadgen: $LOADGEN (threads=$LOADGEN_THREADS)"
echo "duration=${DURATION}s warmup=${WARMUP}s rounds=$ROUNDS (median shown); loopback 127.0.0.1;" \
     "CPUs: servers ${SERVER_CPUS:-any}, loadgen ${LOADGEN_CPUS:-any}; RLIMIT_NOFILE $NOFILE"
echo "cpu/msg = server utime+stime, all threads (/proc/PID/stat 14+15, CLK_TCK=$CLK_TCK), over the loadgen run / messages echoed"

# Start every kind once. A kind that does not start (echosrv refusing a back end it lacks) is
# skipped for the whole run, its reason printed; the others carry on.
declare -A SPID SPORT SLOG RES SKIPPED
SERVERS=()
start_server baseline || exit 1
SPID[baseline]=$SRV_PID SPORT[baseline]=$SRV_PORT SLOG[baseline]=$SRV_LOG
SERVERS+=(baseline)
for kind in "${ECHO_KINDS[@]}"; do
    if QUIET_START=1 start_server "$kind"; then
        SPID[$kind]=$SRV_PID SPORT[$kind]=$SRV_PORT SLOG[$kind]=$SRV_LOG
        SERVERS+=("$kind")
        echo "$kind: $(grep -m1 -o 'io: [^"]*' "$SRV_LOG" || echo 'io: (not logged)')"
    else
        SKIPPED[$kind]=$SRV_ERR
        echo "$kind: skipped: $SRV_ERR"
    fi
done
KINDS=()                        # the echosrv kinds that run
for kind in "${SERVERS[@]}"; do [[ $kind == baseline ]] || KINDS+=("$kind"); done
if [[ $BASELINE_ONLY != 1 ]] && (( ${#KINDS[@]} == 0 )); then
    echo "run.sh: no echosrv kind could start: measuring the baseline alone" >&2
    FAILED=1
    CLIENT_POINTS=""
fi
echo

# restart_if_dead KIND: a server that died meanwhile is reported (the run fails) and restarted.
restart_if_dead() {
    local kind=$1
    kill -0 "${SPID[$kind]}" 2>/dev/null && return 0
    echo "run.sh: $kind (pid ${SPID[$kind]}) died; the end of its log:" >&2
    tail -5 "${SLOG[$kind]}" | sed 's/^/    /' >&2
    stop_pid "${SPID[$kind]}"
    FAILED=1
    start_server "$kind" || exit 1
    SPID[$kind]=$SRV_PID SPORT[$kind]=$SRV_PORT SLOG[$kind]=$SRV_LOG
}

npoints=$(wc -w <<< "$POINTS")
niperf=$(wc -w <<< "$IPERF_POINTS")
total=$(( (npoints * ${#SERVERS[@]} + niperf) * ROUNDS ))
n=0
for point in $POINTS; do
    IFS=x read -r c s p <<< "$point"
    for ((r = 1; r <= ROUNDS; r++)); do
        for kind in "${SERVERS[@]}"; do
            n=$((n + 1))
            restart_if_dead "$kind"
            measure "$kind" "${SPID[$kind]}" "${SPORT[$kind]}" "$c" "$s" "$p" || MEASURED="0 0 0 0 1"
            record "$kind,$point,$r" "$(printf '%-12s %-16s round %d' "$point" "$kind" "$r")" msg
        done
        if in_list "$point" "$IPERF_POINTS"; then
            n=$((n + 1))
            measure_iperf3 "$c" || MEASURED="0 1"
            RES[iperf3,$point,$r]=$MEASURED
            read -r bw rc <<< "$MEASURED"
            (( rc == 0 )) || FAILED=1
            printf '[%d/%d] %-12s %-16s round %d: bytes/s=%s%s\n' "$n" "$total" "$point" iperf3 "$r" "$bw" \
                "$( (( rc == 0 )) || echo ' ERRORS')" >&2
        fi
    done
done

# ratio_label KIND: "ratio IO" for the ratio lines.
ratio_label() { echo "ratio ${1#echosrv-}"; }

printf '%-24s %-16s %12s %8s %8s %11s  %s\n' "conns x size x pipeline" server "rate msg/s" p50_us p99_us cpu_us/msg "(cpu min..max)"
declare -A MED_CPU MED_RATE MED_P99
for point in $POINTS; do
    IFS=x read -r c s p <<< "$point"
    label="$c x $(human_size "$s") x $p"
    for kind in "${SERVERS[@]}"; do
        row "$kind,$point" "$label" "$kind" 16
        MED_CPU[$kind,$point]=$ROW_CPU MED_RATE[$kind,$point]=$ROW_RATE MED_P99[$kind,$point]=$ROW_P99
        label=""
    done
    for kind in "${KINDS[@]}"; do
        printf '%-24s %-16s rate %s, cpu/msg %s, p99 %s\n' "" "$(ratio_label "$kind")" \
            "$(ratio "${MED_RATE[$kind,$point]}" "${MED_RATE[baseline,$point]}")" \
            "$(ratio "${MED_CPU[$kind,$point]}" "${MED_CPU[baseline,$point]}")" \
            "$(ratio "${MED_P99[$kind,$point]}" "${MED_P99[baseline,$point]}")"
    done
done
echo
nskipped=0
for kind in "${ECHO_KINDS[@]}"; do
    [[ -n ${SKIPPED[$kind]:-} ]] || continue
    echo "$kind: skipped: ${SKIPPED[$kind]}"
    nskipped=$((nskipped + 1))
done
(( nskipped == 0 )) || echo

# --- large messages against iperf3 -------------------------------------------------------------
# An echo carries every byte over loopback twice: in to the server and back out. iperf3 carries
# each byte once, one way. Both are counted as bytes crossing loopback per second: for a server,
# rate x (SIZE + 4) x 2; for iperf3, what its receiving side got per second.
declare -A IPERF_FRAC
if [[ -n $IPERF_SKIP ]]; then
    echo "large messages against iperf3: skipped: $IPERF_SKIP"
    echo
elif [[ -n $IPERF_POINTS ]]; then
    echo "large messages against iperf3 (loopback bandwidth, iperf3 -P CONNS -t ${DURATION}, same rounds):"
    echo "bytes/s over loopback: a server's echo = rate x (size + 4) x 2 (in and back out); iperf3 = received bytes/s (one way)"
    printf '%-24s %-16s %14s %14s %10s\n' "conns x size x pipeline" server "loopback MB/s" "iperf3 MB/s" fraction
    for point in $IPERF_POINTS; do
        IFS=x read -r c s p <<< "$point"
        label="$c x $(human_size "$s") x $p"
        bws=()
        for ((r = 1; r <= ROUNDS; r++)); do
            read -r bw rc <<< "${RES[iperf3,$point,$r]}"
            bws+=("$bw")
        done
        ibw=$(median "${bws[@]}")
        for kind in "${SERVERS[@]}"; do
            ebw=$(awk -v r="${MED_RATE[$kind,$point]}" -v s="$s" 'BEGIN { printf "%.0f", r * (s + 4) * 2 }')
            IPERF_FRAC[$kind,$point]=$(awk -v e="$ebw" -v i="$ibw" 'BEGIN { if (i > 0) printf "%.3f", e / i; else print "n/a" }')
            awk -v l="$label" -v k="$kind" -v e="$ebw" -v i="$ibw" -v f="${IPERF_FRAC[$kind,$point]}" \
                'BEGIN { printf "%-24s %-16s %14.1f %14.1f %10s\n", l, k, e / 1e6, i / 1e6, f }'
            label=""
        done
    done
    echo
fi

# --- connection churn ---------------------------------------------------------------------------
# loadgen --churn: CONNS slots, each connect -> one message -> its echo -> close, as fast as it
# goes; the client closes with SO_LINGER 0 (an RST), so no port is left in TIME_WAIT.
declare -A CMED_CYC CMED_CCPU
if [[ -n $CHURN_POINTS ]]; then
    total=$(( $(wc -w <<< "$CHURN_POINTS") * ROUNDS * ${#SERVERS[@]} ))
    n=0
    for point in $CHURN_POINTS; do
        IFS=x read -r c s <<< "$point"
        for ((r = 1; r <= ROUNDS; r++)); do
            for kind in "${SERVERS[@]}"; do
                n=$((n + 1))
                restart_if_dead "$kind"
                measure "$kind" "${SPID[$kind]}" "${SPORT[$kind]}" "$c" "$s" 1 --churn || MEASURED="0 0 0 0 1"
                record "churn,$kind,$point,$r" "$(printf 'churn %-8s %-16s round %d' "$point" "$kind" "$r")" cycle
            done
        done
    done
    echo "connection churn: loadgen --churn -d $DURATION: per slot, connect, one message, its echo checked, close (RST)"
    echo "cpu/cycle = server utime+stime over the loadgen run / cycles completed; p50/p99 = one whole cycle"
    printf '%-24s %-16s %12s %8s %8s %11s  %s\n' "conns x size" server "cycles/s" p50_us p99_us cpu_us/cyc "(cpu min..max)"
    for point in $CHURN_POINTS; do
        IFS=x read -r c s <<< "$point"
        label="$c x $(human_size "$s")"
        for kind in "${SERVERS[@]}"; do
            row "churn,$kind,$point" "$label" "$kind" 16
            CMED_CCPU[$kind,$point]=$ROW_CPU CMED_CYC[$kind,$point]=$ROW_RATE
            label=""
        done
        for kind in "${KINDS[@]}"; do
            printf '%-24s %-16s cycles/s %s, cpu/cycle %s\n' "" "$(ratio_label "$kind")" \
                "$(ratio "${CMED_CYC[$kind,$point]}" "${CMED_CYC[baseline,$point]}")" \
                "$(ratio "${CMED_CCPU[$kind,$point]}" "${CMED_CCPU[baseline,$point]}")"
        done
    done
    echo
fi
for kind in "${SERVERS[@]}"; do stop_pid "${SPID[$kind]}"; done

# awaited_ready FD SECS WHAT ERRFILE LPID PID: reads loadgen's 'ready' line from FD within SECS;
# without it, reports WHAT's stderr, stops both processes and fails.
awaited_ready() {
    local line=""
    read -r -t "$2" -u "$1" line
    [[ $line == ready ]] && return 0
    echo "run.sh: $3 did not report ready against $kind:" >&2
    sed 's/^/    /' "$4" >&2
    FAILED=1
    stop_pid "$5"; stop_pid "$6"
    return 1
}
# wait_accepted PID PORT FD0 N: up to 60 s for the server to have accepted N connections; sets HELD.
wait_accepted() {
    local deadline=$((SECONDS + 60))
    while HELD=$(accepted "$1" "$2" "$3"); (( HELD < $4 && SECONDS < deadline )); do sleep 0.05; done
}

# --- memory per idle connection ----------------------------------------------------------------
declare -A IDLE_B
if (( IDLE_CONNS > 0 )) && ! why=$(fits "$IDLE_CONNS"); then
    echo "memory per idle connection: skipped: $IDLE_CONNS connections $why"
    echo
elif (( IDLE_CONNS > 0 )); then
    echo "memory per idle connection: $IDLE_CONNS idle loopback connections, VmRSS delta / $IDLE_CONNS"
    printf '%-16s %14s %14s %12s\n' server rss_before_kB rss_idle_kB bytes/conn
    for kind in "${SERVERS[@]}"; do
        start_server "$kind" || { FAILED=1; continue; }
        pid=$SRV_PID
        fd0=$(fd_count "$pid")
        rss0=$(rss_kb "$pid")
        coproc IDLE { exec "$LOADGEN" -a "127.0.0.1:$SRV_PORT" --idle "$IDLE_CONNS" 2> "$tmp/idle.err"; }
        lpid=$IDLE_PID
        lin=${IDLE[0]} lout=${IDLE[1]}
        PIDS+=("$lpid")
        awaited_ready "$lin" 60 "loadgen --idle" "$tmp/idle.err" "$lpid" "$pid" || continue
        # The client side is connected; wait until the server has accepted every connection.
        wait_accepted "$pid" "$SRV_PORT" "$fd0" "$IDLE_CONNS"
        rss1=$(rss_kb "$pid")
        exec {lout}>&-                  # stdin EOF: loadgen closes the connections and reports
        status=""
        read -r -t 30 -u "$lin" status
        wait "$lpid"
        lrc=$?
        stop_pid "$lpid"
        stop_pid "$pid"
        if (( HELD < IDLE_CONNS )); then
            echo "run.sh: $kind holds $HELD of $IDLE_CONNS connections after 60 s" >&2
            FAILED=1
        fi
        if (( lrc != 0 )); then
            echo "run.sh: loadgen --idle against $kind: $status" >&2
            sed 's/^/    /' "$tmp/idle.err" >&2
            FAILED=1
        fi
        IDLE_B[$kind]=$(( (rss1 - rss0) * 1024 / IDLE_CONNS ))
        printf '%-16s %14s %14s %12s\n' "$kind" "$rss0" "$rss1" "${IDLE_B[$kind]}"
    done
    echo
fi

# --- many connections ----------------------------------------------------------------------------
# One fresh server per kind; loadgen --rate-per-conn --sync opens MANY_CONNS connections, says
# 'ready'; once the server has accepted them all, the server's CPU time is read and loadgen told
# to go; each connection then sends one message every 1/MANY_RATE s (the connections take turns,
# evenly spread) for DURATION s; loadgen reports once the last echo is in and holds the
# connections until its stdin closes: the server's CPU time, RSS and descriptors are read then.
declare -A MANY_RES
if (( MANY_CONNS > 0 )) && ! why=$(fits "$MANY_CONNS"); then
    echo "many connections: skipped: $MANY_CONNS connections $why"
    echo
elif (( MANY_CONNS > 0 )); then
    target=$(awk -v n="$MANY_CONNS" -v r="$MANY_RATE" 'BEGIN { printf "%.0f", n * r }')
    n=0
    for kind in "${SERVERS[@]}"; do
        n=$((n + 1))
        start_server "$kind" || { FAILED=1; continue; }
        pid=$SRV_PID
        fd0=$(fd_count "$pid")
        rss0=$(rss_kb "$pid")
        coproc MANY { exec "${LOADGEN_PIN[@]}" "$LOADGEN" -a "127.0.0.1:$SRV_PORT" -c "$MANY_CONNS" -s "$MANY_SIZE" \
            --rate-per-conn "$MANY_RATE" -d "$DURATION" -T "$LOADGEN_THREADS" --sync 2> "$tmp/many.err"; }
        lpid=$MANY_PID
        lin=${MANY[0]} lout=${MANY[1]}
        PIDS+=("$lpid")
        awaited_ready "$lin" 120 "loadgen --rate-per-conn" "$tmp/many.err" "$lpid" "$pid" || continue
        wait_accepted "$pid" "$SRV_PORT" "$fd0" "$MANY_CONNS"
        if (( HELD < MANY_CONNS )); then
            echo "run.sh: $kind holds $HELD of $MANY_CONNS connections after 60 s" >&2
            FAILED=1
        fi
        c0=$(cpu_ticks "$pid")
        t0=$EPOCHREALTIME
        echo go >&"$lout"
        out=""
        read -r -t $((${DURATION%.*} + 60)) -u "$lin" out
        c1=$(cpu_ticks "$pid")
        t1=$EPOCHREALTIME
        rss1=$(rss_kb "$pid")
        fds=$(fd_count "$pid")
        exec {lout}>&-                  # stdin EOF: loadgen closes the connections (RST) and exits
        wait "$lpid"
        lrc=$?
        stop_pid "$lpid"
        stop_pid "$pid"
        if (( lrc != 0 )) || [[ -z $(field total_msgs "$out") ]]; then
            echo "run.sh: loadgen --rate-per-conn against $kind failed (exit $lrc): $out" >&2
            sed 's/^/    /' "$tmp/many.err" >&2
            FAILED=1
        fi
        MANY_RES[$kind]=$(awk -v r="$(field rate "$out")" -v e="$(field errors "$out")" -v l="$(field late "$out")" \
            -v p50="$(field p50_us "$out")" -v p99="$(field p99_us "$out")" -v m="$(field total_msgs "$out")" \
            -v rss0="$rss0" -v rss1="$rss1" -v fds="$fds" -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v w0="$t0" -v w1="$t1" \
            'BEGIN { cpu = t / hz; printf "%.0f %s %s %s %s %s %s %s %.1f %.3f\n", r, (e == "" ? "?" : e), (l == "" ? "?" : l),
                     (p50 == "" ? 0 : p50), (p99 == "" ? 0 : p99), rss0, rss1, fds,
                     (w1 > w0 ? cpu * 100 / (w1 - w0) : 0), (m > 0 ? cpu * 1e6 / m : 0) }')
        printf '[%d/%d] many %-16s %s\n' "$n" "${#SERVERS[@]}" "$kind" "$out" >&2
    done
    echo "many connections: $MANY_CONNS connections held, each sends one $MANY_SIZE B message every $(awk -v r="$MANY_RATE" 'BEGIN { print 1 / r }') s" \
         "(loadgen --rate-per-conn $MANY_RATE -d $DURATION), target $target msg/s"
    echo "cpu = server utime+stime from the first message to the last echo; rss = VmRSS with the connections open; late = a tick found the previous echo not back"
    printf '%-16s %9s %7s %7s %7s %8s %9s %9s %7s %7s %10s\n' server "msgs/s" errors late p50_us p99_us \
        rss0_kB rss_kB fds "cpu_%" cpu_us/msg
    for kind in "${SERVERS[@]}"; do
        [[ -n ${MANY_RES[$kind]:-} ]] || continue
        read -r rate e l p50 p99 rss0 rss1 fds cpup cpum <<< "${MANY_RES[$kind]}"
        printf '%-16s %9s %7s %7s %7s %8s %9s %9s %7s %7s %10s\n' "$kind" "$rate" "$e" "$l" "$p50" "$p99" \
            "$rss0" "$rss1" "$fds" "$cpup" "$cpum"
    done
    if [[ -n ${MANY_RES[baseline]:-} ]]; then
        read -r _ _ _ _ _ _ brss _ _ bcpum <<< "${MANY_RES[baseline]}"
        for kind in "${KINDS[@]}"; do
            [[ -n ${MANY_RES[$kind]:-} ]] || continue
            read -r _ _ _ _ _ _ rss1 _ _ cpum <<< "${MANY_RES[$kind]}"
            printf '%-16s rss %s, cpu/msg %s\n' "$(ratio_label "$kind")" "$(ratio "$rss1" "$brss")" "$(ratio "$cpum" "$bcpum")"
        done
    fi
    echo
fi
# --- the client's own overhead: echocli bench against loadgen --------------------------------
# Both drive the same echosrv at the same points, alternately. A client's CPU is read from the
# shell's `times` (getrusage(RUSAGE_CHILDREN): utime + stime of the children it has reaped) right
# before the client starts and right after `wait` reaps it: nothing else is reaped in between
# (the server runs on, and no command substitution runs there), so the difference is that one
# process's CPU, all threads, exact to the millisecond that `times` prints.
# times_us "XmY.YYYs XmZ.ZZZs" -> microseconds of user + system.
times_us() {
    awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] } printf "%.0f\n", s * 1e6 }' <<< "$1"
}
# csv_field NAME FILE: column NAME of the row under the header of an `echocli bench --csv` output.
csv_field() { awk -F, -v k="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == k) c = i } NR == 2 && c { print $c }' "$2"; }

# measure_client TOOL PORT CONNS SIZE PIPELINE: sets MEASURED to "rate p50 p99 cpu_us_per_req rc".
measure_client() {
    local tool=$1 port=$2 c=$3 s=$4 p=$5 before after cpid rc reqs rate p50 p99 out
    times > "$tmp/times.before"     # a builtin in this shell: $(times) would run in a subshell
    if [[ $tool == loadgen ]]; then
        "${LOADGEN_PIN[@]}" "$LOADGEN" -a "127.0.0.1:$port" -c "$c" -s "$s" -P "$p" -d "$DURATION" \
            -T "$LOADGEN_THREADS" > "$tmp/client.out" 2> "$tmp/client.err" < /dev/null &
    else
        "${LOADGEN_PIN[@]}" "$ECHOCLI" bench -a "127.0.0.1:$port" -c "$c" -s "$s" -P "$p" -d "$DURATION" \
            -T "$LOADGEN_THREADS" --csv > "$tmp/client.out" 2> "$tmp/client.err" < /dev/null &
    fi
    cpid=$!
    PIDS+=("$cpid")
    wait "$cpid"
    rc=$?
    times > "$tmp/times.after"
    stop_pid "$cpid"
    before=$(sed -n 2p "$tmp/times.before")
    after=$(sed -n 2p "$tmp/times.after")
    if (( rc != 0 )); then
        echo "run.sh: $tool failed (exit $rc): $(< "$tmp/client.out")" >&2
        sed 's/^/    /' "$tmp/client.err" >&2
    fi
    if [[ $tool == loadgen ]]; then
        out=$(< "$tmp/client.out")
        reqs=$(field total_msgs "$out") rate=$(field rate "$out")
        p50=$(field p50_us "$out") p99=$(field p99_us "$out")
    else
        reqs=$(csv_field requests "$tmp/client.out") rate=$(csv_field rate "$tmp/client.out")
        p50=$(csv_field p50_us "$tmp/client.out") p99=$(csv_field p99_us "$tmp/client.out")
    fi
    [[ -n $reqs ]] || return 1
    MEASURED=$(awk -v r="$rate" -v p50="$p50" -v p99="$p99" -v t=$(( $(times_us "$after") - $(times_us "$before") )) \
        -v m="$reqs" -v rc="$rc" 'BEGIN { printf "%.0f %s %s %.3f %s\n", r, p50, p99, (m > 0 ? t / m : 0), rc }')
}

declare -A CMED_CPU CMED_RATE
if [[ -n $CLIENT_POINTS ]]; then
    CLIENTS=(loadgen echocli)
    CLIENT_KIND=${KINDS[0]}      # the first echosrv kind that runs
    echo "client overhead: echocli bench against loadgen, alternately, on one echosrv ($CLIENT_KIND, threads=$THREADS);" \
         "-d $DURATION -T $LOADGEN_THREADS for both"
    echo "cpu/req = the client's own utime+stime (getrusage of the reaped child, via bash 'times') / requests it completed"
    start_server "$CLIENT_KIND" || exit 1
    cpid_srv=$SRV_PID
    total=$(( $(wc -w <<< "$CLIENT_POINTS") * ROUNDS * 2 ))
    n=0
    for point in $CLIENT_POINTS; do
        IFS=x read -r c s p <<< "$point"
        for ((r = 1; r <= ROUNDS; r++)); do
            for tool in "${CLIENTS[@]}"; do
                n=$((n + 1))
                if ! kill -0 "$cpid_srv" 2>/dev/null; then
                    echo "run.sh: $CLIENT_KIND (pid $cpid_srv) died; the end of its log:" >&2
                    tail -5 "$SRV_LOG" | sed 's/^/    /' >&2
                    stop_pid "$cpid_srv"
                    FAILED=1
                    start_server "$CLIENT_KIND" || exit 1
                    cpid_srv=$SRV_PID
                fi
                measure_client "$tool" "$SRV_PORT" "$c" "$s" "$p" || MEASURED="0 0 0 0 1"
                record "$tool,$point,$r" "$(printf '%-12s %-8s round %d' "$point" "$tool" "$r")" req
            done
        done
    done
    stop_pid "$cpid_srv"
    printf '%-24s %-9s %12s %8s %8s %11s  %s\n' "conns x size x pipeline" client "rate req/s" p50_us p99_us cpu_us/req "(cpu min..max)"
    for point in $CLIENT_POINTS; do
        IFS=x read -r c s p <<< "$point"
        label="$c x $(human_size "$s") x $p"
        for tool in "${CLIENTS[@]}"; do
            row "$tool,$point" "$label" "$tool" 9
            CMED_CPU[$tool,$point]=$ROW_CPU CMED_RATE[$tool,$point]=$ROW_RATE
            label=""
        done
        printf '%-24s %-9s rate %s, cpu/req %s (echocli / loadgen)\n' "" "ratio" \
            "$(ratio "${CMED_RATE[echocli,$point]}" "${CMED_RATE[loadgen,$point]}")" \
            "$(ratio "${CMED_CPU[echocli,$point]}" "${CMED_CPU[loadgen,$point]}")"
    done
    echo
fi

# --- summary ---------------------------------------------------------------------------------------
cpu_ratio() { ratio "${MED_CPU[$1,$2]:-}" "${MED_CPU[baseline,$2]:-}"; }
client_ratio() { ratio "${CMED_CPU[echocli,$1]:-}" "${CMED_CPU[loadgen,$1]:-}"; }
first_churn=${CHURN_POINTS%% *}
first_iperf=${IPERF_POINTS%% *}
for kind in "${ECHO_KINDS[@]}"; do
    if [[ -n ${SKIPPED[$kind]:-} ]]; then
        echo "summary: $kind: skipped: ${SKIPPED[$kind]}"
        continue
    fi
    line="summary: $kind: cpu/msg ratio at 256x64x1: $(cpu_ratio "$kind" 256x64x1), at 1024x64x1: $(cpu_ratio "$kind" 1024x64x1);"
    line+=" p99 at 1024x64x1: ${MED_P99[$kind,1024x64x1]:-n/a} us vs baseline ${MED_P99[baseline,1024x64x1]:-n/a} us"
    line+=" ($(ratio "${MED_P99[$kind,1024x64x1]:-}" "${MED_P99[baseline,1024x64x1]:-}"))"
    if [[ -n $first_churn ]]; then
        line+="; churn $first_churn cycles/s $(ratio "${CMED_CYC[$kind,$first_churn]:-}" "${CMED_CYC[baseline,$first_churn]:-}"),"
        line+=" cpu/cycle $(ratio "${CMED_CCPU[$kind,$first_churn]:-}" "${CMED_CCPU[baseline,$first_churn]:-}")"
    fi
    [[ -z $first_iperf ]] || line+="; $first_iperf: ${IPERF_FRAC[$kind,$first_iperf]:-n/a} of iperf3"
    [[ -z ${IDLE_B[$kind]:-} ]] || line+="; idle conn ${IDLE_B[$kind]} B"
    if [[ -n ${MANY_RES[$kind]:-} ]]; then
        read -r mrate _ _ _ _ _ mrss _ mcpup mcpum <<< "${MANY_RES[$kind]}"
        line+="; $MANY_CONNS conns: $mrate msg/s, rss $mrss kB, cpu $mcpup %, $mcpum us/msg"
    fi
    echo "$line"
done
line="summary: baseline:"
[[ -z ${MED_P99[baseline,1024x64x1]:-} ]] || line+=" p99 at 1024x64x1: ${MED_P99[baseline,1024x64x1]} us;"
[[ -z $first_churn ]] || line+=" churn $first_churn: ${CMED_CYC[baseline,$first_churn]:-n/a} cycles/s;"
[[ -z $first_iperf ]] || line+=" $first_iperf: ${IPERF_FRAC[baseline,$first_iperf]:-n/a} of iperf3;"
[[ -z ${IDLE_B[baseline]:-} ]] || line+=" idle conn ${IDLE_B[baseline]} B;"
if [[ -n ${MANY_RES[baseline]:-} ]]; then
    read -r mrate _ _ _ _ _ mrss _ mcpup mcpum <<< "${MANY_RES[baseline]}"
    line+=" $MANY_CONNS conns: $mrate msg/s, rss $mrss kB, cpu $mcpup %, $mcpum us/msg;"
fi
[[ $line == "summary: baseline:" ]] || echo "${line%;}"
if [[ -n $CLIENT_POINTS ]]; then
    echo "summary: client cpu/req echocli/loadgen at 256x64: $(client_ratio 256x64x1), at 256x64x16: $(client_ratio 256x64x16)"
fi
(( FAILED == 0 )) || { echo "run.sh: some measurements had errors (see above)" >&2; exit 1; }
exit 0

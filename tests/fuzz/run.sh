#!/usr/bin/env bash
# tests/fuzz/run.sh - builds the libFuzzer targets with clang straight from the sources and
# runs each for SECONDS (default 60) from a copy of its seed corpus; SECONDS=0 runs only the
# seeds, once each, as a regression check. Exits non-zero on any crash, leak, timeout or
# sanitizer report, and prints where the input that caused it was saved: add that file to
# tests/fuzz/corpus/TARGET/ once the bug is fixed.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]     (targets: fuzz_echo fuzz_resp fuzz_ini fuzz_addr
#                                              fuzz_proxy)
#
# Needs clang and libclang-rt-14-dev (libFuzzer's runtime), and libinih-dev; the tree is
# not modified (everything goes to a temporary directory, kept when something failed).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_echo fuzz_resp fuzz_ini fuzz_addr fuzz_proxy)
case "$seconds" in
'' | *[!0-9]*) echo "usage: tests/fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

CC=${CC_FUZZ:-clang}
work=$(mktemp -d "${TMPDIR:-/tmp}/echosrv-fuzz.XXXXXX")

# What configure would find: Debian's inih exports its run-time settings.
ini_h="$(pkg-config --variable=includedir inih)/ini.h"
defs=(-DPACKAGE_VERSION='"fuzz"')
for d in ini_max_line ini_allow_multiline ini_use_stack ini_allow_realloc ini_initial_alloc \
         ini_stop_on_first_error; do
    v=0
    grep -qw "$d" "$ini_h" 2>/dev/null && v=1
    defs+=("-DHAVE_DECL_$(echo "$d" | tr a-z A-Z)=$v")
done
read -r -a inih_cflags <<< "$(pkg-config --cflags inih)"
read -r -a inih_libs <<< "$(pkg-config --libs inih)"

cflags=(-std=gnu11 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -Iinclude -Ilib -Iserver -Itests/fuzz "${defs[@]}")

sources() {
    case "$1" in
    fuzz_echo) echo tests/fuzz/fuzz_echo.c plugins/echo.c lib/frame.c ;;
    fuzz_resp) echo tests/fuzz/fuzz_resp.c plugins/resp.c ;;
    fuzz_ini) echo tests/fuzz/fuzz_ini.c server/config.c server/log.c lib/addr.c lib/cidr.c ;;
    fuzz_addr) echo tests/fuzz/fuzz_addr.c lib/addr.c ;;
    fuzz_proxy) echo tests/fuzz/fuzz_proxy.c lib/proxy.c ;;
    *) echo "run.sh: unknown target '$1'" >&2; return 1 ;;
    esac
}

failed=()
for t in "${targets[@]}"; do
    read -r -a src <<< "$(sources "$t")"
    extra=()
    [ "$t" = fuzz_ini ] && extra=("${inih_cflags[@]}" "${inih_libs[@]}")
    echo "fuzz: building $t" >&2
    "$CC" "${cflags[@]}" "${src[@]}" "${extra[@]}" -o "$work/$t"

    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    cp tests/fuzz/corpus/"$t"/* "$work/corpus/$t/" 2>/dev/null || true
    if [ "$seconds" -eq 0 ]; then
        mode=(-runs=0)
        echo "fuzz: $t over its $(ls "$work/corpus/$t" | wc -l) seeds" >&2
    else
        mode=(-max_total_time="$seconds")
        echo "fuzz: $t for ${seconds}s" >&2
    fi
    # No leak check at exit of the fuzzer itself: it checks each input instead.
    status=0
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=print_stacktrace=1 \
        "$work/$t" "${mode[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$t/" "$work/corpus/$t" \
        > "$work/$t.log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::new_units_added)|^#[0-9]+ *DONE' \
        "$work/$t.log" | sed "s/^/fuzz: $t: /" >&2 || true
    if [ $status -ne 0 ]; then
        tail -n 60 "$work/$t.log" >&2
        for f in "$work/artifacts/$t"/*; do
            [ -e "$f" ] && echo "fuzz: $t: FAILED (exit $status): crashing input: $f" >&2
        done
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]} (logs and inputs kept in $work)" >&2
    exit 1
fi
rm -rf "$work"
echo "fuzz: ${#targets[@]} targets clean" >&2

#!/usr/bin/env bash
# test_sdk.sh - the plugin writer's guide works: its example builds out of tree against the
# installed SDK (make install DESTDIR=...) and an installed echosrv serves it. TAP output.
set -u

top_builddir=${ABS_TOP_BUILDDIR:?ABS_TOP_BUILDDIR is not set}
top_srcdir=${ABS_TOP_SRCDIR:?ABS_TOP_SRCDIR is not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/echosrv-sdk.XXXXXX") || exit 1
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "1..4"
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$2" 2>/dev/null | tail -40; }
bail() { echo "Bail out! $1"; exit 1; }

# 1. Install into a staging directory.
dest=$tmp/dest
if make -C "$top_builddir" install DESTDIR="$dest" >"$tmp/install.log" 2>&1; then
    ok "make install DESTDIR"
else
    not_ok "make install DESTDIR" "$tmp/install.log"
    bail "cannot install"
fi
pc=$(find "$dest" -name echosrv-plugin.pc | head -n 1)
sbin=$(find "$dest" -path '*/sbin/echosrv' | head -n 1)
[ -n "$pc" ] && [ -n "$sbin" ] || bail "installed tree lacks echosrv-plugin.pc or sbin/echosrv"
prefix=$(sed -n 's/^prefix=//p' "$pc")

# 2. The guide's example, built with the one line the guide gives, from outside the tree.
mkdir -p "$tmp/upper"
awk '/^```c$/ { inblock = 1; next } /^```$/ { if (inblock) exit } inblock' \
    "$top_srcdir/doc/plugins.md" >"$tmp/upper/upper.c"
grep -q 'ES_PLUGIN_ENTRY' "$tmp/upper/upper.c" || bail "no C example found in doc/plugins.md"
cflags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --define-variable=prefix="$dest$prefix" \
    --cflags echosrv-plugin) || bail "pkg-config cannot read the installed echosrv-plugin.pc"
case "$cflags" in
*"$top_srcdir"* | *"$top_builddir/include"*) bail "cflags point into the source tree: $cflags" ;;
esac
# chmod go-w, as the guide says: echosrv refuses a plugin other users can write (umask 002).
if (cd "$tmp/upper" && ${CC:-cc} -shared -fPIC $cflags -Wall -Werror -o upper.so upper.c &&
    chmod go-w upper.so) \
    >"$tmp/cc.log" 2>&1; then
    ok "the guide's example builds against the installed header: cc -shared -fPIC $cflags"
else
    not_ok "the guide's example builds against the installed header" "$tmp/cc.log"
    bail "cannot build the example"
fi

# 3. The installed echosrv checks and serves it.
cat >"$tmp/upper/upper.ini" <<INI
[server]
bind = 127.0.0.1:0
threads = 1
plugin = ./upper.so

[upper]
max_line = 4096
INI
# --allow-root: the suite may run as root; what user to run as is not what this tests.
if "$sbin" --allow-root -t -c "$tmp/upper/upper.ini" >"$tmp/t.log" 2>&1; then
    ok "echosrv -t accepts the plugin and its section"
else
    not_ok "echosrv -t accepts the plugin and its section" "$tmp/t.log"
fi

"$sbin" --allow-root -c "$tmp/upper/upper.ini" 2>"$tmp/server.log" &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { not_ok "installed echosrv serves the plugin" "$tmp/server.log"; exit 1; }
reply=$(printf 'hello, plugin\nBYE\n' | timeout 10 nc -q 5 127.0.0.1 "$port")
if [ "$reply" = "$(printf 'HELLO, PLUGIN\nBYE')" ]; then
    ok "installed echosrv serves the plugin: '$(printf '%s' "$reply" | tr '\n' '|')'"
else
    echo "# got: '$reply'" >>"$tmp/server.log"
    not_ok "installed echosrv serves the plugin" "$tmp/server.log"
fi

#!/usr/bin/env bash
# test_install.sh - make install DESTDIR=... puts every file where the documentation says, and
# the installed echosrv, run with the installed configuration (its plugin_dir moved into
# DESTDIR), serves the installed echocli. TAP output.
set -u

top_builddir=${ABS_TOP_BUILDDIR:?ABS_TOP_BUILDDIR is not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/echosrv-install.XXXXXX") || exit 1
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && sed 's/^/# /' "$2" | tail -40; }
check() { # check DESCRIPTION LOG: ok when LOG is empty
    if [ -s "$2" ]; then not_ok "$1" "$2"; else ok "$1"; fi
}
bail() { echo "Bail out! $1"; exit 1; }

# The installation directories as this build's Makefile has them.
printf 'print-dirs:\n\t@echo "prefix=$(prefix) bindir=$(bindir) sbindir=$(sbindir) libdir=$(libdir) sysconfdir=$(sysconfdir) pkglibdir=$(pkglibdir) mandir=$(mandir) unitdir=$(systemdsystemunitdir)"\n' \
    >"$tmp/dirs.mk"
dirs=$(make -s --no-print-directory -C "$top_builddir" -f Makefile -f "$tmp/dirs.mk" print-dirs) ||
    bail "cannot read the installation directories from $top_builddir/Makefile"
eval "$dirs"
for v in prefix bindir sbindir libdir sysconfdir pkglibdir mandir; do
    [ -n "${!v}" ] || bail "$v is empty in the Makefile"
done

have_verify=0
if [ -n "$unitdir" ] && command -v systemd-analyze >/dev/null 2>&1; then
    have_verify=1
fi
echo "1..$((8 + have_verify))"

# 1. Install into a staging directory.
dest=$tmp/dest
if make -C "$top_builddir" install DESTDIR="$dest" >"$tmp/install.log" 2>&1; then
    ok "make install DESTDIR"
else
    not_ok "make install DESTDIR" "$tmp/install.log"
    bail "cannot install"
fi

# 2. The programs.
: >"$tmp/bin.log"
[ -x "$dest$sbindir/echosrv" ] || echo "no executable $sbindir/echosrv" >>"$tmp/bin.log"
[ -x "$dest$bindir/echocli" ] || echo "no executable $bindir/echocli" >>"$tmp/bin.log"
[ -e "$dest$bindir/echosrv" ] && echo "echosrv installed in bin as well as sbin" >>"$tmp/bin.log"
check "echosrv in $sbindir, echocli in $bindir" "$tmp/bin.log"

# 3. The plugins: each NAME.so, mode 0755, no libtool archive.
: >"$tmp/plugins.log"
for p in echo raw resp; do
    f=$dest$pkglibdir/$p.so
    if [ ! -f "$f" ]; then
        echo "no $pkglibdir/$p.so" >>"$tmp/plugins.log"
    elif [ "$(stat -c %a "$f")" != 755 ]; then
        echo "$pkglibdir/$p.so has mode $(stat -c %a "$f"), not 755" >>"$tmp/plugins.log"
    fi
done
ls "$dest$pkglibdir"/*.la >>"$tmp/plugins.log" 2>/dev/null
check "plugins echo, raw, resp in $pkglibdir, mode 0755, no .la" "$tmp/plugins.log"

# 4. The default configuration names the installed plugin directory.
conf=$dest$sysconfdir/echosrv/echo.ini
: >"$tmp/conf.log"
if [ ! -f "$conf" ]; then
    echo "no $sysconfdir/echosrv/echo.ini" >>"$tmp/conf.log"
else
    got=$(sed -n 's/^plugin_dir *= *\([^ ;]*\).*/\1/p' "$conf")
    [ "$got" = "$pkglibdir" ] ||
        echo "plugin_dir is '$got', not the installed $pkglibdir" >>"$tmp/conf.log"
fi
check "$sysconfdir/echosrv/echo.ini with plugin_dir = $pkglibdir" "$tmp/conf.log"

# 5. The man pages.
: >"$tmp/man.log"
for m in man8/echosrv.8 man5/echosrv.ini.5 man1/echocli.1 man3/echosrv-plugin.3; do
    [ -s "$dest$mandir/$m" ] || echo "no $mandir/$m" >>"$tmp/man.log"
done
check "man pages echosrv.8, echosrv.ini.5, echocli.1, echosrv-plugin.3" "$tmp/man.log"

# 6. The systemd units, with the installed paths in them.
: >"$tmp/units.log"
if [ -z "$unitdir" ]; then
    echo "# configured --with-systemdsystemunitdir=no: no units expected"
    ls "$dest"/*/lib/systemd/system/echosrv.* >>"$tmp/units.log" 2>/dev/null
else
    svc=$dest$unitdir/echosrv.service
    sock=$dest$unitdir/echosrv.socket
    for u in "$svc" "$sock"; do
        [ -f "$u" ] || echo "no $u" >>"$tmp/units.log"
    done
    grep -qx "ExecStart=$sbindir/echosrv -c $sysconfdir/echosrv/echo.ini" "$svc" 2>/dev/null ||
        echo "echosrv.service: no ExecStart=$sbindir/echosrv -c $sysconfdir/echosrv/echo.ini" \
            >>"$tmp/units.log"
    grep -qx 'Type=notify' "$svc" 2>/dev/null || echo "echosrv.service: not Type=notify" >>"$tmp/units.log"
    grep -qx 'ListenStream=127.0.0.1:8060' "$sock" 2>/dev/null ||
        echo "echosrv.socket: no ListenStream=127.0.0.1:8060" >>"$tmp/units.log"
    grep -n '@[a-z_]*@' "$svc" "$sock" >>"$tmp/units.log" 2>/dev/null
fi
check "systemd units in ${unitdir:-(none)}, paths substituted" "$tmp/units.log"

# 7. (With systemd-analyze.) The units pass systemd-analyze verify, with their paths moved
# into DESTDIR (it checks that ExecStart= exists) and without man page lookups.
if [ "$have_verify" = 1 ]; then
    mkdir -p "$tmp/units"
    for u in echosrv.service echosrv.socket; do
        sed "s|$sbindir/|$dest$sbindir/|g" "$dest$unitdir/$u" >"$tmp/units/$u"
    done
    if systemd-analyze verify --man=no "$tmp/units/echosrv.service" "$tmp/units/echosrv.socket" \
        >"$tmp/verify.log" 2>&1; then
        ok "systemd-analyze verify accepts echosrv.service and echosrv.socket"
    else
        not_ok "systemd-analyze verify accepts echosrv.service and echosrv.socket" "$tmp/verify.log"
    fi
fi

# The installed configuration, relocated: its plugin_dir moved into DESTDIR, a free port.
sed -e "s|^plugin_dir *=.*|plugin_dir = $dest$pkglibdir|" -e 's|^bind *=.*|bind = 127.0.0.1:0|' \
    -e 's|^threads *=.*|threads = 2|' "$conf" >"$tmp/echo.ini"

# 8. echosrv -t accepts it.
if "$dest$sbindir/echosrv" -t -c "$tmp/echo.ini" >"$tmp/t.log" 2>&1; then
    ok "installed echosrv -t accepts the installed configuration"
else
    not_ok "installed echosrv -t accepts the installed configuration" "$tmp/t.log"
fi

# 9. The installed echosrv serves the installed echocli (whose library is in DESTDIR too).
"$dest$sbindir/echosrv" -c "$tmp/echo.ini" 2>"$tmp/server.log" &
pid=$!
addr=
for _ in $(seq 200); do
    addr=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$tmp/server.log")
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$addr" ]; then
    not_ok "installed echosrv and echocli: an echo round trip" "$tmp/server.log"
    exit 1
fi
reply=$(LD_LIBRARY_PATH=$dest$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} timeout 20 \
    "$dest$bindir/echocli" -a "$addr" "hello, installed" 2>"$tmp/cli.log")
if [ "$reply" = "hello, installed" ]; then
    ok "installed echosrv and echocli: an echo round trip on $addr"
else
    { echo "echocli printed '$reply'"; cat "$tmp/cli.log" "$tmp/server.log"; } >"$tmp/rt.log"
    not_ok "installed echosrv and echocli: an echo round trip" "$tmp/rt.log"
fi

/* test_privileges.c - integration tests: user/group, refusing root, plugins others can write. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define IO_MS 5000              /* bound for one socket operation */
#define STOP_MS 5000            /* bound for SIGTERM -> exit */
#define RUN_MS 5000             /* bound for echosrv -t and refused starts */
#ifndef TEST_BUDGET_S
#define TEST_BUDGET_S 30        /* SIGALRM backstop per test */
#endif

static struct hs_ctx *begin(void **state, const char *name)
{
    return hs_ctx_begin(state, TEST_BUDGET_S, name);
}

/* The ids of the user nobody, which the tests switch to. */
static void nobody_ids(uid_t *uid, gid_t *gid)
{
    const struct passwd *pw = getpwnam("nobody");
    if (pw == NULL)
        HS_FAIL("no user 'nobody' on this system");
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
}

/* Starts `echosrv ARGS` exactly (no --allow-root), expecting NLISTEN listeners. */
static struct hs_proc *start_exact(const char *const args[], int nlisten)
{
    struct hs_proc *p = hs_server_start_args(args, nlisten, 0, HS_READY_MS);
    if (p == NULL)
        HS_FAIL("echosrv did not start");
    return p;
}

/* Runs `echosrv ARGS` exactly; asserts exit status WANT; returns the output (caller frees). */
static char *run_exact(const char *const args[], int want)
{
    char *out = NULL;
    int st = hs_run_exact(args, RUN_MS, &out);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != want) {
        hs_dump_lines("echosrv output", out ? out : "", out ? strlen(out) : 0);
        free(out);
        HS_FAIL("echosrv %s %s: wait status %d, expected exit %d", args[0], args[1], st, want);
    }
    return out;
}

static void assert_output_has(const char *out, const char *needle)
{
    if (strstr(out, needle) == NULL) {
        hs_dump_lines("echosrv output", out, strlen(out));
        HS_FAIL("expected '%s' in the output", needle);
    }
}

static void assert_output_lacks(const char *out, const char *needle)
{
    if (strstr(out, needle) != NULL) {
        hs_dump_lines("echosrv output", out, strlen(out));
        HS_FAIL("did not expect '%s' in the output", needle);
    }
}

/* The value of FIELD ("Uid", "Gid", "Groups") in /proc/PID/task/TID/status, into OUT
 * (tabs and spaces collapsed to one space, trimmed). Returns 0 or -1. */
static int task_field(pid_t pid, const char *tid, const char *field, char *out, size_t cap)
{
    char path[320], line[512];
    size_t flen = strlen(field);
    snprintf(path, sizeof path, "/proc/%d/task/%s/status", (int)pid, tid);
    FILE *fp = fopen(path, "re");
    if (fp == NULL)
        return -1;
    int rc = -1;
    while (fgets(line, sizeof line, fp) != NULL) {
        if (strncmp(line, field, flen) != 0 || line[flen] != ':')
            continue;
        size_t n = 0;
        for (const char *p = line + flen + 1; *p != '\0' && n + 1 < cap; p++) {
            bool space = *p == ' ' || *p == '\t' || *p == '\n';
            if (space && (n == 0 || out[n - 1] == ' '))
                continue;
            out[n++] = space ? ' ' : *p;
        }
        while (n > 0 && out[n - 1] == ' ')
            n--;
        out[n] = '\0';
        rc = 0;
        break;
    }
    fclose(fp);
    return rc;
}

/* Asserts that every thread of PID has FIELD equal to WANT; returns the number of threads. */
static int assert_every_task(pid_t pid, const char *field, const char *want)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        HS_FAIL("cannot open %s: %s", path, strerror(errno));
    int n = 0;
    const struct dirent *e;
    char got[256];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (task_field(pid, e->d_name, field, got, sizeof got) < 0)
            continue; /* the thread ended meanwhile */
        if (strcmp(got, want) != 0) {
            closedir(d);
            HS_FAIL("thread %s of echosrv: %s: '%s', expected '%s'", e->d_name, field, got,
                    want);
        }
        n++;
    }
    closedir(d);
    return n;
}

/* "N N N N": a Uid:/Gid: line with all four ids equal. */
static void four(char *out, size_t cap, unsigned id)
{
    snprintf(out, cap, "%u %u %u %u", id, id, id, id);
}

/* The Groups: line initgroups() gives USER with primary group GID: its groups in the
 * order of the kernel's sorted list, as /proc shows them. */
static void groups_of(const char *user, gid_t gid, char *out, size_t cap)
{
    gid_t list[64];
    int n = 64;
    if (getgrouplist(user, gid, list, &n) < 0)
        HS_FAIL("getgrouplist(%s): more than 64 groups", user);
    for (int i = 1; i < n; i++) /* insertion sort: the kernel sorts the list */
        for (int j = i; j > 0 && list[j - 1] > list[j]; j--) {
            gid_t t = list[j];
            list[j] = list[j - 1];
            list[j - 1] = t;
        }
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n && len < cap; i++)
        if (i == 0 || list[i] != list[i - 1])
            len += (size_t)snprintf(out + len, cap - len, "%s%u", len ? " " : "",
                                    (unsigned)list[i]);
}

/* Pings the server's I-th address once. */
static void serves(struct hs_ctx *c, struct hs_proc *srv, int i)
{
    int fd = hs_ctx_connect(c, hs_addr(srv, i), IO_MS);
    if (hs_ping(fd, "privileged?\r\n\r\n", IO_MS) < 0)
        HS_FAIL("no echo from %s", hs_addr(srv, i));
    hs_ctx_untrack_close(c, fd);
}

static void stop_ok(struct hs_proc *srv)
{
    int st = hs_stop(srv, STOP_MS);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        hs_dump_output(srv, "echosrv did not stop cleanly");
        HS_FAIL("echosrv: wait status %d after SIGTERM, expected exit 0", st);
    }
}

/* 1. user = nobody: as root every thread of the server really runs as nobody (uid, gid,
 * supplementary groups), its unix socket file belongs to nobody, and it serves. Not root:
 * the key is ignored with a warning, and it serves as the user running the test (which names
 * daemon instead when that user is nobody: a user that is already the one running warns
 * of nothing). */
static void test_user_nobody(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    uid_t uid;
    gid_t gid;
    char sock[400], bind[512], want[128], groups[512];
    nobody_ids(&uid, &gid);
    const char *user = geteuid() == uid ? "daemon" : "nobody";
    snprintf(sock, sizeof sock, "%s/s.sock", c->dir);
    snprintf(bind, sizeof bind, "127.0.0.1:0, unix:%s", sock);
    assert_int_equal(hs_write_config(c->conf, sizeof c->conf, c->dir, "nobody.ini", bind,
                                     "user = %s\n", user), 0);
    const char *args[] = { "-c", c->conf, NULL };
    /* As root, start it with supplementary groups of root's to lose. */
    gid_t saved[64], extra[] = { 0, 4242 };
    int nsaved = geteuid() == 0 ? getgroups(64, saved) : 0;
    if (geteuid() == 0 && (nsaved < 0 || setgroups(2, extra) < 0))
        HS_FAIL("setgroups: %s", strerror(errno));
    struct hs_proc *srv = hs_server_start_args(args, 2, 0, HS_READY_MS);
    if (geteuid() == 0 && setgroups((size_t)nsaved, saved) < 0)
        HS_FAIL("setgroups: %s", strerror(errno));
    if (srv == NULL)
        HS_FAIL("echosrv did not start");
    pid_t pid = hs_pid(srv);
    char *out = hs_output(srv);
    struct stat st;
    assert_int_equal(lstat(sock, &st), 0);

    if (geteuid() == 0) {
        assert_output_has(out, "switched to user nobody");
        /* c->dir is root's, mode 0700: nobody cannot remove the socket file. */
        assert_output_has(out, "so the socket file stays there after exit");
        four(want, sizeof want, (unsigned)uid);
        int n = assert_every_task(pid, "Uid", want);
        four(want, sizeof want, (unsigned)gid);
        assert_every_task(pid, "Gid", want);
        groups_of("nobody", gid, groups, sizeof groups);
        assert_every_task(pid, "Groups", groups);
        if (n < 3)
            HS_FAIL("expected the main thread and 2 workers, saw %d threads", n);
        if (st.st_uid != uid || st.st_gid != gid)
            HS_FAIL("%s: owned by %u:%u, expected nobody's %u:%u", sock, (unsigned)st.st_uid,
                    (unsigned)st.st_gid, (unsigned)uid, (unsigned)gid);
    } else {
        char ignored[128];
        snprintf(ignored, sizeof ignored, "user = %s ignored: echosrv was not started as root",
                 user);
        assert_output_has(out, ignored);
        assert_output_lacks(out, "switched to user");
        four(want, sizeof want, (unsigned)getuid());
        assert_every_task(pid, "Uid", want);
        if (st.st_uid != getuid())
            HS_FAIL("%s: owned by uid %u, expected mine", sock, (unsigned)st.st_uid);
    }
    free(out);
    serves(c, srv, 0);
    serves(c, srv, 1);
    stop_ok(srv);
    hs_proc_free(srv);

    if (geteuid() == 0) {
        /* Left behind, as documented; the next start replaces it. */
        if (lstat(sock, &st) != 0)
            HS_FAIL("%s was removed, though nobody cannot write %s", sock, c->dir);
        srv = start_exact(args, 2);
        serves(c, srv, 1);
        stop_ok(srv);
        hs_proc_free(srv);
    } else if (lstat(sock, &st) == 0) {
        HS_FAIL("%s was not removed at exit", sock);
    }
}

/* 2. As root, a socket file in a directory the user owns is removed at exit, without the
 * warning. Not root: the same configuration simply runs and cleans up. */
static void test_socket_dir_of_user(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    uid_t uid;
    gid_t gid;
    char run[300], sock[400], bind[512];
    nobody_ids(&uid, &gid);
    snprintf(run, sizeof run, "%s/run", c->dir);
    snprintf(sock, sizeof sock, "%s/s.sock", run);
    snprintf(bind, sizeof bind, "unix:%s", sock);
    assert_int_equal(mkdir(run, 0755), 0);
    if (geteuid() == 0) {
        assert_int_equal(chown(run, uid, gid), 0);
        assert_int_equal(chmod(c->dir, 0711), 0); /* nobody may pass through */
    }
    assert_int_equal(hs_write_config(c->conf, sizeof c->conf, c->dir, "run.ini", bind,
                                     "user = nobody\nsocket_mode = 0660\n"), 0);
    const char *args[] = { "-c", c->conf, NULL };
    struct hs_proc *srv = start_exact(args, 1);
    char *out = hs_output(srv);
    assert_output_lacks(out, "stays there after exit");
    free(out);
    struct stat st;
    assert_int_equal(lstat(sock, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0660);
    serves(c, srv, 0);
    stop_ok(srv);
    hs_proc_free(srv);
    bool left = lstat(sock, &st) == 0;
    unlink(sock);
    rmdir(run);
    if (left)
        HS_FAIL("%s was not removed at exit", sock);
}

/* 3. Root without user and without --allow-root: refused, by -t too, saying how to fix it.
 * Not root: both run. */
static void test_root_refused(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    assert_int_equal(hs_write_config(c->conf, sizeof c->conf, c->dir, "refuse.ini", "127.0.0.1:0",
                                     "%s", ""), 0);
    const char *check[] = { "-t", "-c", c->conf, NULL };
    const char *args[] = { "-c", c->conf, NULL };
    if (geteuid() == 0) {
        for (int i = 0; i < 2; i++) {
            char *out = run_exact(i == 0 ? check : args, 1);
            char want[600];
            snprintf(want, sizeof want, "%s: refusing to run as root", c->conf);
            assert_output_has(out, want);
            assert_output_has(out, "user = NAME");
            assert_output_has(out, "--allow-root");
            assert_output_lacks(out, "listening on");
            assert_output_lacks(out, "plugin echo"); /* refused before any plugin ran */
            free(out);
        }
    } else {
        char *out = run_exact(check, 0);
        assert_output_has(out, "configuration OK");
        assert_output_lacks(out, "as root");
        free(out);
        struct hs_proc *srv = start_exact(args, 1);
        serves(c, srv, 0);
        stop_ok(srv);
        hs_proc_free(srv);
    }
}

/* 4. --allow-root: as root it runs as root and warns; otherwise it changes nothing. */
static void test_allow_root(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    char want[128];
    assert_int_equal(hs_write_config(c->conf, sizeof c->conf, c->dir, "allow.ini", "127.0.0.1:0",
                                     "%s", ""), 0);
    const char *check[] = { "--allow-root", "-t", "-c", c->conf, NULL };
    char *out = run_exact(check, 0);
    assert_output_has(out, "configuration OK");
    if (geteuid() == 0)
        assert_output_has(out, "level=warn msg=\"running as root (--allow-root)");
    free(out);

    const char *args[] = { "--allow-root", "-c", c->conf, NULL };
    struct hs_proc *srv = start_exact(args, 1);
    out = hs_output(srv);
    if (geteuid() == 0)
        assert_output_has(out, "level=warn msg=\"running as root (--allow-root)");
    else
        assert_output_lacks(out, "running as root");
    free(out);
    four(want, sizeof want, (unsigned)geteuid());
    assert_every_task(hs_pid(srv), "Uid", want);
    serves(c, srv, 0);
    stop_ok(srv);
    hs_proc_free(srv);
}

/* 5. An unknown user or group stops both -t and a start, at its FILE:LINE, whoever runs it. */
static void test_unknown_user(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    static const struct { const char *extra, *what; int line; } cases[] = {
        {"user = no_such_user_x\n", "user: unknown user 'no_such_user_x'", 7},
        {"user = nobody\n\ngroup = no_such_group_x\n", "group: unknown group", 9},
        {"user = root\n", "user: 'root' is root (uid 0)", 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(hs_write_config(c->conf, sizeof c->conf, c->dir, "u.ini", "127.0.0.1:0",
                                         "%s", cases[i].extra), 0);
        const char *check[] = { "-t", "-c", c->conf, NULL };
        const char *args[] = { "-c", c->conf, NULL };
        char want[700];
        snprintf(want, sizeof want, "%s:%d: %s", c->conf, cases[i].line, cases[i].what);
        for (int j = 0; j < 2; j++) {
            char *out = run_exact(j == 0 ? check : args, 1);
            assert_output_has(out, want);
            free(out);
        }
    }
}

/* Copies the build tree's echo plugin to PATH with MODE. */
static void copy_plugin(const char *path, mode_t mode)
{
    char src[512], chunk[65536];
    snprintf(src, sizeof src, "%s/echo.so", hs_env_path("ES_PLUGIN_DIR"));
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ssize_t n = -1;
    bool ok = in >= 0 && out >= 0;
    while (ok && (n = read(in, chunk, sizeof chunk)) > 0)
        ok = write(out, chunk, (size_t)n) == n;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0)
        ok = false;
    if (!ok || n != 0 || chmod(path, mode) < 0)
        HS_FAIL("cannot copy %s to %s", src, path);
}

/* Both `echosrv -t` and a start refuse the configuration at c->conf, exit 1, naming
 * FILE:LINE (the plugin key's LINE) and each of the needles. */
static void check_refused(struct hs_ctx *c, int line, const char *n1, const char *n2)
{
    const char *check[] = { "-t", "-c", c->conf, NULL };
    const char *args[] = { "-c", c->conf, NULL };
    char at[600];
    snprintf(at, sizeof at, "%s:%d: plugin ", c->conf, line);
    for (int i = 0; i < 2; i++) {
        char *out = NULL;
        int st = hs_run(i == 0 ? check : args, RUN_MS, &out);
        bool ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(out, at) &&
                  strstr(out, "refused") && strstr(out, n1) && strstr(out, n2) &&
                  !strstr(out, "listening on");
        if (!ok) {
            hs_dump_lines("echosrv output", out ? out : "", out ? strlen(out) : 0);
            free(out);
            HS_FAIL("echosrv %s-c: wait status %d; expected exit 1 with '%s', '%s' and '%s'",
                    i == 0 ? "-t " : "", st, at, n1, n2);
        }
        free(out);
    }
}

/* 6. A world-writable plugin, or one in a world-writable directory, is refused by
 * echosrv -c and -t; the same file with chmod go-w serves. (Run with --allow-root: the
 * refusal holds for every user.) */
static void test_writable_plugin(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    char so[400], sub[300], subso[400];
    snprintf(so, sizeof so, "%s/mine.so", c->dir);
    copy_plugin(so, 0666);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "w.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\n\n"
                                   "[listener a]\nbind = 127.0.0.1:0\nplugin = ./mine.so\n",
                                   hs_env_path("ES_PLUGIN_DIR")), 0);
    check_refused(c, 7, "mode 0666", "world-writable");
    assert_int_equal(chmod(so, 0664), 0);
    check_refused(c, 7, "mode 0664", "group-writable");

    assert_int_equal(chmod(so, 0644), 0);
    const char *check[] = { "-t", "-c", c->conf, NULL };
    char *out = NULL;
    int st = hs_run(check, RUN_MS, &out);
    bool ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok)
        hs_dump_lines("echosrv -t output", out ? out : "", out ? strlen(out) : 0);
    free(out);
    if (!ok)
        HS_FAIL("echosrv -t refused mine.so with mode 0644");
    struct hs_proc *srv = hs_ctx_start_conf(c, 1, 0);
    serves(c, srv, 0);
    stop_ok(srv);
    hs_proc_free(srv);

    /* A world-writable directory without the sticky bit. */
    snprintf(sub, sizeof sub, "%s/open", c->dir);
    snprintf(subso, sizeof subso, "%s/mine.so", sub);
    assert_int_equal(mkdir(sub, 0755), 0);
    copy_plugin(subso, 0644);
    assert_int_equal(chmod(sub, 0777), 0);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "w.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\n\n"
                                   "[listener a]\nbind = 127.0.0.1:0\n\nplugin = open/mine.so\n",
                                   hs_env_path("ES_PLUGIN_DIR")), 0);
    check_refused(c, 8, "mode 0777", "sticky");
    unlink(subso);
    rmdir(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        HS_CTX_TEST(test_user_nobody),
        HS_CTX_TEST(test_socket_dir_of_user),
        HS_CTX_TEST(test_root_refused),
        HS_CTX_TEST(test_allow_root),
        HS_CTX_TEST(test_unknown_user),
        HS_CTX_TEST(test_writable_plugin),
    };

    if (hs_process_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}

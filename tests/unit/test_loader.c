/* test_loader.c - unit tests of plugin loading and descriptor checks (server/loader.c). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "loader.h"

#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        if (strstr((hay), (needle)) == NULL)                                   \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));           \
    } while (0)

/* The fake connection the echo plugin writes to. */
struct es_conn {
    buf out;
    size_t closes;
};

static int fake_write(es_conn *c, const void *data, size_t len)
{
    return buf_append(&c->out, data, len);
}

static void fake_close(es_conn *c)
{
    c->closes++;
}

static const es_host fake_host = {
    .size = sizeof(es_host),
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .write = fake_write,
    .close = fake_close,
};

/* DIR/NAME.so, where DIR comes from the environment variable env (caller
 * frees). */
static char *so_path(const char *env, const char *name)
{
    const char *dir = getenv(env);
    if (dir == NULL || dir[0] == '\0')
        fail_msg("%s is not set (run through make check)", env);
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s.so", dir, name) > 0);
    return path;
}

static char *test_plugin(const char *name)
{
    return so_path("ES_TEST_PLUGIN_DIR", name);
}

/* Checks that loader_open refuses the file with a message naming it and
 * containing each non-NULL needle, and leaves p owning nothing. */
static void check_refused(const char *path, const char *n1, const char *n2, const char *n3)
{
    plugin p;
    memset(&p, 0x5A, sizeof p);
    char err[512] = "";
    assert_int_equal(loader_open(&p, path, err, sizeof err), -1);
    assert_contains(err, path);
    if (n1 != NULL)
        assert_contains(err, n1);
    if (n2 != NULL)
        assert_contains(err, n2);
    if (n3 != NULL)
        assert_contains(err, n3);
    assert_null(p.handle);
    assert_null(p.path);
    assert_int_equal(p.initialized, 0);
}

static void refuse_test_plugin(const char *name, const char *n1, const char *n2, const char *n3)
{
    char *path = test_plugin(name);
    check_refused(path, n1, n2, n3);
    free(path);
}

static void test_missing_file(void **state)
{
    (void)state;
    char *path = test_plugin("does_not_exist");
    check_refused(path, "cannot load", NULL, NULL);
    free(path);
}

static void test_not_a_shared_object(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/test_loader.XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    ssize_t w = write(fd, "not an ELF file\n", 16);
    close(fd);
    plugin p;
    char err[512] = "";
    int rc = loader_open(&p, tmpl, err, sizeof err);
    unlink(tmpl);
    assert_int_equal(w, 16);
    assert_int_equal(rc, -1);
    assert_contains(err, tmpl);
    assert_contains(err, "cannot load");
    assert_null(p.handle);
    assert_null(p.path);
}

static void test_no_entry(void **state)
{
    (void)state;
    refuse_test_plugin("no_entry", "no entry point", ES_PLUGIN_ENTRY_NAME, NULL);
}

static void test_null_desc(void **state)
{
    (void)state;
    refuse_test_plugin("null_desc", "no descriptor", NULL, NULL);
}

static void test_bad_magic(void **state)
{
    (void)state;
    refuse_test_plugin("bad_magic", "magic", "0xdeadbeef", "0x31505345");
}

static void test_bad_abi(void **state)
{
    (void)state;
    /* Both majors: the plugin's 99 and this server's 1. */
    refuse_test_plugin("bad_abi", "ABI 99.3", "ABI 1.x", NULL);
}

static void test_too_small(void **state)
{
    (void)state;
    char min[32];
    snprintf(min, sizeof min, "minimum %u", ES_PLUGIN_MIN_SIZE);
    refuse_test_plugin("too_small", "size 40", min, NULL);
}

static void test_no_hooks(void **state)
{
    (void)state;
    refuse_test_plugin("no_hooks", "data_received", "(no_hooks)", NULL);
}

static void test_init_fails(void **state)
{
    (void)state;
    char *path = test_plugin("init_fails");
    plugin p;
    char err[512] = "";
    if (loader_open(&p, path, err, sizeof err) != 0)
        fail_msg("loader_open: %s", err);
    assert_non_null(p.handle);
    assert_string_equal(p.path, path);
    assert_string_equal(p.hooks.name, "init_fails");
    assert_int_equal(p.initialized, 0);

    const es_config_item items[] = {
        {.key = "a", .value = "1", .line = 3},
        {.key = "b", .value = "2", .line = 4},
    };
    es_config cfg = {.items = items, .count = 2};
    es_error e = {.item = 42, .msg = "stale"};
    assert_int_equal(loader_init(&p, &fake_host, &cfg, &e), -1);
    assert_int_equal(e.item, 0);
    assert_string_equal(e.msg, "init_fails says no");
    assert_int_equal(p.initialized, 0);

    /* An item index beyond the section is not passed on. */
    es_config none = {.items = NULL, .count = 0};
    assert_int_equal(loader_init(&p, &fake_host, &none, &e), -1);
    assert_int_equal(e.item, -1);
    assert_string_equal(e.msg, "init_fails says no");
    assert_int_equal(p.initialized, 0);

    /* fini is not owed: init_fails' fini aborts if called. */
    loader_close(&p);
    assert_null(p.handle);
    assert_null(p.path);
    free(path);
}

/* The loader copies the descriptor up to its declared size and reads what
 * lies beyond as NULL. init_fails declares ES_PLUGIN_MIN_SIZE and is
 * followed by non-zero garbage. While sizeof(es_plugin) equals
 * ES_PLUGIN_MIN_SIZE (ABI 1.0) the tail to check is empty; the test starts
 * checking the new hooks as soon as a field is appended. */
static void test_descriptor_copied_to_its_size(void **state)
{
    (void)state;
    char *path = test_plugin("init_fails");
    plugin p;
    char err[512] = "";
    if (loader_open(&p, path, err, sizeof err) != 0)
        fail_msg("loader_open: %s", err);

    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    void *sym = dlsym(h, ES_PLUGIN_ENTRY_NAME);
    assert_non_null(sym);
    es_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const es_plugin *d = entry();
    assert_non_null(d);
    assert_int_equal(d->size, ES_PLUGIN_MIN_SIZE);
    /* The garbage the loader must not take for hooks is really there. */
    const unsigned char *raw = (const unsigned char *)d;
    assert_int_equal(raw[d->size], 0xA5);

    size_t known = d->size < sizeof p.hooks ? d->size : sizeof p.hooks;
    assert_memory_equal(&p.hooks, d, known);
    const unsigned char *copy = (const unsigned char *)&p.hooks;
    for (size_t i = known; i < sizeof p.hooks; i++)
        if (copy[i] != 0)
            fail_msg("byte %zu of the descriptor, past its size %u, is 0x%02x", i, d->size,
                     copy[i]);
    /* Nothing spilled past the copy either. */
    assert_null(p.instance);
    assert_int_equal(p.initialized, 0);
    assert_true(p.hooks.init != NULL && p.hooks.fini != NULL);
    assert_null(p.hooks.open);
    assert_null(p.hooks.close);

    dlclose(h);
    loader_close(&p);
    free(path);
}

static void test_echo_loads(void **state)
{
    (void)state;
    char *path = so_path("ES_PLUGIN_DIR", "echo");
    plugin p;
    char err[512] = "";
    if (loader_open(&p, path, err, sizeof err) != 0)
        fail_msg("loader_open: %s", err);
    assert_non_null(p.handle);
    assert_string_equal(p.path, path);
    assert_int_equal(p.hooks.magic, ES_PLUGIN_MAGIC);
    assert_int_equal(p.hooks.abi_major, ES_PLUGIN_ABI_MAJOR);
    assert_int_equal(p.hooks.size, sizeof(es_plugin));
    assert_string_equal(p.hooks.name, "echo");
    assert_true(p.hooks.conn_size > 0);
    assert_non_null(p.hooks.data_received);
    assert_non_null(p.hooks.response);

    es_config empty = {.items = NULL, .count = 0};
    es_error e = {.item = 7, .msg = "x"};
    assert_int_equal(loader_init(&p, &fake_host, &empty, &e), 0);
    assert_int_equal(p.initialized, 1);
    assert_non_null(p.instance);

    /* The hooks are live: one message through a connection. */
    es_conn c = {.out = {0}, .closes = 0};
    void *cs = calloc(1, p.hooks.conn_size);
    assert_non_null(cs);
    if (p.hooks.open != NULL)
        assert_int_equal(p.hooks.open(&c, p.instance, cs), 0);
    const uint8_t *m = (const uint8_t *)"ping\r\n\r\n";
    assert_int_equal(p.hooks.data_received(&c, cs, m, 8), 8);
    assert_int_equal(p.hooks.response(&c, cs, m, 8), 0);
    assert_int_equal(c.out.len, 8);
    assert_memory_equal(buf_head(&c.out), m, 8);
    if (p.hooks.close != NULL)
        p.hooks.close(&c, cs);
    free(cs);
    buf_free(&c.out);

    loader_close(&p);
    assert_null(p.handle);
    assert_null(p.path);
    assert_null(p.instance);
    assert_int_equal(p.initialized, 0);
    free(path);
}

/* Opens, inits and closes the echo plugin once. */
static void echo_cycle(const char *path)
{
    plugin p;
    char err[512] = "";
    if (loader_open(&p, path, err, sizeof err) != 0)
        fail_msg("loader_open: %s", err);
    es_config empty = {.items = NULL, .count = 0};
    es_error e;
    assert_int_equal(loader_init(&p, &fake_host, &empty, &e), 0);
    assert_non_null(p.instance);
    loader_close(&p);
}

/* loader_close runs fini: the echo instance is freed each time, so many
 * cycles do not grow the heap (and LeakSanitizer sees no leak). */
static void test_close_runs_fini(void **state)
{
    (void)state;
    char *path = so_path("ES_PLUGIN_DIR", "echo");
    echo_cycle(path);
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < 500; i++)
        echo_cycle(path);
    struct mallinfo2 after = mallinfo2();
    /* An unfreed instance is about 100 bytes: 50 KB over 500 cycles. */
    if (after.uordblks > before.uordblks + 8192)
        fail_msg("heap grew by %zu bytes over 500 cycles", after.uordblks - before.uordblks);
    free(path);
}

/* A private directory (mkdtemp, mode 0700) holding a copy of the echo
 * plugin; its path and the copy's in *dir and *so (caller frees both, and
 * removes them with remove_copy()). */
static void copy_echo(char **dir, char **so)
{
    char *src = so_path("ES_PLUGIN_DIR", "echo");
    char tmpl[] = "/tmp/test_loader.XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    *dir = strdup(tmpl);
    assert_non_null(*dir);
    assert_true(asprintf(so, "%s/echo.so", *dir) > 0);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(*so, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(in >= 0 && out >= 0);
    char chunk[65536];
    ssize_t n;
    while ((n = read(in, chunk, sizeof chunk)) > 0)
        assert_int_equal(write(out, chunk, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(close(out), 0);
    assert_int_equal(chmod(*so, 0644), 0);
    free(src);
}

static void remove_copy(char *dir, char *so)
{
    chmod(dir, 0700);
    unlink(so);
    rmdir(dir);
    free(so);
    free(dir);
}

/* Opens path, which must load, and closes it. */
static void loads(const char *path)
{
    plugin p;
    char err[512] = "";
    if (loader_open(&p, path, err, sizeof err) != 0)
        fail_msg("loader_open %s: %s", path, err);
    assert_string_equal(p.hooks.name, "echo");
    loader_close(&p);
}

/* A plugin file that others can write is refused before dlopen, with its
 * mode and the reason; chmod go-w makes it load. */
static void test_refuse_writable_file(void **state)
{
    (void)state;
    char *dir, *so;
    copy_echo(&dir, &so);
    loads(so);
    static const struct { mode_t mode; const char *text, *who; } cases[] = {
        {0664, "mode 0664", "group-writable"},
        {0646, "mode 0646", "world-writable"},
        {0666, "mode 0666", "world-writable"},
        {0620, "mode 0620", "group-writable"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(chmod(so, cases[i].mode), 0);
        check_refused(so, "refused", cases[i].text, cases[i].who);
        char err[512] = "";
        assert_int_equal(loader_check_file(so, geteuid(), err, sizeof err), -1);
        assert_contains(err, "chmod go-w");
    }
    assert_int_equal(chmod(so, 0755), 0);
    loads(so);
    remove_copy(dir, so);
}

/* A directory anyone can write to is refused unless sticky, whether the
 * file is named through it or reached through a symlink. */
static void test_refuse_writable_dir(void **state)
{
    (void)state;
    char *dir, *so;
    copy_echo(&dir, &so);
    assert_int_equal(chmod(dir, 0777), 0);
    check_refused(so, "refused", "its directory", "mode 0777");
    char err[512] = "";
    assert_int_equal(loader_check_file(so, geteuid(), err, sizeof err), -1);
    assert_contains(err, "sticky");
    assert_contains(err, dir);

    /* Named through a symlink in a safe directory: the real one counts. */
    char *ldir, *lso;
    copy_echo(&ldir, &lso);
    assert_int_equal(unlink(lso), 0);
    assert_int_equal(symlink(so, lso), 0);
    check_refused(lso, "refused", dir, "mode 0777");

    assert_int_equal(chmod(dir, 01777), 0);
    loads(so);
    loads(lso);
    assert_int_equal(chmod(dir, 0775), 0); /* group-writable directories are not refused */
    loads(so);
    remove_copy(ldir, lso);
    remove_copy(dir, so);
}

/* Owner: root or the effective user only. loader_check_file takes the
 * effective uid, so both sides are checked whoever runs the test; as root
 * the file is also given away for real and loader_open refuses it. */
static void test_refuse_foreign_owner(void **state)
{
    (void)state;
    char *dir, *so;
    copy_echo(&dir, &so);
    char err[512] = "";
    uid_t me = geteuid();
    if (me == 0) {
        /* Root's file loads for any user; nobody's file only for nobody. */
        assert_int_equal(loader_check_file(so, 4242, err, sizeof err), 0);
        assert_int_equal(chown(so, 65534, 65534), 0);
        check_refused(so, "refused", "owned by", "uid 65534");
        assert_int_equal(loader_check_file(so, 65534, err, sizeof err), 0);
        err[0] = '\0';
        assert_int_equal(loader_check_file(so, 4242, err, sizeof err), -1);
        assert_contains(err, "uid 4242");
    } else {
        /* Not root: my own file loads, and would be refused by another user. */
        loads(so);
        assert_int_equal(loader_check_file(so, me + 1, err, sizeof err), -1);
        char want[64];
        snprintf(want, sizeof want, "uid %u", (unsigned)me);
        assert_contains(err, "owned by");
        assert_contains(err, want);
        assert_contains(err, "neither root nor the user echosrv runs as");
    }
    /* A root-owned file in root-owned directories passes for anyone. */
    assert_int_equal(loader_check_file("/bin/sh", 4242, err, sizeof err), 0);
    /* Not a regular file; a missing one is left to dlopen. */
    assert_int_equal(loader_check_file(dir, me, err, sizeof err), -1);
    assert_contains(err, "not a regular file");
    assert_int_equal(loader_check_file("/nonexistent/x.so", me, err, sizeof err), 0);
    remove_copy(dir, so);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_not_a_shared_object),
        cmocka_unit_test(test_no_entry),
        cmocka_unit_test(test_null_desc),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_bad_abi),
        cmocka_unit_test(test_too_small),
        cmocka_unit_test(test_no_hooks),
        cmocka_unit_test(test_init_fails),
        cmocka_unit_test(test_descriptor_copied_to_its_size),
        cmocka_unit_test(test_echo_loads),
        cmocka_unit_test(test_close_runs_fini),
        cmocka_unit_test(test_refuse_writable_file),
        cmocka_unit_test(test_refuse_writable_dir),
        cmocka_unit_test(test_refuse_foreign_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

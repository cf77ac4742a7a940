/* test_config.c - unit tests of INI loading, defaults and error lines (server/config.c). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        if (strstr((hay), (needle)) == NULL)                                   \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));           \
    } while (0)

/* The scratch directory of the whole group (mkdtemp). */
static char tmpdir[64];
static int nfiles;

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_config.XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes len bytes of text to a new file under the scratch directory (in
 * subdir if not NULL) and returns its path (caller frees). */
static char *write_ini_n(const char *subdir, const char *text, size_t len)
{
    char *dir = NULL, *path = NULL;
    if (subdir != NULL) {
        assert_true(asprintf(&dir, "%s/%s", tmpdir, subdir) > 0);
        if (mkdir(dir, 0700) != 0)
            assert_true(access(dir, F_OK) == 0);
    } else {
        dir = strdup(tmpdir);
        assert_non_null(dir);
    }
    assert_true(asprintf(&path, "%s/t%d.ini", dir, nfiles++) > 0);
    free(dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    return path;
}

static char *write_ini(const char *text)
{
    return write_ini_n(NULL, text, strlen(text));
}

/* Loads text, which must succeed, into cfg; returns the path (caller frees). */
static char *load_ok(config *cfg, const char *text)
{
    char *path = write_ini(text);
    char err[512] = "";
    if (config_load(cfg, path, err, sizeof err) != 0) {
        config_free(cfg);
        free(path);
        fail_msg("config_load failed: %s\n--- file:\n%s", err, text);
    }
    return path;
}

/* Whether err is one line "PATH:LINE: ..." containing needle; if not, why
 * says what is wrong. */
static int err_is(const char *err, const char *path, int line, const char *needle, char *why,
                  size_t whylen)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        snprintf(why, whylen, "error '%s' does not start with '%s'", err, prefix);
    else if (strstr(err + strlen(prefix), needle) == NULL)
        snprintf(why, whylen, "error '%s' does not contain '%s'", err, needle);
    else if (strchr(err, '\n') != NULL)
        snprintf(why, whylen, "error '%s' has a newline", err);
    else
        return 1;
    return 0;
}

static void check_err_at(const char *err, const char *path, int line, const char *needle)
{
    char why[1600];
    if (!err_is(err, path, line, needle, why, sizeof why))
        fail_msg("%s", why);
}

/* Loads len bytes of text, which must fail at line with a message
 * containing needle. */
static void load_err_n(const char *text, size_t len, int line, const char *needle)
{
    char *path = write_ini_n(NULL, text, len);
    config cfg;
    char err[512] = "", why[1600] = "";
    int rc = config_load(&cfg, path, err, sizeof err);
    int ok = rc == -1 && err_is(err, path, line, needle, why, sizeof why);
    config_free(&cfg);
    free(path);
    if (rc != -1)
        fail_msg("config_load succeeded on:\n%s", text);
    if (!ok)
        fail_msg("%s", why);
}

static void load_err(const char *text, int line, const char *needle)
{
    load_err_n(text, strlen(text), line, needle);
}

static void test_defaults(void **state)
{
    (void)state;
    config cfg;
    char *path = load_ok(&cfg, "");
    assert_string_equal(cfg.path, path);
    assert_string_equal(cfg.dir, tmpdir);
    assert_string_equal(cfg.bind, "127.0.0.1:8060");
    assert_int_equal(cfg.nbinds, 1);
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&cfg.binds[0].ss;
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(ntohs(s4->sin_port), 8060);
    assert_int_equal(cfg.backlog, 1024);
    assert_int_equal(cfg.max_connections, 10000);
    assert_int_equal(cfg.idle_timeout, 0);
    assert_int_equal(cfg.read_timeout, 0);
    assert_int_equal(cfg.max_message, (size_t)16 << 20);
    assert_int_equal(cfg.shutdown_timeout, 10);
    assert_int_equal(cfg.log_level, ES_LOG_INFO);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(cpus > 0);
    assert_int_equal(cfg.threads, cpus > 1024 ? 1024 : cpus);
    assert_string_equal(cfg.plugin, "echo");
    assert_int_equal(cfg.plugin_line, 0);
    assert_string_equal(cfg.plugin_dir, PLUGINDIR);
    char *want = NULL;
    assert_true(asprintf(&want, "%s/echo.so", PLUGINDIR) > 0);
    assert_string_equal(cfg.plugin_path, want);
    free(want);
    assert_int_equal(cfg.nsections, 0);
    assert_null(config_section_find(&cfg, "echo"));
    config_free(&cfg);
    free(path);

    /* An empty [server] section and comments change nothing. */
    path = load_ok(&cfg, "; comment\n# another\n\n[server]\n\n");
    assert_int_equal(cfg.backlog, 1024);
    assert_string_equal(cfg.bind, "127.0.0.1:8060");
    config_free(&cfg);
    free(path);
}

static void test_every_server_key(void **state)
{
    (void)state;
    config cfg;
    char *path = load_ok(&cfg,
                         "[server]\n"
                         "bind = :9000, [::1]:9001\n"
                         "threads = 3\n"
                         "plugin = myproto\n"
                         "plugin_dir = /opt/echosrv/plugins\n"
                         "backlog = 77\n"
                         "max_connections = 12345\n"
                         "idle_timeout = 300\n"
                         "max_message = 4096\n"
                         "shutdown_timeout = 42\n"
                         "log_level = debug\n"
                         "read_timeout = 30\n");
    assert_string_equal(cfg.bind, ":9000, [::1]:9001");
    assert_int_equal(cfg.nbinds, 2);
    assert_int_equal(cfg.binds[0].any, 1);
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)&cfg.binds[0].ss)->sin6_port), 9000);
    assert_int_equal(cfg.binds[1].any, 0);
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)&cfg.binds[1].ss)->sin6_port), 9001);
    assert_int_equal(cfg.threads, 3);
    assert_string_equal(cfg.plugin, "myproto");
    assert_int_equal(cfg.plugin_line, 4);
    assert_string_equal(cfg.plugin_dir, "/opt/echosrv/plugins");
    assert_string_equal(cfg.plugin_path, "/opt/echosrv/plugins/myproto.so");
    assert_int_equal(cfg.backlog, 77);
    assert_int_equal(cfg.max_connections, 12345);
    assert_int_equal(cfg.idle_timeout, 300);
    assert_int_equal(cfg.max_message, 4096);
    assert_int_equal(cfg.shutdown_timeout, 42);
    assert_int_equal(cfg.log_level, ES_LOG_DEBUG);
    assert_int_equal(cfg.read_timeout, 30);
    assert_int_equal(cfg.listeners[0].read_timeout, 30); /* the implicit listener's */
    config_free(&cfg);
    free(path);
}

/* Loads "[server]\nKEY = VALUE\n" and returns the config (caller frees). */
static void load_one(config *cfg, const char *key, const char *value)
{
    char text[256];
    snprintf(text, sizeof text, "[server]\n%s = %s\n", key, value);
    free(load_ok(cfg, text));
}

static void test_limits_accepted(void **state)
{
    (void)state;
    config cfg;
    load_one(&cfg, "threads", "1024");
    assert_int_equal(cfg.threads, 1024);
    config_free(&cfg);
    load_one(&cfg, "threads", "1");
    assert_int_equal(cfg.threads, 1);
    config_free(&cfg);
    load_one(&cfg, "backlog", "1");
    assert_int_equal(cfg.backlog, 1);
    config_free(&cfg);
    load_one(&cfg, "backlog", "65535");
    assert_int_equal(cfg.backlog, 65535);
    config_free(&cfg);
    load_one(&cfg, "max_connections", "100000000");
    assert_int_equal(cfg.max_connections, 100000000);
    config_free(&cfg);
    load_one(&cfg, "idle_timeout", "31536000");
    assert_int_equal(cfg.idle_timeout, 31536000);
    config_free(&cfg);
    load_one(&cfg, "read_timeout", "31536000");
    assert_int_equal(cfg.read_timeout, 31536000);
    config_free(&cfg);
    load_one(&cfg, "read_timeout", "0");
    assert_int_equal(cfg.read_timeout, 0);
    config_free(&cfg);
    load_one(&cfg, "shutdown_timeout", "0");
    assert_int_equal(cfg.shutdown_timeout, 0);
    config_free(&cfg);
    load_one(&cfg, "shutdown_timeout", "3600");
    assert_int_equal(cfg.shutdown_timeout, 3600);
    config_free(&cfg);
    load_one(&cfg, "max_message", "2");
    assert_int_equal(cfg.max_message, 2);
    config_free(&cfg);
    load_one(&cfg, "max_message", "4G");
    assert_int_equal(cfg.max_message, (size_t)4 << 30);
    config_free(&cfg);
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        load_one(&cfg, "log_level", levels[i]);
        assert_int_equal(cfg.log_level, i);
        config_free(&cfg);
    }
}

static void test_threads_zero_means_cpus(void **state)
{
    (void)state;
    config cfg;
    load_one(&cfg, "threads", "0");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(cfg.threads, cpus > 1024 ? 1024 : cpus);
    assert_true(cfg.threads >= 1);
    config_free(&cfg);
}

static void test_max_message_suffixes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t bytes;
    } cases[] = {
        {"100", 100}, {"1K", 1024}, {"64k", 65536}, {"2M", (size_t)2 << 20},
        {"3m", (size_t)3 << 20}, {"1G", (size_t)1 << 30}, {"2g", (size_t)2 << 30},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config cfg;
        load_one(&cfg, "max_message", cases[i].text);
        assert_int_equal(cfg.max_message, cases[i].bytes);
        config_free(&cfg);
        size_t v = 0;
        assert_int_equal(config_parse_size(cases[i].text, &v), 0);
        assert_int_equal(v, cases[i].bytes);
    }
    static const char *const bad[] = {"", "K", "-1", " 1", "1 K", "1KB", "1T", "0x10", "1.5M",
                                      "99999999999999999999", "17179869184G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t v = 12345;
        if (config_parse_size(bad[i], &v) != -1)
            fail_msg("config_parse_size('%s') accepted", bad[i]);
        assert_int_equal(v, 12345);
    }
}

static void test_plugin_dir_relative(void **state)
{
    (void)state;
    const char *text = "[server]\nplugin_dir = lib/plugins\n";
    char *path = write_ini_n("sub", text, strlen(text));
    config cfg;
    char err[512] = "";
    assert_int_equal(config_load(&cfg, path, err, sizeof err), 0);
    char *want_dir = NULL, *want = NULL;
    assert_true(asprintf(&want_dir, "%s/sub", tmpdir) > 0);
    assert_string_equal(cfg.dir, want_dir);
    assert_true(asprintf(&want, "%s/sub/lib/plugins", tmpdir) > 0);
    assert_string_equal(cfg.plugin_dir, want);
    free(want);
    assert_true(asprintf(&want, "%s/sub/lib/plugins/echo.so", tmpdir) > 0);
    assert_string_equal(cfg.plugin_path, want);
    free(want);
    free(want_dir);
    config_free(&cfg);
    free(path);
}

static void test_relative_ini_path(void **state)
{
    (void)state;
    char *path = write_ini("[server]\nplugin_dir = p\n");
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tmpdir), 0);
    config cfg;
    char err[512] = "";
    int rc = config_load(&cfg, strrchr(path, '/') + 1, err, sizeof err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.dir, ".");
    assert_string_equal(cfg.plugin_dir, "./p");
    assert_string_equal(cfg.plugin_path, "./p/echo.so");
    config_free(&cfg);
    free(path);
}

static void test_plugin_as_path(void **state)
{
    (void)state;
    const char *text = "[server]\nplugin_dir = /nowhere\nplugin = build/my.so\n";
    char *path = write_ini_n("sub2", text, strlen(text));
    config cfg;
    char err[512] = "";
    assert_int_equal(config_load(&cfg, path, err, sizeof err), 0);
    char *want = NULL;
    assert_true(asprintf(&want, "%s/sub2/build/my.so", tmpdir) > 0);
    assert_string_equal(cfg.plugin, "build/my.so");
    assert_string_equal(cfg.plugin_path, want);
    assert_int_equal(cfg.plugin_line, 3);
    free(want);
    config_free(&cfg);
    free(path);

    char *p2 = load_ok(&cfg, "[server]\nplugin = /abs/dir/x.so\n");
    assert_string_equal(cfg.plugin_path, "/abs/dir/x.so");
    config_free(&cfg);
    free(p2);
}

static void test_plugin_section(void **state)
{
    (void)state;
    config cfg;
    char *path = load_ok(&cfg,
                         "[server]\n"
                         "plugin = echo\n"
                         "\n"
                         "[echo]\n"
                         "separator = \"\\r\\n\"\n"
                         "; a comment\n"
                         "greeting = hello world\n"
                         "quoted = \"  spaced  \"\n"
                         "empty =\n");
    const config_section *s = config_section_find(&cfg, "echo");
    assert_non_null(s);
    assert_string_equal(s->name, "echo");
    assert_int_equal(s->line, 4);
    assert_int_equal(s->count, 4);
    assert_string_equal(s->items[0].key, "separator");
    assert_string_equal(s->items[0].value, "\\r\\n"); /* quotes gone, no escapes */
    assert_int_equal(s->items[0].line, 5);
    assert_string_equal(s->items[1].key, "greeting");
    assert_string_equal(s->items[1].value, "hello world");
    assert_int_equal(s->items[1].line, 7);
    assert_string_equal(s->items[2].key, "quoted");
    assert_string_equal(s->items[2].value, "  spaced  ");
    assert_int_equal(s->items[2].line, 8);
    assert_string_equal(s->items[3].key, "empty");
    assert_string_equal(s->items[3].value, "");
    assert_int_equal(s->items[3].line, 9);
    assert_null(config_section_find(&cfg, "server"));
    assert_null(config_section_find(&cfg, "ech"));
    char err[512] = "";
    static const char *const echo_only[] = {"echo"};
    assert_int_equal(config_check_sections(&cfg, echo_only, 1, err, sizeof err), 0);
    config_free(&cfg);
    free(path);

    /* A section with no keys is still recorded, with its line. */
    path = load_ok(&cfg, "[server]\n\n[echo]\n");
    s = config_section_find(&cfg, "echo");
    assert_non_null(s);
    assert_int_equal(s->line, 3);
    assert_int_equal(s->count, 0);
    config_free(&cfg);
    free(path);
}

static void test_quoted_server_values(void **state)
{
    (void)state;
    config cfg;
    char *path = load_ok(&cfg, "[server]\nbind = \"127.0.0.1:9\"\nlog_level = \"warn\"\n");
    assert_string_equal(cfg.bind, "127.0.0.1:9");
    assert_int_equal(cfg.log_level, ES_LOG_WARN);
    config_free(&cfg);
    free(path);
}

static void test_indented_and_bom(void **state)
{
    (void)state;
    config cfg;
    /* An indented line is a key of its own, not a continuation. */
    char *path = load_ok(&cfg, "[server]\nbacklog = 5\n  threads = 2\n");
    assert_int_equal(cfg.backlog, 5);
    assert_int_equal(cfg.threads, 2);
    config_free(&cfg);
    free(path);
    /* A UTF-8 byte order mark before the first section. */
    path = load_ok(&cfg, "\xEF\xBB\xBF[server]\nbacklog = 6\n");
    assert_int_equal(cfg.backlog, 6);
    config_free(&cfg);
    free(path);
    load_err("\xEF\xBB\xBF[server]\nbacklog = 6\n[server]\n", 3, "first at line 1");
}

static void test_long_lines_accepted(void **state)
{
    (void)state;
    /* Lines up to the documented maximum (4094 characters, here "long = "
     * and the value) are read whole. */
    static const size_t lens[] = {150, 250, 1000, 4094 - 7};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t n = lens[i];
        char *text = malloc(n + 64);
        assert_non_null(text);
        int k = snprintf(text, 64, "[server]\n[echo]\nlong = ");
        memset(text + k, 'v', n);
        strcpy(text + k + n, "\nafter = 1\n");
        config cfg;
        char *path = write_ini(text);
        char err[512] = "";
        if (config_load(&cfg, path, err, sizeof err) != 0) {
            config_free(&cfg);
            free(path);
            free(text);
            fail_msg("value of %zu bytes refused: %s", n, err);
        }
        const config_section *s = config_section_find(&cfg, "echo");
        assert_non_null(s);
        assert_int_equal(s->count, 2);
        assert_int_equal(strlen(s->items[0].value), n);
        assert_int_equal(s->items[0].line, 3);
        assert_string_equal(s->items[1].key, "after");
        assert_int_equal(s->items[1].line, 4);
        config_free(&cfg);
        free(path);
        free(text);
    }
}

static void test_line_too_long(void **state)
{
    (void)state;
    size_t n = 5000;
    char *text = malloc(n + 128);
    assert_non_null(text);
    int k = snprintf(text, 128, "[server]\nbacklog = 5\n[echo]\nlong = ");
    memset(text + k, 'v', n);
    /* What follows the cut would parse as a key of its own. */
    memcpy(text + k + 4090, "x = 1", 5);
    strcpy(text + k + n, "\nthreads = 2\n");
    load_err(text, 4, "line longer than");

    /* One character past the documented maximum of 4094. */
    k = snprintf(text, 128, "[server]\n[echo]\nlong = ");
    memset(text + k, 'v', 4095 - 7);
    strcpy(text + k + 4095 - 7, "\nafter = 1\n");
    load_err(text, 3, "line longer than");
    free(text);
}

static void test_unknown_key(void **state)
{
    (void)state;
    load_err("[server]\nbacklog = 5\nport = 80\n", 3, "unknown key 'port' in [server]");
}

static void test_bad_numbers(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value;
    } cases[] = {
        {"threads", "four"}, {"threads", "-1"}, {"threads", "1025"}, {"threads", "2x"},
        {"threads", "0x4"}, {"backlog", "0"}, {"backlog", "65536"}, {"backlog", "many"},
        {"backlog", "1.5"}, {"max_connections", "0"}, {"max_connections", "100000001"},
        {"max_connections", "-5"}, {"max_connections", "99999999999999999999999"},
        {"idle_timeout", "-1"}, {"idle_timeout", "31536001"}, {"idle_timeout", "10s"},
        {"shutdown_timeout", "-1"}, {"shutdown_timeout", "3601"}, {"shutdown_timeout", "ten"},
        {"max_message", "0"}, {"max_message", "1"}, {"max_message", "4097M"},
        {"max_message", "5G"}, {"max_message", "1T"}, {"max_message", "big"},
        {"max_message", "-2"}, {"threads", "\"\""}, {"read_timeout", "-1"},
        {"read_timeout", "31536001"}, {"read_timeout", "5m"}, {"read_timeout", ""},
        {"read_timeout", "1.5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256], needle[128];
        snprintf(text, sizeof text, "[server]\n\n%s = %s\n", cases[i].key, cases[i].value);
        snprintf(needle, sizeof needle, "%s: '", cases[i].key);
        load_err(text, 3, needle);
    }
}

static void test_bad_strings(void **state)
{
    (void)state;
    load_err("[server]\nlog_level = verbose\n", 2, "log_level: 'verbose' is not one of");
    load_err("[server]\nlog_level = INFO\n", 2, "log_level");
    load_err("[server]\nbind = 127.0.0.1\n", 2, "bind: address '127.0.0.1'");
    load_err("[server]\nbind = 127.0.0.1:99999\n", 2, "out of range");
    load_err("[server]\nbind = ::1:80\n", 2, "[ADDRESS]:PORT");
    load_err("[server]\nbind = 127.0.0.1:1,,127.0.0.1:2\n", 2, "empty address");
    load_err("[server]\nplugin =\n", 2, "plugin: empty value");
    load_err("[server]\nplugin = \"\"\n", 2, "plugin: empty value");
    load_err("[server]\nplugin_dir =\n", 2, "plugin_dir: empty value");
}

static void test_duplicates(void **state)
{
    (void)state;
    load_err("[server]\nbacklog = 5\nthreads = 1\nbacklog = 6\n", 4,
             "duplicate key 'backlog' in [server] (first set at line 2)");
    load_err("[server]\n[echo]\nseparator = a\n\nseparator = b\n", 5,
             "duplicate key 'separator' in [echo] (first set at line 3)");
    load_err("[server]\nbacklog = 5\n[echo]\n[server]\n", 4,
             "duplicate section [server] (first at line 1)");
    load_err("; comment\n\n[server]\nbacklog = 5\n[server]\n", 5,
             "duplicate section [server] (first at line 3)");
    load_err("[server]\n[echo]\na = 1\n\n[echo]\n", 5,
             "duplicate section [echo] (first at line 2)");
    /* The same key in different sections is fine. */
    config cfg;
    char *path = load_ok(&cfg, "[server]\nplugin = echo\n[echo]\nplugin = x\n");
    assert_string_equal(cfg.plugin, "echo");
    config_free(&cfg);
    free(path);
}

static void test_key_outside_section(void **state)
{
    (void)state;
    load_err("backlog = 5\n[server]\n", 1, "key 'backlog' outside of any section");
    load_err("\n; c\nbacklog = 5\n", 3, "outside of any section");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    load_err("[server]\nbacklog = 5\nthis line has no equals sign\n", 3, "syntax error");
    load_err("[server\n", 1, "syntax error");
    load_err("[server]\n[]\n", 2, "empty section name");
    /* inih cuts names at 49 characters: longer ones are refused at their line. */
    load_err("[server]\n[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\nk = v\n", 2,
             "longer than 49");
    load_err("[server] junk\nbacklog = 5\n", 1, "unexpected text after [server]");
    /* inih cuts values at " ;" even inside quotes: an unclosed quote says so. */
    load_err("[server]\nbacklog = 5\n[echo]\nseparator = \"a ;b\"\n", 4, "unterminated quote");
    load_err("[server]\nthreads = +2\n", 2, "threads: '+2' is not a number");
}

static void test_unix_bind_relative(void **state)
{
    (void)state;
    config cfg;
    char *path = load_ok(&cfg, "[server]\nbind = unix:rel.sock, unix:/abs.sock\n");
    char want[600];
    snprintf(want, sizeof want, "%s/rel.sock", cfg.dir);
    assert_int_equal(cfg.nbinds, 2);
    assert_string_equal(((struct sockaddr_un *)&cfg.binds[0].ss)->sun_path, want);
    assert_string_equal(((struct sockaddr_un *)&cfg.binds[1].ss)->sun_path, "/abs.sock");
    config_free(&cfg);
    free(path);
}

static void test_first_error_wins(void **state)
{
    (void)state;
    /* The error reported is the first one in the file. */
    load_err("[server]\nno equals here\nport = 1\n", 2, "syntax error");
    load_err("[server]\nno equals here\nbacklog = 0\n", 2, "syntax error");
    load_err("[server\nbacklog = 5\n", 1, "syntax error");
}

static void test_nul_byte(void **state)
{
    (void)state;
    static const char text[] = "[server]\nbacklog = 5\nthreads = 1\0junk\nidle_timeout = 1\n";
    load_err_n(text, sizeof text - 1, 3, "NUL byte");
}

static void test_missing_file(void **state)
{
    (void)state;
    char *path = NULL;
    assert_true(asprintf(&path, "%s/does-not-exist.ini", tmpdir) > 0);
    config cfg;
    char err[512] = "";
    assert_int_equal(config_load(&cfg, path, err, sizeof err), -1);
    char *want = NULL;
    assert_true(asprintf(&want, "%s: cannot open", path) > 0);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("error '%s' does not start with '%s'", err, want);
    free(want);
    config_free(&cfg);
    free(path);
}

static void test_check_sections(void **state)
{
    (void)state;
    config cfg;
    char *path = load_ok(&cfg, "[server]\n[echo]\na = 1\n\n[other]\nb = 2\n");
    char err[512] = "";
    static const char *const echo_only[] = {"echo"}, *const other_only[] = {"other"};
    assert_int_equal(config_check_sections(&cfg, echo_only, 1, err, sizeof err), -1);
    check_err_at(err, path, 5, "unknown section [other]");
    assert_contains(err, "[echo]");
    /* Under another plugin's name, [echo] is the stranger. */
    err[0] = '\0';
    assert_int_equal(config_check_sections(&cfg, other_only, 1, err, sizeof err), -1);
    check_err_at(err, path, 2, "unknown section [echo]");
    config_free(&cfg);
    free(path);
}

static void test_reload_after_error(void **state)
{
    (void)state;
    /* A config freed after a failed load can be loaded again. */
    char *bad = write_ini("[server]\nbacklog = 5\n[echo]\nx = 1\nport = 2\n[server]\n");
    config cfg;
    char err[512] = "";
    assert_int_equal(config_load(&cfg, bad, err, sizeof err), -1);
    config_free(&cfg);
    assert_null(cfg.path);
    assert_int_equal(cfg.nsections, 0);
    char *good = load_ok(&cfg, "[server]\nbacklog = 9\n");
    assert_int_equal(cfg.backlog, 9);
    config_free(&cfg);
    free(bad);
    free(good);
}

static void test_implicit_listener(void **state)
{
    (void)state;
    config cfg;
    /* No [listener] sections: [server] defines the one listener. */
    char *path = load_ok(&cfg,
                         "[server]\nbind = 127.0.0.1:7000, unix:x.sock\nplugin = raw\n"
                         "backlog = 12\nmax_connections = 34\nidle_timeout = 5\n"
                         "max_message = 64K\n");
    assert_int_equal(cfg.declared_listeners, 0);
    assert_int_equal(cfg.nlisteners, 1);
    const config_listener *l = &cfg.listeners[0];
    assert_string_equal(l->name, "default");
    assert_int_equal(l->line, 0);
    assert_string_equal(l->bind, "127.0.0.1:7000, unix:x.sock");
    assert_int_equal(l->nbinds, 2);
    assert_memory_equal(l->binds, cfg.binds, 2 * sizeof *cfg.binds);
    assert_string_equal(l->plugin, "raw");
    assert_int_equal(l->plugin_line, 3);
    assert_string_equal(l->plugin_path, cfg.plugin_path);
    assert_int_equal(l->backlog, 12);
    assert_int_equal(l->max_connections, 34);
    assert_int_equal(l->idle_timeout, 5);
    assert_int_equal(l->max_message, 65536);
    config_free(&cfg);
    free(path);

    /* An empty file: the default bind and plugin. */
    path = load_ok(&cfg, "");
    assert_int_equal(cfg.nlisteners, 1);
    assert_string_equal(cfg.listeners[0].bind, "127.0.0.1:8060");
    assert_string_equal(cfg.listeners[0].plugin_path, cfg.plugin_path);
    config_free(&cfg);
    free(path);
}

static void test_listener_sections(void **state)
{
    (void)state;
    config cfg;
    /* [server] after the listeners still provides their fallbacks. */
    char *path = load_ok(&cfg,
                         "[listener echo-1]\n"
                         "bind = 127.0.0.1:8060\n"
                         "\n"
                         "[listener Raw_2]\n"
                         "bind = :8007, unix:r.sock\n"
                         "plugin = raw\n"
                         "backlog = 5\n"
                         "max_connections = 6\n"
                         "idle_timeout = 7\n"
                         "max_message = 64K\n"
                         "read_timeout = 9\n"
                         "[listener resp]\n"
                         "bind = 127.0.0.1:6380\n"
                         "plugin = ../lib/resp.so\n"
                         "idle_timeout = 0\n"
                         "read_timeout = 0\n"
                         "[server]\n"
                         "plugin = echo\n"
                         "plugin_dir = /p\n"
                         "backlog = 50\n"
                         "max_connections = 60\n"
                         "idle_timeout = 70\n"
                         "read_timeout = 80\n"
                         "max_message = 1M\n"
                         "[echo]\n"
                         "separator = x\n");
    assert_int_equal(cfg.declared_listeners, 1);
    assert_int_equal(cfg.nlisteners, 3);
    const config_listener *a = &cfg.listeners[0], *b = &cfg.listeners[1], *r = &cfg.listeners[2];
    assert_string_equal(a->name, "echo-1");
    assert_int_equal(a->line, 1);
    assert_string_equal(a->bind, "127.0.0.1:8060");
    assert_int_equal(a->nbinds, 1);
    assert_string_equal(a->plugin, "echo");
    assert_int_equal(a->plugin_line, 18); /* [server]'s, for errors about the plugin */
    assert_string_equal(a->plugin_path, "/p/echo.so");
    assert_int_equal(a->backlog, 50);
    assert_int_equal(a->max_connections, 60);
    assert_int_equal(a->idle_timeout, 70);
    assert_int_equal(a->read_timeout, 80); /* inherited from [server] */
    assert_int_equal(a->max_message, (size_t)1 << 20);

    assert_string_equal(b->name, "Raw_2");
    assert_int_equal(b->line, 4);
    assert_int_equal(b->nbinds, 2);
    assert_int_equal(b->binds[0].any, 1);
    char want[600];
    snprintf(want, sizeof want, "%s/r.sock", cfg.dir);
    assert_string_equal(((struct sockaddr_un *)&b->binds[1].ss)->sun_path, want);
    assert_string_equal(b->plugin, "raw");
    assert_int_equal(b->plugin_line, 6);
    assert_string_equal(b->plugin_path, "/p/raw.so");
    assert_int_equal(b->backlog, 5);
    assert_int_equal(b->max_connections, 6);
    assert_int_equal(b->idle_timeout, 7);
    assert_int_equal(b->read_timeout, 9);
    assert_int_equal(b->max_message, 65536);

    assert_string_equal(r->name, "resp");
    snprintf(want, sizeof want, "%s/../lib/resp.so", cfg.dir);
    assert_string_equal(r->plugin_path, want);
    assert_int_equal(r->idle_timeout, 0); /* set to 0: not inherited */
    assert_int_equal(r->read_timeout, 0);
    assert_int_equal(cfg.read_timeout, 80);
    assert_int_equal(r->max_connections, 60);

    /* [server]'s own values are unchanged; [listener] sections are sections. */
    assert_int_equal(cfg.max_connections, 60);
    assert_string_equal(cfg.plugin_path, "/p/echo.so");
    assert_non_null(config_section_find(&cfg, "listener resp"));
    char err[512] = "";
    static const char *const names[] = {"echo", "raw", "resp"};
    assert_int_equal(config_check_sections(&cfg, names, 3, err, sizeof err), 0);
    config_free(&cfg);
    free(path);

    /* Tabs and several spaces between "listener" and NAME. */
    path = load_ok(&cfg, "[listener\t  a]\nbind = :1\n");
    assert_int_equal(cfg.nlisteners, 1);
    assert_string_equal(cfg.listeners[0].name, "a");
    config_free(&cfg);
    free(path);
}

static void test_listener_errors(void **state)
{
    (void)state;
    /* bind is required, reported at the section header. */
    load_err("[server]\nplugin = echo\n\n[listener a]\nplugin = raw\n[listener b]\nbind = :1\n", 4,
             "[listener a] has no bind");
    load_err("[listener a]\nbind = :1\n[listener b]\n", 3, "[listener b] has no bind");
    /* bind in [server] beside listeners: at its line, before or after them. */
    load_err("[server]\nthreads = 1\nbind = :1\n[listener a]\nbind = :2\n", 3,
             "move it into a [listener NAME] section");
    load_err("[listener a]\nbind = :2\n[server]\nbind = :1\n", 4,
             "move it into a [listener NAME] section");
    /* Of both errors, the first in the file. */
    load_err("[listener a]\n[server]\nbind = :1\n", 1, "has no bind");
    load_err("[server]\nbind = :1\n[listener a]\n", 2, "move it into");
    /* Names. */
    load_err("[server]\n[listener a.b]\nbind = :1\n", 2, "bad listener name 'a.b'");
    load_err("[server]\n[listener a b]\nbind = :1\n", 2, "bad listener name 'a b'");
    load_err("[server]\n[listener é]\nbind = :1\n", 2, "bad listener name");
    load_err("[server]\n[listener]\nbind = :1\n", 2, "needs a name");
    load_err("[server]\n[listener  ]\nbind = :1\n", 2, "needs a name");
    load_err("[listener a]\nbind = :1\n\n[listener a]\nbind = :2\n", 4,
             "duplicate section [listener a] (first at line 1)");
    load_err("[listener a]\nbind = :1\n\n[listener  a]\nbind = :2\n", 4,
             "duplicate section [listener a] (first at line 1)");
    /* Keys. */
    load_err("[listener a]\nbind = :1\nthreads = 2\n", 3, "unknown key 'threads' in [listener a]");
    load_err("[listener a]\nbind = :1\nsepar = 2\n", 3, "unknown key 'separ'");
    load_err("[listener a]\nbind = :1\nbind = :2\n", 3,
             "duplicate key 'bind' in [listener a] (first set at line 2)");
    load_err("[listener a]\nbind = 127.0.0.1\n", 2, "bind: address '127.0.0.1'");
    load_err("[listener a]\nbind = :1\nplugin =\n", 3, "plugin: empty value");
    load_err("[listener a]\nbind = :1\nbacklog = 0\n", 3, "backlog: '0'");
    load_err("[listener a]\nbind = :1\nmax_connections = x\n", 3, "max_connections: 'x'");
    load_err("[listener a]\nbind = :1\nidle_timeout = -1\n", 3, "idle_timeout: '-1'");
    load_err("[listener a]\nbind = :1\n\nread_timeout = 2s\n", 4,
             "read_timeout: '2s' is not a number of seconds from 0 to 31536000");
    load_err("[listener a]\nbind = :1\nread_timeout = 1\nread_timeout = 2\n", 4,
             "duplicate key 'read_timeout' in [listener a] (first set at line 3)");
    load_err("[server]\nread_timeout = 1\nread_timeout = 1\n", 3,
             "duplicate key 'read_timeout' in [server] (first set at line 2)");
    load_err("[listener a]\nbind = :1\nread_timeou = 2\n", 3,
             "(expected bind, plugin, backlog, max_connections, idle_timeout, read_timeout,");
    load_err("[listener a]\nbind = :1\nmax_message = 1\n", 3, "max_message: '1'");
}

static void test_access_keys(void **state)
{
    (void)state;
    config cfg;
    /* [server]'s lists and socket_mode are the listeners' defaults; a
     * listener's own value (an empty list included) replaces them. */
    char *path = load_ok(&cfg, "[server]\nallow = 127.0.0.0/8, ::1/128\ndeny = 10.1.2.3\n"
                               "socket_mode = 0660\n"
                               "[listener a]\nbind = :1\n"
                               "[listener b]\nbind = :2\nallow =\ndeny = ::/0\nsocket_mode = 600\n");
    assert_int_equal(cfg.nallow, 2);
    assert_int_equal(cfg.ndeny, 1);
    assert_int_equal(cfg.socket_mode, 0660);
    assert_int_equal(cfg.nlisteners, 2);
    const config_listener *a = &cfg.listeners[0], *b = &cfg.listeners[1];
    assert_int_equal(a->nallow, 2);
    assert_int_equal(a->allow[0].family, AF_INET);
    assert_int_equal(a->allow[0].prefix, 8);
    assert_int_equal(a->allow[1].family, AF_INET6);
    assert_int_equal(a->ndeny, 1);
    assert_int_equal(a->deny[0].prefix, 32);
    assert_int_equal(a->socket_mode, 0660);
    assert_int_equal(b->nallow, 0);
    assert_null(b->allow);
    assert_int_equal(b->ndeny, 1);
    assert_int_equal(b->deny[0].family, AF_INET6);
    assert_int_equal(b->socket_mode, 0600);
    config_free(&cfg);
    free(path);

    /* The implicit listener takes [server]'s; unset means no lists, -1. */
    path = load_ok(&cfg, "[server]\nbind = :1\ndeny = 192.168.0.0/16\n");
    assert_int_equal(cfg.listeners[0].ndeny, 1);
    assert_int_equal(cfg.listeners[0].nallow, 0);
    assert_int_equal(cfg.listeners[0].socket_mode, -1);
    config_free(&cfg);
    free(path);
}

static void test_access_errors(void **state)
{
    (void)state;
    load_err("[server]\nallow = 10.0.0.0/33\n", 2, "allow: '10.0.0.0/33': prefix length 33");
    load_err("[server]\ndeny = ::1/129\n", 2, "deny: '::1/129': prefix length 129");
    load_err("[server]\nallow = 10.0.0.0/x\n", 2, "allow: '10.0.0.0/x': bad prefix");
    load_err("[server]\nallow = 127.0.0.1, localhost\n", 2,
             "allow: 'localhost' is not an IPv4 or IPv6 address");
    load_err("[server]\ndeny = 10.1.2.3/8\n", 2, "bits set past the /8 prefix");
    load_err("[server]\nallow = 10.0.0.0/8,,::1\n", 2, "allow: empty item");
    load_err("[listener a]\nbind = :1\n\nallow = 1.2.3.4/40\n", 4, "allow: '1.2.3.4/40'");
    load_err("[listener a]\nbind = :1\ndeny = nope\n", 3, "deny: 'nope'");
    load_err("[listener a]\nbind = :1\nallow = ::1\nallow = ::2\n", 4,
             "duplicate key 'allow' in [listener a] (first set at line 3)");
    load_err("[server]\nsocket_mode = 0800\n", 2, "socket_mode: '0800' is not an octal mode");
    load_err("[server]\nsocket_mode = 1777\n", 2, "socket_mode: '1777'");
    load_err("[server]\nsocket_mode =\n", 2, "socket_mode: ''");
    load_err("[listener a]\nbind = :1\nsocket_mode = rw\n", 3, "socket_mode: 'rw'");
}

static void test_proxy_keys(void **state)
{
    (void)state;
    config cfg;
    /* [server]'s proxy keys are the listeners' defaults, key by key. */
    char *path = load_ok(&cfg, "[server]\nproxy_protocol = on\nproxy_allow = 10.0.0.0/8, ::1\n"
                               "proxy_timeout = 3\n"
                               "[listener a]\nbind = :1\n"
                               "[listener b]\nbind = :2\nproxy_allow = 192.168.1.1\n"
                               "[listener c]\nbind = :3\nproxy_protocol = off\n");
    assert_int_equal(cfg.proxy_timeout, 3);
    const config_listener *a = &cfg.listeners[0], *b = &cfg.listeners[1], *c = &cfg.listeners[2];
    assert_int_equal(a->proxy.on, 1);
    assert_int_equal(a->proxy.nallow, 2);
    assert_int_equal(a->proxy.allow[1].family, AF_INET6);
    assert_int_equal(b->proxy.on, 1);
    assert_int_equal(b->proxy.nallow, 1);
    assert_int_equal(b->proxy.allow[0].prefix, 32);
    assert_int_equal(c->proxy.on, 0);
    config_free(&cfg);
    free(path);

    /* Off by default, proxy_timeout 5 s. */
    path = load_ok(&cfg, "[server]\nbind = :1\n");
    assert_int_equal(cfg.listeners[0].proxy.on, 0);
    assert_int_equal(cfg.listeners[0].proxy.nallow, 0);
    assert_int_equal(cfg.proxy_timeout, 5);
    config_free(&cfg);
    free(path);

    /* The implicit listener. */
    path = load_ok(&cfg, "[server]\nbind = :1\nproxy_protocol = on\nproxy_allow = 127.0.0.1\n");
    assert_int_equal(cfg.listeners[0].proxy.on, 1);
    assert_int_equal(cfg.listeners[0].proxy.nallow, 1);
    config_free(&cfg);
    free(path);
}

/* io: the I/O back end, auto by default; a [server] key only. */
static void test_io_key(void **state)
{
    (void)state;
    static const struct { const char *text; int want; } ok[] = {
        {"auto", IO_AUTO}, {"epoll", IO_EPOLL}, {"io_uring", IO_URING}, {"\"epoll\"", IO_EPOLL},
    };
    config cfg;
    free(load_ok(&cfg, ""));
    assert_int_equal(cfg.io, IO_AUTO);
    config_free(&cfg);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        load_one(&cfg, "io", ok[i].text);
        assert_int_equal(cfg.io, ok[i].want);
        config_free(&cfg);
    }
    int io = -1;
    assert_int_equal(config_parse_io("io_uring", &io), 0);
    assert_int_equal(io, IO_URING);
    static const char *const bad[] = {"EPOLL", "uring", "io-uring", "", "epoll ", "auto1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        io = -1;
        assert_int_equal(config_parse_io(bad[i], &io), -1);
        assert_int_equal(io, -1);
    }
    load_err("[server]\n\nio = uring\n", 3, "io: 'uring' is not epoll, io_uring or auto");
    load_err("[server]\nio = epoll\nio = auto\n", 3,
             "duplicate key 'io' in [server] (first set at line 2)");
    load_err("[listener a]\nbind = :1\nio = epoll\n", 3, "unknown key 'io'");
}

static void test_proxy_errors(void **state)
{
    (void)state;
    load_err("[server]\nproxy_protocol = yes\n", 2, "proxy_protocol: 'yes' is not on or off");
    load_err("[server]\nproxy_allow = 10.0.0.0/33\n", 2, "proxy_allow: '10.0.0.0/33'");
    load_err("[server]\nproxy_timeout = 0\n", 2, "proxy_timeout: '0' is not a number of seconds");
    load_err("[listener a]\nbind = :1\nproxy_timeout = 2\n", 3, "unknown key 'proxy_timeout'");
    /* on without proxy_allow: reported at proxy_protocol's line. */
    load_err("[server]\nbind = :1\nproxy_protocol = on\n", 3,
             "listener default: proxy_protocol = on needs proxy_allow");
    load_err("[listener a]\nbind = :1\nproxy_protocol = on\nproxy_allow =\n", 3,
             "listener a: proxy_protocol = on needs proxy_allow");
    load_err("[server]\nproxy_protocol = on\n[listener a]\nbind = :1\n", 2,
             "listener a: proxy_protocol = on needs proxy_allow");
    /* proxy_allow of a listener's own without proxy_protocol. */
    load_err("[listener a]\nbind = :1\n\nproxy_allow = 127.0.0.1\n", 4,
             "listener a: proxy_allow is set but proxy_protocol is off");
    load_err("[server]\nbind = :1\nproxy_allow = 127.0.0.1\n", 3,
             "proxy_allow is set but proxy_protocol is off");
    load_err("[listener a]\nbind = :1\nproxy_protocol = on\nproxy_protocol = off\n", 4,
             "duplicate key 'proxy_protocol' in [listener a] (first set at line 3)");
}

static void test_tls_keys(void **state)
{
    (void)state;
    config cfg;
    /* [server]'s TLS keys are defaults, key by key; paths resolve against
     * the INI file's directory; an empty tls_cert makes a plain listener. */
    char *path = load_ok(&cfg, "[server]\ntls_cert = s.pem\ntls_key = /abs/s.key\n"
                               "tls_ciphers = ECDHE+AESGCM\ntls_handshake_timeout = 3\n"
                               "[listener a]\nbind = :1\n"
                               "[listener b]\nbind = :2\ntls_ca = ca.pem\n"
                               "tls_verify_client = optional\ntls_min_version = 1.3\n"
                               "[listener c]\nbind = :3\ntls_cert =\n");
    assert_int_equal(cfg.tls_handshake_timeout, 3);
    assert_int_equal(cfg.nlisteners, 3);
    const config_listener *a = &cfg.listeners[0], *b = &cfg.listeners[1], *c = &cfg.listeners[2];
    char want[600];
    snprintf(want, sizeof want, "%s/s.pem", tmpdir);
    assert_string_equal(a->tls.cert, want);
    assert_string_equal(a->tls.key, "/abs/s.key");
    assert_string_equal(a->tls.ciphers, "ECDHE+AESGCM");
    assert_int_equal(a->tls.verify_client, TLS_VERIFY_OFF);
    assert_int_equal(a->tls.min_version, 12);
    assert_null(a->tls.ca);
    assert_int_equal(a->tls.line[TK_CERT], 2);
    assert_string_equal(b->tls.cert, want);
    snprintf(want, sizeof want, "%s/ca.pem", tmpdir);
    assert_string_equal(b->tls.ca, want);
    assert_int_equal(b->tls.verify_client, TLS_VERIFY_OPTIONAL);
    assert_int_equal(b->tls.min_version, 13);
    assert_int_equal(b->tls.line[TK_CA], 10);
    assert_string_equal(c->tls.cert, "");
    config_free(&cfg);
    free(path);

    /* Without TLS keys nothing is set; the handshake timeout defaults to 10 s. */
    path = load_ok(&cfg, "[server]\nbind = :1\n");
    assert_null(cfg.listeners[0].tls.cert);
    assert_int_equal(cfg.listeners[0].tls.min_version, 12);
    assert_int_equal(cfg.tls_handshake_timeout, 10);
    config_free(&cfg);
    free(path);
}

/* user and group: names and numeric ids resolved at load time, the
 * group defaulting to the user's primary group whatever the key order. */
static void test_user_group_keys(void **state)
{
    (void)state;
    const struct passwd *pw = getpwnam("nobody");
    assert_non_null(pw);
    uid_t nobody_uid = pw->pw_uid;
    gid_t nobody_gid = pw->pw_gid;
    config cfg;

    char *path = load_ok(&cfg, "[server]\nbind = :1\n");
    assert_null(cfg.user);
    assert_null(cfg.group);
    assert_int_equal(cfg.user_line, 0);
    config_free(&cfg);
    free(path);

    path = load_ok(&cfg, "[server]\n\nuser = nobody\n");
    assert_string_equal(cfg.user, "nobody");
    assert_string_equal(cfg.user_name, "nobody");
    assert_int_equal(cfg.user_line, 3);
    assert_int_equal(cfg.uid, nobody_uid);
    assert_int_equal(cfg.gid, nobody_gid);
    assert_null(cfg.group);
    config_free(&cfg);
    free(path);

    /* A numeric uid with an entry gets its name (for initgroups) and group. */
    char text[256];
    snprintf(text, sizeof text, "[server]\nuser = %u\n", (unsigned)nobody_uid);
    path = load_ok(&cfg, text);
    assert_int_equal(cfg.uid, nobody_uid);
    assert_string_equal(cfg.user_name, "nobody");
    assert_int_equal(cfg.gid, nobody_gid);
    config_free(&cfg);
    free(path);

    /* group overrides the primary group, before or after user. */
    path = load_ok(&cfg, "[server]\nuser = nobody\ngroup = root\n");
    assert_string_equal(cfg.group, "root");
    assert_int_equal(cfg.group_line, 3);
    assert_int_equal(cfg.gid, 0);
    config_free(&cfg);
    free(path);
    path = load_ok(&cfg, "[server]\ngroup = 4242\nuser = nobody\n");
    assert_int_equal(cfg.gid, 4242);
    assert_int_equal(cfg.group_line, 2);
    config_free(&cfg);
    free(path);

    /* A uid without an entry is allowed with an explicit group. */
    path = load_ok(&cfg, "[server]\nuser = 3999999999\ngroup = 3999999998\n");
    assert_int_equal(cfg.uid, 3999999999u);
    assert_int_equal(cfg.gid, 3999999998u);
    assert_null(cfg.user_name);
    config_free(&cfg);
    free(path);
}

static void test_tls_errors(void **state)
{
    (void)state;
    load_err("[server]\ntls_cert = a.pem\n", 2, "listener default: tls_cert needs tls_key");
    load_err("[server]\ntls_cert = a.pem\ntls_key =\n", 3, "tls_cert needs tls_key");
    load_err("[server]\n\ntls_key = a.key\n", 3, "tls_key is set but the listener has no tls_cert");
    load_err("[server]\ntls_cert = a\ntls_key = b\ntls_verify_client = on\n", 4,
             "tls_verify_client needs tls_ca");
    load_err("[server]\ntls_cert = a\ntls_key = b\ntls_ca = c\n", 4, "tls_verify_client is off");
    load_err("[server]\ntls_verify_client = yes\n", 2, "'yes' is not one of off, optional, on");
    load_err("[server]\ntls_min_version = 1.0\n", 2, "tls_min_version: '1.0' is not 1.2 or 1.3");
    load_err("[server]\ntls_ciphers =\n", 2, "tls_ciphers: empty value");
    load_err("[server]\ntls_handshake_timeout = 0\n", 2, "tls_handshake_timeout: '0'");
    load_err("[server]\ntls_ca = a\ntls_ca = b\n", 3,
             "duplicate key 'tls_ca' in [server] (first set at line 2)");
    load_err("[listener x]\nbind = :1\ntls_key = k\ntls_key = k\n", 4,
             "duplicate key 'tls_key' in [listener x]");
    /* A listener's own TLS key without a certificate is an error; [server]
     * defaults a plain listener does not use are not. */
    config cfg;
    char *path = load_ok(&cfg, "[server]\ntls_cert = a\ntls_key = b\ntls_ca = ca\n"
                               "tls_verify_client = on\n[listener x]\nbind = :1\ntls_cert =\n");
    config_free(&cfg);
    free(path);
    load_err("[server]\ntls_ca = ca\ntls_verify_client = on\n[listener x]\nbind = :1\n"
             "tls_min_version = 1.3\n", 6, "listener x: tls_min_version is set but the listener "
                                          "has no tls_cert");
    load_err("[listener x]\nbind = :1\ntls_handshake_timeout = 5\n", 3,
             "unknown key 'tls_handshake_timeout' in [listener x]");
}

static void test_user_group_errors(void **state)
{
    (void)state;
    load_err("[server]\nbind = :1\nuser = no_such_user_x\n", 3,
             "user: unknown user 'no_such_user_x'");
    load_err("[server]\nuser = nobody\n\ngroup = no_such_group_x\n", 4,
             "group: unknown group 'no_such_group_x'");
    load_err("[server]\nuser = root\n", 2, "user: 'root' is root (uid 0)");
    load_err("[server]\nuser = 0\n", 2, "--allow-root");
    load_err("[server]\nuser =\n", 2, "user: empty value");
    load_err("[server]\nuser = nobody\ngroup =\n", 3, "group: empty value");
    load_err("[server]\nuser = -1\n", 2, "unknown user '-1'");
    load_err("[server]\nuser = 4294967295\n", 2, "unknown user '4294967295'");
    load_err("[server]\nbind = :1\ngroup = nogroup\n", 3, "group without user");
    load_err("[server]\nuser = 3999999999\n", 2,
             "uid 3999999999 has no entry in the user database");
    load_err("[server]\nuser = nobody\nuser = nobody\n", 3,
             "duplicate key 'user' in [server] (first set at line 2)");
    load_err("[listener a]\nbind = :1\nuser = nobody\n", 3, "unknown key 'user'");
}

static void test_unknown_section_with_listeners(void **state)
{
    (void)state;
    config cfg;
    char *path = load_ok(&cfg,
                         "[server]\n[listener a]\nbind = :1\n[listener b]\nbind = :2\nplugin = raw\n"
                         "[echo]\n[raw]\n\n[resp]\nmax_args = 3\n");
    static const char *const names[] = {"echo", "raw"};
    char err[512] = "";
    assert_int_equal(config_check_sections(&cfg, names, 2, err, sizeof err), -1);
    check_err_at(err, path, 10, "unknown section [resp]");
    assert_contains(err, "[listener NAME]");
    assert_contains(err, "[echo] or [raw]");
    config_free(&cfg);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_server_key),
        cmocka_unit_test(test_limits_accepted),
        cmocka_unit_test(test_threads_zero_means_cpus),
        cmocka_unit_test(test_max_message_suffixes),
        cmocka_unit_test(test_plugin_dir_relative),
        cmocka_unit_test(test_relative_ini_path),
        cmocka_unit_test(test_plugin_as_path),
        cmocka_unit_test(test_plugin_section),
        cmocka_unit_test(test_quoted_server_values),
        cmocka_unit_test(test_indented_and_bom),
        cmocka_unit_test(test_long_lines_accepted),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_key_outside_section),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_unix_bind_relative),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_check_sections),
        cmocka_unit_test(test_reload_after_error),
        cmocka_unit_test(test_implicit_listener),
        cmocka_unit_test(test_listener_sections),
        cmocka_unit_test(test_listener_errors),
        cmocka_unit_test(test_unknown_section_with_listeners),
        cmocka_unit_test(test_access_keys),
        cmocka_unit_test(test_access_errors),
        cmocka_unit_test(test_proxy_keys),
        cmocka_unit_test(test_proxy_errors),
        cmocka_unit_test(test_io_key),
        cmocka_unit_test(test_tls_keys),
        cmocka_unit_test(test_tls_errors),
        cmocka_unit_test(test_user_group_keys),
        cmocka_unit_test(test_user_group_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

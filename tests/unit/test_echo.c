/* test_echo.c - unit tests of the echo plugin's hooks, driven through a fake host table. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* The plugin itself, for its statics (echo_plugin, echo_init, ...). */
#include "../../plugins/echo.c"

#include "buf.h"

#define CRLF2 "\r\n\r\n"
#define MAX_EVENTS 64

#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        if (strstr((hay), (needle)) == NULL)                                   \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));           \
    } while (0)

/* The fake connection: what the plugin did to it, in order. */
struct es_conn {
    buf out;                 /* everything written */
    size_t writes;           /* host->write calls */
    size_t closes;           /* host->close calls */
    size_t logs, peers, instances;
    char events[MAX_EVENTS]; /* 'w' write, 'c' close */
    size_t nevents;
    int fail_write;          /* make host->write refuse */
    void *instance;          /* what host->instance returns */
};

static void record(es_conn *c, char ev)
{
    if (c->nevents < MAX_EVENTS)
        c->events[c->nevents++] = ev;
}

static int fake_write(es_conn *c, const void *data, size_t len)
{
    c->writes++;
    if (c->fail_write)
        return -1;
    record(c, 'w');
    return buf_append(&c->out, data, len);
}

static void fake_close(es_conn *c)
{
    c->closes++;
    record(c, 'c');
}

static void fake_log(const es_conn *c, enum es_log_level level, const char *fmt, ...)
    ES_PRINTF(3, 4);

static void fake_log(const es_conn *c, enum es_log_level level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    (void)level;
    if (c != NULL)
        ((es_conn *)c)->logs++;
}

static const char *fake_peer(const es_conn *c)
{
    ((es_conn *)c)->peers++;
    return "127.0.0.1:5000";
}

static void *fake_instance(const es_conn *c)
{
    ((es_conn *)c)->instances++;
    return c->instance;
}

static const es_host fake_host = {
    .size = sizeof(es_host),
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .write = fake_write,
    .close = fake_close,
    .log = fake_log,
    .peer = fake_peer,
    .instance = fake_instance,
};

/* One connection as the server holds it: the fake conn, the plugin's
 * zeroed state, and the unconsumed input. */
typedef struct client {
    es_conn conn;
    void *state;
    buf in;
    size_t messages;
} client;

static void client_open(client *cl, void *instance)
{
    memset(cl, 0, sizeof *cl);
    cl->conn.instance = instance;
    cl->state = calloc(1, echo_plugin.conn_size);
    assert_non_null(cl->state);
    assert_int_equal(echo_plugin.open(&cl->conn, instance, cl->state), 0);
}

static void client_close(client *cl)
{
    if (echo_plugin.close != NULL)
        echo_plugin.close(&cl->conn, cl->state);
    free(cl->state);
    buf_free(&cl->in);
    buf_free(&cl->conn.out);
}

/* The server's input path: append the bytes, then hand each complete
 * message to response and drop it, until more input is needed or the
 * connection is closing. */
static void client_feed(client *cl, const void *data, size_t len)
{
    assert_int_equal(buf_append(&cl->in, data, len), 0);
    while (cl->conn.closes == 0 && cl->in.len > 0) {
        ssize_t r = echo_plugin.data_received(&cl->conn, cl->state, buf_head(&cl->in),
                                              cl->in.len);
        assert_true(r >= 0);
        if (r == 0)
            break;
        assert_true((size_t)r <= cl->in.len);
        assert_int_equal(echo_plugin.response(&cl->conn, cl->state, buf_head(&cl->in),
                                              (size_t)r), 0);
        cl->messages++;
        buf_consume(&cl->in, (size_t)r);
    }
}

/* init with the given items, which must succeed. */
static void *init_ok(const es_config_item *items, size_t count)
{
    es_config cfg = {.items = items, .count = count};
    es_error err = {.item = -1, .msg = ""};
    void *instance = NULL;
    if (echo_plugin.init(&fake_host, &cfg, &instance, &err) != 0)
        fail_msg("init failed: item %d: %s", err.item, err.msg);
    assert_non_null(instance);
    return instance;
}

/* init with the given items, which must fail at item with a message
 * containing needle, and leave *instance alone. */
static void init_err(const es_config_item *items, size_t count, int item, const char *needle)
{
    es_config cfg = {.items = items, .count = count};
    es_error err = {.item = -1, .msg = ""};
    void *instance = (void *)&cfg;
    assert_int_equal(echo_plugin.init(&fake_host, &cfg, &instance, &err), -1);
    assert_ptr_equal(instance, (void *)&cfg);
    assert_int_equal(err.item, item);
    assert_contains(err.msg, needle);
    assert_non_null(memchr(err.msg, '\0', sizeof err.msg));
}

static void test_descriptor(void **state)
{
    (void)state;
    const es_plugin *d = ES_PLUGIN_ENTRY();
    assert_ptr_equal(d, &echo_plugin);
    assert_int_equal(d->magic, ES_PLUGIN_MAGIC);
    assert_int_equal(d->magic, 0x31505345u);
    assert_int_equal(d->abi_major, ES_PLUGIN_ABI_MAJOR);
    assert_int_equal(d->abi_major, 1);
    assert_int_equal(d->abi_minor, ES_PLUGIN_ABI_MINOR);
    assert_int_equal(d->size, sizeof(es_plugin));
    assert_true(d->size >= ES_PLUGIN_MIN_SIZE);
    assert_string_equal(d->name, "echo");
    assert_non_null(d->version);
    assert_string_equal(d->version, PACKAGE_VERSION);
    assert_int_equal(d->conn_size, sizeof(echo_conn));
    assert_true(d->conn_size > 0);
    assert_non_null(d->init);
    assert_non_null(d->fini);
    assert_non_null(d->open);
    assert_non_null(d->data_received);
    assert_non_null(d->response);
}

static void test_init_defaults(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    const echo_instance *inst = instance;
    assert_ptr_equal(inst->host, &fake_host);
    assert_int_equal(inst->sep_len, 4);
    assert_memory_equal(inst->sep, CRLF2, 4);

    client cl;
    client_open(&cl, instance);
    client_feed(&cl, "hi\n\n", 4);
    assert_int_equal(cl.conn.writes, 0);
    client_feed(&cl, CRLF2, 4);
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.out.len, 8);
    assert_memory_equal(buf_head(&cl.conn.out), "hi\n\n" CRLF2, 8);
    client_close(&cl);
    echo_plugin.fini(instance);
}

static void test_init_separator(void **state)
{
    (void)state;
    const es_config_item items[] = {{.key = "separator", .value = "\\n", .line = 7}};
    void *instance = init_ok(items, 1);
    const echo_instance *inst = instance;
    assert_int_equal(inst->sep_len, 1);
    assert_int_equal(inst->sep[0], '\n');

    client cl;
    client_open(&cl, instance);
    client_feed(&cl, "one\ntwo\r\nthr", 12);
    assert_int_equal(cl.messages, 2);
    assert_int_equal(cl.conn.out.len, 9);
    assert_memory_equal(buf_head(&cl.conn.out), "one\ntwo\r\n", 9);
    assert_int_equal(cl.in.len, 3);
    client_close(&cl);
    echo_plugin.fini(instance);
}

static void test_init_long_separator(void **state)
{
    (void)state;
    char value[FRAME_SEP_MAX * 4 + 8];
    /* Exactly FRAME_SEP_MAX bytes, written as \xHH escapes. */
    for (size_t i = 0; i < FRAME_SEP_MAX; i++)
        snprintf(value + 4 * i, 5, "\\x%02x", (unsigned)(0x40 + i % 16));
    es_config_item item = {.key = "separator", .value = value, .line = 2};
    void *instance = init_ok(&item, 1);
    const echo_instance *inst = instance;
    assert_int_equal(inst->sep_len, FRAME_SEP_MAX);
    assert_int_equal(inst->sep[FRAME_SEP_MAX - 1], 0x4f);
    echo_plugin.fini(instance);

    /* One byte more is refused. */
    strcat(value, "x");
    init_err(&item, 1, 0, "separator");
    init_err(&item, 1, 0, "too long");
}

static void test_init_unknown_key(void **state)
{
    (void)state;
    const es_config_item items[] = {
        {.key = "separator", .value = "\\n", .line = 3},
        {.key = "sparator", .value = "x", .line = 4},
    };
    init_err(items, 2, 1, "unknown key 'sparator'");
    init_err(items + 1, 1, 0, "sparator");
}

static void test_init_bad_escape(void **state)
{
    (void)state;
    const es_config_item items[] = {{.key = "separator", .value = "\\r\\q", .line = 5}};
    init_err(items, 1, 0, "separator");
    init_err(items, 1, 0, "bad escape '\\q'");
    const es_config_item trailing[] = {{.key = "separator", .value = "ab\\", .line = 5}};
    init_err(trailing, 1, 0, "at end");
}

static void test_init_empty_separator(void **state)
{
    (void)state;
    const es_config_item items[] = {{.key = "separator", .value = "", .line = 9}};
    init_err(items, 1, 0, "must not be empty");
}

/* Feeds msg to a fresh connection in the pieces given by cuts and checks
 * the reply is msg, written once, with no close. */
static void echo_in_pieces(void *instance, const char *msg, size_t len, const size_t *cuts,
                           size_t ncuts)
{
    client cl;
    client_open(&cl, instance);
    size_t pos = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        client_feed(&cl, msg + pos, end - pos);
        if (k < ncuts && cl.conn.writes != 0)
            fail_msg("reply after %zu of %zu bytes", end, len);
        pos = end;
    }
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.out.len, len);
    assert_memory_equal(buf_head(&cl.conn.out), msg, len);
    assert_int_equal(cl.conn.closes, 0);
    assert_int_equal(cl.in.len, 0);
    client_close(&cl);
}

static void every_split(void *instance, const char *msg, size_t len)
{
    echo_in_pieces(instance, msg, len, NULL, 0);
    for (size_t i = 1; i < len; i++) {
        size_t c1[1] = {i};
        echo_in_pieces(instance, msg, len, c1, 1);
        for (size_t j = i + 1; j < len; j++) {
            size_t c2[2] = {i, j};
            echo_in_pieces(instance, msg, len, c2, 2);
        }
    }
}

static void test_every_split(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    const char *m1 = "Hello!" CRLF2;
    every_split(instance, m1, strlen(m1));
    const char *m2 = "GET / HTTP/1.0\r\nHost: x\r\n\r" CRLF2;
    every_split(instance, m2, strlen(m2));
    every_split(instance, CRLF2, 4);
    echo_plugin.fini(instance);
}

static void test_pipelined(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    const char *all = "a" CRLF2 "bb\r\n\r" CRLF2 CRLF2 "QUITS" CRLF2 "tail\r\n";
    size_t len = strlen(all);
    /* All at once, and cut at every place into two pieces. */
    for (size_t cut = 0; cut <= len; cut++) {
        client cl;
        client_open(&cl, instance);
        client_feed(&cl, all, cut);
        client_feed(&cl, all + cut, len - cut);
        assert_int_equal(cl.messages, 4);
        assert_int_equal(cl.conn.writes, 4);
        assert_int_equal(cl.conn.out.len, len - 6);
        assert_memory_equal(buf_head(&cl.conn.out), all, len - 6);
        assert_int_equal(cl.in.len, 6);
        assert_memory_equal(buf_head(&cl.in), "tail\r\n", 6);
        assert_int_equal(cl.conn.closes, 0);
        client_close(&cl);
    }
    echo_plugin.fini(instance);
}

static void test_response_writes_message(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    client cl;
    client_open(&cl, instance);
    /* response on a frame writes exactly that frame, once. */
    const char *m = "xyz" CRLF2;
    assert_int_equal(echo_plugin.data_received(&cl.conn, cl.state, (const uint8_t *)m, 7), 7);
    assert_int_equal(echo_plugin.response(&cl.conn, cl.state, (const uint8_t *)m, 7), 0);
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.out.len, 7);
    assert_memory_equal(buf_head(&cl.conn.out), m, 7);
    assert_int_equal(cl.conn.nevents, 1);
    client_close(&cl);
    echo_plugin.fini(instance);
}

static void test_write_failure(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    client cl;
    client_open(&cl, instance);
    cl.conn.fail_write = 1;
    const char *m = "QUIT" CRLF2;
    assert_int_equal(echo_plugin.data_received(&cl.conn, cl.state, (const uint8_t *)m, 8), 8);
    assert_int_equal(echo_plugin.response(&cl.conn, cl.state, (const uint8_t *)m, 8), -1);
    assert_int_equal(cl.conn.writes, 1);
    client_close(&cl);
    echo_plugin.fini(instance);
}

/* Sends input to a fresh connection and returns the number of closes,
 * checking the reply is want. */
static size_t closes_after(void *instance, const char *input, size_t len, const char *want,
                           size_t want_len)
{
    client cl;
    client_open(&cl, instance);
    client_feed(&cl, input, len);
    assert_int_equal(cl.conn.out.len, want_len);
    assert_memory_equal(buf_head(&cl.conn.out), want, want_len);
    size_t closes = cl.conn.closes;
    if (closes != 0) {
        /* The reply is queued before the close, which comes last. */
        assert_true(cl.conn.nevents >= 2);
        assert_memory_equal(cl.conn.events + cl.conn.nevents - 2, "wc", 2);
        assert_null(memchr(cl.conn.events, 'c', cl.conn.nevents - 1));
    }
    client_close(&cl);
    return closes;
}

static void test_quit(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    assert_int_equal(closes_after(instance, "QUIT" CRLF2, 8, "QUIT" CRLF2, 8), 1);
    /* Messages after QUIT are not answered. */
    assert_int_equal(closes_after(instance, "QUIT" CRLF2 "more" CRLF2, 16, "QUIT" CRLF2, 8), 1);
    assert_int_equal(closes_after(instance, "a" CRLF2 "QUIT" CRLF2, 13, "a" CRLF2 "QUIT" CRLF2,
                                  13), 1);
    echo_plugin.fini(instance);
}

static void test_not_quit(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    static const char *const bodies[] = {"QUITX", "quit", "Quit", "QUI", "XQUIT", " QUIT",
                                         "QUIT ", "QUIT\r", "\nQUIT", ""};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char m[32];
        int n = snprintf(m, sizeof m, "%s" CRLF2, bodies[i]);
        if (closes_after(instance, m, (size_t)n, m, (size_t)n) != 0)
            fail_msg("'%s' closed the connection", bodies[i]);
    }
    echo_plugin.fini(instance);
}

static void test_quit_custom_separator(void **state)
{
    (void)state;
    const es_config_item items[] = {{.key = "separator", .value = "\\0", .line = 2}};
    void *instance = init_ok(items, 1);
    assert_int_equal(closes_after(instance, "QUIT\0", 5, "QUIT\0", 5), 1);
    assert_int_equal(closes_after(instance, "QUIT\r\n\r\n\0", 9, "QUIT\r\n\r\n\0", 9), 0);
    echo_plugin.fini(instance);
}

static void test_binary_body(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    uint8_t m[300];
    for (size_t i = 0; i < 296; i++)
        m[i] = (uint8_t)(i * 37);
    m[0] = 0;
    memcpy(m + 100, "\r\n\r\0", 4);
    memcpy(m + 200, "\r\n\r", 3);
    memcpy(m + 296, CRLF2, 4);
    /* No separator inside by construction. */
    assert_null(memmem(m, 299, CRLF2, 4));
    static const uint8_t small[] = {0, '\r', '\n', '\r', 0, '\r', '\n', 0xff, '\r', '\r',
                                    '\n', '\r', '\n'};
    every_split(instance, (const char *)small, sizeof small);
    client cl;
    client_open(&cl, instance);
    for (size_t i = 0; i < sizeof m; i += 7)
        client_feed(&cl, m + i, sizeof m - i < 7 ? sizeof m - i : 7);
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.out.len, sizeof m);
    assert_memory_equal(buf_head(&cl.conn.out), m, sizeof m);
    client_close(&cl);
    echo_plugin.fini(instance);
}

static void test_state_isolation(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    client a, b;
    client_open(&a, instance);
    client_open(&b, instance);
    /* Interleaved partial input: each connection keeps its own scan. */
    client_feed(&a, "aaaaaaaa\r\n", 10);
    client_feed(&b, "b\r", 2);
    client_feed(&a, "\r", 1);
    client_feed(&b, "\n\r\n", 3);
    assert_int_equal(a.conn.writes, 0);
    assert_int_equal(b.conn.writes, 1);
    assert_memory_equal(buf_head(&b.conn.out), "b" CRLF2, 5);
    client_feed(&b, "QUIT" CRLF2, 8);
    assert_int_equal(b.conn.closes, 1);
    client_feed(&a, "\n", 1);
    assert_int_equal(a.conn.writes, 1);
    assert_int_equal(a.conn.closes, 0);
    assert_memory_equal(buf_head(&a.conn.out), "aaaaaaaa" CRLF2, 12);
    client_close(&a);
    client_close(&b);

    /* Two instances with different separators share nothing. */
    const es_config_item items[] = {{.key = "separator", .value = "|", .line = 2}};
    void *other = init_ok(items, 1);
    client_open(&a, instance);
    client_open(&b, other);
    client_feed(&a, "x|y" CRLF2, 7);
    client_feed(&b, "x|y" CRLF2, 7);
    assert_int_equal(a.messages, 1);
    assert_int_equal(a.conn.out.len, 7);
    assert_int_equal(b.messages, 1);
    assert_int_equal(b.conn.out.len, 2);
    assert_memory_equal(buf_head(&b.conn.out), "x|", 2);
    client_close(&a);
    client_close(&b);
    echo_plugin.fini(other);
    echo_plugin.fini(instance);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init_defaults),
        cmocka_unit_test(test_init_separator),
        cmocka_unit_test(test_init_long_separator),
        cmocka_unit_test(test_init_unknown_key),
        cmocka_unit_test(test_init_bad_escape),
        cmocka_unit_test(test_init_empty_separator),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_response_writes_message),
        cmocka_unit_test(test_write_failure),
        cmocka_unit_test(test_quit),
        cmocka_unit_test(test_not_quit),
        cmocka_unit_test(test_quit_custom_separator),
        cmocka_unit_test(test_binary_body),
        cmocka_unit_test(test_state_isolation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

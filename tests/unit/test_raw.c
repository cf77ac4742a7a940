/* test_raw.c - unit tests of the raw (RFC 862) plugin's hooks, driven through a fake host table. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* The plugin itself, for its statics (raw_plugin, raw_init, ...). */
#include "../../plugins/raw.c"

#include <string.h>

#include "buf.h"

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
    const void *last_data;   /* the pointer given to the last host->write */
    size_t last_len;
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
    c->last_data = data;
    c->last_len = len;
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
    (void)c;
    (void)level;
}

static const char *fake_peer(const es_conn *c)
{
    (void)c;
    return "127.0.0.1:5000";
}

static void *fake_instance(const es_conn *c)
{
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
    cl->state = calloc(1, raw_plugin.conn_size);
    assert_non_null(cl->state);
    assert_int_equal(raw_plugin.open(&cl->conn, instance, cl->state), 0);
}

static void client_close(client *cl)
{
    if (raw_plugin.close != NULL)
        raw_plugin.close(&cl->conn, cl->state);
    free(cl->state);
    buf_free(&cl->in);
    buf_free(&cl->conn.out);
}

/* The server's input path: append the bytes, then hand each complete
 * message to response and drop it, until more input is needed. */
static void client_feed(client *cl, const void *data, size_t len)
{
    assert_int_equal(buf_append(&cl->in, data, len), 0);
    while (cl->conn.closes == 0 && cl->in.len > 0) {
        ssize_t r = raw_plugin.data_received(&cl->conn, cl->state, buf_head(&cl->in),
                                             cl->in.len);
        assert_true(r >= 0);
        if (r == 0)
            break;
        assert_true((size_t)r <= cl->in.len);
        assert_int_equal(raw_plugin.response(&cl->conn, cl->state, buf_head(&cl->in),
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
    if (raw_plugin.init(&fake_host, &cfg, &instance, &err) != 0)
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
    assert_int_equal(raw_plugin.init(&fake_host, &cfg, &instance, &err), -1);
    assert_ptr_equal(instance, (void *)&cfg);
    assert_int_equal(err.item, item);
    assert_contains(err.msg, needle);
    assert_non_null(memchr(err.msg, '\0', sizeof err.msg));
}

static void test_descriptor(void **state)
{
    (void)state;
    const es_plugin *d = ES_PLUGIN_ENTRY();
    assert_ptr_equal(d, &raw_plugin);
    assert_int_equal(d->magic, ES_PLUGIN_MAGIC);
    assert_int_equal(d->abi_major, ES_PLUGIN_ABI_MAJOR);
    assert_int_equal(d->abi_minor, ES_PLUGIN_ABI_MINOR);
    assert_int_equal(d->size, sizeof(es_plugin));
    assert_true(d->size >= ES_PLUGIN_MIN_SIZE);
    assert_string_equal(d->name, "raw");
    assert_string_equal(d->version, PACKAGE_VERSION);
    assert_int_equal(d->conn_size, sizeof(raw_conn));
    assert_non_null(d->init);
    assert_non_null(d->fini);
    assert_non_null(d->open);
    assert_non_null(d->data_received);
    assert_non_null(d->response);
}

static void test_init_empty(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    const raw_instance *inst = instance;
    assert_ptr_equal(inst->host, &fake_host);
    raw_plugin.fini(instance);
}

static void test_init_unknown_key(void **state)
{
    (void)state;
    const es_config_item items[] = {
        {.key = "separator", .value = "\\n", .line = 3},
        {.key = "max_bulk", .value = "1", .line = 4},
    };
    init_err(items, 2, 0, "unknown key 'separator' in [raw]");
    init_err(items + 1, 1, 0, "unknown key 'max_bulk'");
    init_err(items + 1, 1, 0, "no options");
}

/* Every byte comes back as it came: each feed is one message, answered at
 * once with exactly those bytes. */
static void test_bytes_as_they_come(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    client cl;
    client_open(&cl, instance);
    static const char *const pieces[] = {"h", "e", "llo", "\r", "\n", "\r\n\r\n", "QUIT\r\n",
                                         "QUIT\r\n\r\n", "x"};
    size_t total = 0;
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        size_t n = strlen(pieces[i]);
        client_feed(&cl, pieces[i], n);
        total += n;
        assert_int_equal(cl.messages, i + 1);
        assert_int_equal(cl.conn.writes, i + 1);
        assert_int_equal(cl.conn.out.len, total);
        assert_memory_equal(buf_head(&cl.conn.out) + total - n, pieces[i], n);
        assert_int_equal(cl.in.len, 0);
    }
    /* No QUIT in RFC 862: nothing ever closes. */
    assert_int_equal(cl.conn.closes, 0);
    client_close(&cl);
    raw_plugin.fini(instance);
}

/* data_received takes all that is there, whatever it holds. */
static void test_frame_is_everything(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    client cl;
    client_open(&cl, instance);
    uint8_t data[1024];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    for (size_t len = 1; len <= sizeof data; len += len < 16 ? 1 : 97)
        assert_int_equal(raw_plugin.data_received(&cl.conn, cl.state, data, len), (ssize_t)len);
    assert_int_equal(cl.conn.writes, 0);
    client_close(&cl);
    raw_plugin.fini(instance);
}

/* The reply is the input itself: the pointer handed to host->write is the
 * message's, so the server can send it without a copy. */
static void test_reply_is_the_input(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    client cl;
    client_open(&cl, instance);
    static const uint8_t msg[] = {0, 1, '\r', '\n', 0xff, 0};
    assert_int_equal(raw_plugin.response(&cl.conn, cl.state, msg, sizeof msg), 0);
    assert_ptr_equal(cl.conn.last_data, msg);
    assert_int_equal(cl.conn.last_len, sizeof msg);
    assert_int_equal(cl.conn.nevents, 1);
    client_close(&cl);
    raw_plugin.fini(instance);
}

/* 1 MiB of every byte value, in pieces of irregular sizes, comes back
 * byte for byte. */
static void test_binary_mebibyte(void **state)
{
    (void)state;
    enum { SIZE = 1 << 20 };
    void *instance = init_ok(NULL, 0);
    uint8_t *data = malloc(SIZE);
    assert_non_null(data);
    uint32_t x = 12345;
    for (size_t i = 0; i < SIZE; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    client cl;
    client_open(&cl, instance);
    size_t pos = 0, step = 1;
    while (pos < SIZE) {
        size_t n = SIZE - pos < step ? SIZE - pos : step;
        client_feed(&cl, data + pos, n);
        pos += n;
        step = step * 3 % 65521 + 1;
    }
    assert_int_equal(cl.conn.out.len, SIZE);
    assert_memory_equal(buf_head(&cl.conn.out), data, SIZE);
    assert_int_equal(cl.conn.writes, cl.messages);
    assert_int_equal(cl.conn.closes, 0);
    client_close(&cl);
    free(data);
    raw_plugin.fini(instance);
}

static void test_write_failure(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    client cl;
    client_open(&cl, instance);
    cl.conn.fail_write = 1;
    assert_int_equal(raw_plugin.response(&cl.conn, cl.state, (const uint8_t *)"x", 1), -1);
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.closes, 0);
    client_close(&cl);
    raw_plugin.fini(instance);
}

static void test_connections_apart(void **state)
{
    (void)state;
    void *instance = init_ok(NULL, 0);
    client a, b;
    client_open(&a, instance);
    client_open(&b, instance);
    client_feed(&a, "aa", 2);
    client_feed(&b, "b", 1);
    client_feed(&a, "a", 1);
    assert_int_equal(a.conn.out.len, 3);
    assert_memory_equal(buf_head(&a.conn.out), "aaa", 3);
    assert_int_equal(b.conn.out.len, 1);
    assert_memory_equal(buf_head(&b.conn.out), "b", 1);
    client_close(&a);
    client_close(&b);
    raw_plugin.fini(instance);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init_empty),
        cmocka_unit_test(test_init_unknown_key),
        cmocka_unit_test(test_bytes_as_they_come),
        cmocka_unit_test(test_frame_is_everything),
        cmocka_unit_test(test_reply_is_the_input),
        cmocka_unit_test(test_binary_mebibyte),
        cmocka_unit_test(test_write_failure),
        cmocka_unit_test(test_connections_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

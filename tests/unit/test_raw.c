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
#include "fake_host.h"

static void test_descriptor(void **state)
{
    (void)state;
    const es_plugin *d = ES_PLUGIN_ENTRY();
    assert_ptr_equal(d, &raw_plugin);
    fh_check_descriptor(d, "raw", sizeof(raw_conn));
}

static void test_init_empty(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&raw_plugin, NULL, 0);
    const raw_instance *inst = instance;
    assert_ptr_equal(inst->host, &fh_host);
    raw_plugin.fini(instance);
}

static void test_init_unknown_key(void **state)
{
    (void)state;
    const es_config_item items[] = {
        {.key = "separator", .value = "\\n", .line = 3},
        {.key = "max_bulk", .value = "1", .line = 4},
    };
    fh_init_err(&raw_plugin, items, 2, 0, "unknown key 'separator' in [raw]");
    fh_init_err(&raw_plugin, items + 1, 1, 0, "unknown key 'max_bulk'");
    fh_init_err(&raw_plugin, items + 1, 1, 0, "no options");
}

/* Every byte comes back as it came: each feed is one message, answered at
 * once with exactly those bytes. */
static void test_bytes_as_they_come(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&raw_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &raw_plugin, instance);
    static const char *const pieces[] = {"h", "e", "llo", "\r", "\n", "\r\n\r\n", "QUIT\r\n",
                                         "QUIT\r\n\r\n", "x"};
    size_t total = 0;
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        size_t n = strlen(pieces[i]);
        fh_client_feed(&cl, pieces[i], n);
        total += n;
        assert_int_equal(cl.messages, i + 1);
        assert_int_equal(cl.conn.writes, i + 1);
        assert_int_equal(cl.conn.out.len, total);
        assert_memory_equal(buf_head(&cl.conn.out) + total - n, pieces[i], n);
        assert_int_equal(cl.in.len, 0);
    }
    /* No QUIT in RFC 862: nothing ever closes. */
    assert_int_equal(cl.conn.closes, 0);
    fh_client_close(&cl);
    raw_plugin.fini(instance);
}

/* data_received takes all that is there, whatever it holds. */
static void test_frame_is_everything(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&raw_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &raw_plugin, instance);
    uint8_t data[1024];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    for (size_t len = 1; len <= sizeof data; len += len < 16 ? 1 : 97)
        assert_int_equal(raw_plugin.data_received(&cl.conn, cl.state, data, len), (ssize_t)len);
    assert_int_equal(cl.conn.writes, 0);
    fh_client_close(&cl);
    raw_plugin.fini(instance);
}

/* The reply is the input itself: the pointer handed to host->write is the
 * message's, so the server can send it without a copy. */
static void test_reply_is_the_input(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&raw_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &raw_plugin, instance);
    static const uint8_t msg[] = {0, 1, '\r', '\n', 0xff, 0};
    assert_int_equal(raw_plugin.response(&cl.conn, cl.state, msg, sizeof msg), 0);
    assert_ptr_equal(cl.conn.last_data, msg);
    assert_int_equal(cl.conn.last_len, sizeof msg);
    assert_int_equal(cl.conn.nevents, 1);
    fh_client_close(&cl);
    raw_plugin.fini(instance);
}

/* 1 MiB of every byte value, in pieces of irregular sizes, comes back
 * byte for byte. */
static void test_binary_mebibyte(void **state)
{
    (void)state;
    enum { SIZE = 1 << 20 };
    void *instance = fh_init_ok(&raw_plugin, NULL, 0);
    uint8_t *data = malloc(SIZE);
    assert_non_null(data);
    uint32_t x = 12345;
    for (size_t i = 0; i < SIZE; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    fh_client cl;
    fh_client_open(&cl, &raw_plugin, instance);
    size_t pos = 0, step = 1;
    while (pos < SIZE) {
        size_t n = SIZE - pos < step ? SIZE - pos : step;
        fh_client_feed(&cl, data + pos, n);
        pos += n;
        step = step * 3 % 65521 + 1;
    }
    assert_int_equal(cl.conn.out.len, SIZE);
    assert_memory_equal(buf_head(&cl.conn.out), data, SIZE);
    assert_int_equal(cl.conn.writes, cl.messages);
    assert_int_equal(cl.conn.closes, 0);
    fh_client_close(&cl);
    free(data);
    raw_plugin.fini(instance);
}

static void test_write_failure(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&raw_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &raw_plugin, instance);
    cl.conn.fail_write = 1;
    assert_int_equal(raw_plugin.response(&cl.conn, cl.state, (const uint8_t *)"x", 1), -1);
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.closes, 0);
    fh_client_close(&cl);
    raw_plugin.fini(instance);
}

static void test_connections_apart(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&raw_plugin, NULL, 0);
    fh_client a, b;
    fh_client_open(&a, &raw_plugin, instance);
    fh_client_open(&b, &raw_plugin, instance);
    fh_client_feed(&a, "aa", 2);
    fh_client_feed(&b, "b", 1);
    fh_client_feed(&a, "a", 1);
    assert_int_equal(a.conn.out.len, 3);
    assert_memory_equal(buf_head(&a.conn.out), "aaa", 3);
    assert_int_equal(b.conn.out.len, 1);
    assert_memory_equal(buf_head(&b.conn.out), "b", 1);
    fh_client_close(&a);
    fh_client_close(&b);
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

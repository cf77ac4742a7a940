/* fake_host.c - plugin unit test helpers: a recording es_host and the server's input path. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_host.h"

static void record(es_conn *c, char ev)
{
    if (c->nevents < FH_MAX_EVENTS)
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
    char line[sizeof c->last_log];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    (void)level;
    if (c == NULL)
        return;
    es_conn *mc = (es_conn *)c;
    memcpy(mc->last_log, line, sizeof line);
    mc->logs++;
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

const es_host fh_host = {
    .size = sizeof(es_host),
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .write = fake_write,
    .close = fake_close,
    .log = fake_log,
    .peer = fake_peer,
    .instance = fake_instance,
};

void fh_client_open(fh_client *cl, const es_plugin *plugin, void *instance)
{
    memset(cl, 0, sizeof *cl);
    cl->plugin = plugin;
    cl->conn.instance = instance;
    cl->state = calloc(1, plugin->conn_size);
    assert_non_null(cl->state);
    assert_int_equal(plugin->open(&cl->conn, instance, cl->state), 0);
}

void fh_client_close(fh_client *cl)
{
    if (cl->plugin->close != NULL)
        cl->plugin->close(&cl->conn, cl->state);
    free(cl->state);
    buf_free(&cl->in);
    buf_free(&cl->conn.out);
}

void fh_client_feed(fh_client *cl, const void *data, size_t len)
{
    const es_plugin *p = cl->plugin;
    if (cl->conn.closes != 0)
        return;
    assert_int_equal(buf_append(&cl->in, data, len), 0);
    while (cl->conn.closes == 0 && cl->in.len > 0) {
        ssize_t r = p->data_received(&cl->conn, cl->state, buf_head(&cl->in), cl->in.len);
        assert_true(r >= 0);
        if (r == 0) {
            /* An unfinished message: its start may go out now. */
            if (p->partial == NULL || cl->in.len < ES_PARTIAL_MIN)
                break;
            ssize_t k = p->partial(&cl->conn, cl->state, buf_head(&cl->in), cl->in.len);
            assert_true(k >= 0);
            assert_true((size_t)k <= cl->in.len);
            cl->passed += (size_t)k;
            buf_consume(&cl->in, (size_t)k);
            break;
        }
        assert_true((size_t)r <= cl->in.len);
        assert_int_equal(p->response(&cl->conn, cl->state, buf_head(&cl->in), (size_t)r), 0);
        cl->messages++;
        cl->passed = 0;
        buf_consume(&cl->in, (size_t)r);
    }
}

void fh_check_descriptor(const es_plugin *d, const char *name, size_t conn_size)
{
    assert_non_null(d);
    assert_int_equal(d->magic, ES_PLUGIN_MAGIC);
    assert_int_equal(d->abi_major, ES_PLUGIN_ABI_MAJOR);
    assert_int_equal(d->abi_minor, ES_PLUGIN_ABI_MINOR);
    assert_int_equal(d->size, sizeof(es_plugin));
    assert_true(d->size >= ES_PLUGIN_MIN_SIZE);
    assert_non_null(d->name);
    assert_string_equal(d->name, name);
    assert_non_null(d->version);
    assert_string_equal(d->version, PACKAGE_VERSION);
    assert_int_equal(d->conn_size, conn_size);
    assert_true(d->conn_size > 0);
    assert_non_null(d->init);
    assert_non_null(d->fini);
    assert_non_null(d->open);
    assert_non_null(d->data_received);
    assert_non_null(d->response);
}

void *fh_init_ok(const es_plugin *plugin, const es_config_item *items, size_t count)
{
    es_config cfg = {.items = items, .count = count};
    es_error err = {.item = -1, .msg = ""};
    void *instance = NULL;
    if (plugin->init(&fh_host, &cfg, &instance, &err) != 0)
        fail_msg("init failed: item %d: %s", err.item, err.msg);
    assert_non_null(instance);
    return instance;
}

void fh_init_err(const es_plugin *plugin, const es_config_item *items, size_t count, int item,
                 const char *needle)
{
    es_config cfg = {.items = items, .count = count};
    es_error err = {.item = -1, .msg = ""};
    void *instance = (void *)&cfg;
    assert_int_equal(plugin->init(&fh_host, &cfg, &instance, &err), -1);
    assert_ptr_equal(instance, (void *)&cfg);
    assert_int_equal(err.item, item);
    assert_non_null(memchr(err.msg, '\0', sizeof err.msg));
    assert_contains(err.msg, needle);
}

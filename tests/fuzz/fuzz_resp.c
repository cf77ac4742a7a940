/* fuzz_resp.c - libFuzzer target: the resp plugin's hooks with input arriving in pieces
 * the fuzzer chooses, under limits the fuzzer chooses.
 *
 * Input: one byte choosing max_bulk and max_args, then pieces (fuzz.h). Checked: no crash
 * or sanitizer report; data_received never returns more than it was given, nor -1 (the
 * host stops calling once the plugin closed); each response writes zero or one complete,
 * well-formed RESP reply (+simple, -error, $bulk); a protocol error reply closes the
 * connection in the same call, and only it or QUIT's +OK closes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echosrv/plugin.h"
#include "fuzz.h"

struct es_conn {
    uint8_t *out; /* what the current response call wrote */
    size_t out_len, out_cap;
    int in_response;
    int closed;
};

static int fake_write(es_conn *c, const void *data, size_t len)
{
    FUZZ_CHECK(c->in_response);
    FUZZ_CHECK(!c->closed);
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + len)
            cap *= 2;
        c->out = realloc(c->out, cap);
        FUZZ_CHECK(c->out != NULL);
        c->out_cap = cap;
    }
    if (len > 0)
        memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

static void fake_close(es_conn *c)
{
    FUZZ_CHECK(c->in_response);
    c->closed = 1;
}

static void fake_log(const es_conn *c, enum es_log_level level, const char *fmt, ...)
    ES_PRINTF(3, 4);
static void fake_log(const es_conn *c, enum es_log_level level, const char *fmt, ...)
{
    (void)c, (void)level, (void)fmt;
}

static const char *fake_peer(const es_conn *c)
{
    (void)c;
    return "127.0.0.1:5000";
}

static void *fake_instance(const es_conn *c)
{
    (void)c;
    return NULL;
}

static const es_host host = {
    .size = sizeof(es_host),
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .write = fake_write,
    .close = fake_close,
    .log = fake_log,
    .peer = fake_peer,
    .instance = fake_instance,
};

/* Checks that p[0..n) is one complete reply: "+line\r\n", "-line\r\n" or
 * "$<len>\r\n<len bytes>\r\n". */
static void check_reply(const uint8_t *p, size_t n)
{
    FUZZ_CHECK(n >= 3);
    FUZZ_CHECK(p[n - 2] == '\r' && p[n - 1] == '\n');
    if (p[0] == '+' || p[0] == '-') {
        for (size_t i = 1; i < n - 2; i++)
            FUZZ_CHECK(p[i] != '\r' && p[i] != '\n');
        return;
    }
    FUZZ_CHECK(p[0] == '$');
    size_t i = 1, len = 0;
    FUZZ_CHECK(i < n && p[i] >= '0' && p[i] <= '9');
    FUZZ_CHECK(p[i] != '0' || p[i + 1] == '\r'); /* no leading zero */
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        FUZZ_CHECK(len < SIZE_MAX / 10);
        len = len * 10 + (size_t)(p[i] - '0');
    }
    FUZZ_CHECK(i + 2 <= n && p[i] == '\r' && p[i + 1] == '\n');
    i += 2;
    FUZZ_CHECK(n - i == len + 2);
}

static const char *const max_bulks[] = {NULL, "1", "5", "16", "1K"};
static const char *const max_args[] = {NULL, "1", "2", "3", "44", "45"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    es_config_item items[2];
    es_config cfg = {.items = items, .count = 0};
    const char *mb = max_bulks[data[0] % 5], *ma = max_args[(data[0] / 5) % 6];
    if (mb != NULL)
        items[cfg.count++] = (es_config_item){.key = "max_bulk", .value = mb, .line = 1};
    if (ma != NULL)
        items[cfg.count++] = (es_config_item){.key = "max_args", .value = ma, .line = 2};
    fuzz_pieces fp = {data + 1, size - 1};

    const es_plugin *pl = es_plugin_entry();
    void *inst = NULL;
    es_error err = {.item = -1};
    FUZZ_CHECK(pl->init(&host, &cfg, &inst, &err) == 0);
    es_conn conn = {0};
    void *state = calloc(1, pl->conn_size);
    FUZZ_CHECK(state != NULL);
    FUZZ_CHECK(pl->open == NULL || pl->open(&conn, inst, state) == 0);

    uint8_t *in = NULL;
    size_t in_len = 0, in_cap = 0;
    const uint8_t *piece;
    size_t plen;
    while (fuzz_next_piece(&fp, 128, &piece, &plen)) {
        if (conn.closed || plen == 0)
            continue; /* the server drops input once the plugin closed */
        if (in_len + plen > in_cap) {
            in_cap = (in_len + plen) * 2;
            in = realloc(in, in_cap);
            FUZZ_CHECK(in != NULL);
        }
        memcpy(in + in_len, piece, plen);
        in_len += plen;
        while (!conn.closed && in_len > 0) {
            ssize_t r = pl->data_received(&conn, state, in, in_len);
            FUZZ_CHECK(r >= 0 && (size_t)r <= in_len);
            if (r == 0)
                break;
            conn.out_len = 0;
            conn.in_response = 1;
            FUZZ_CHECK(pl->response(&conn, state, in, (size_t)r) == 0);
            conn.in_response = 0;
            if (conn.out_len > 0)
                check_reply(conn.out, conn.out_len);
            int proto = conn.out_len >= 20 && memcmp(conn.out, "-ERR Protocol error:", 20) == 0;
            int ok = conn.out_len == 5 && memcmp(conn.out, "+OK\r\n", 5) == 0;
            FUZZ_CHECK(!proto || conn.closed);
            FUZZ_CHECK(!conn.closed || proto || ok);
            memmove(in, in + r, in_len - (size_t)r);
            in_len -= (size_t)r;
        }
    }

    if (pl->close != NULL)
        pl->close(&conn, state);
    free(state);
    pl->fini(inst);
    free(in);
    free(conn.out);
    return 0;
}

/* fuzz_echo.c - libFuzzer target: the echo plugin's framing through its hooks, with input
 * arriving in pieces the fuzzer chooses, against a naive model of the protocol.
 *
 * Input: one byte choosing the separator (a preset, or "custom": a length byte and that
 * many raw bytes, given to init as \xHH escapes), then pieces (fuzz.h). Checked: every
 * reply is exactly the message response was given; every message is the input up to and
 * including the first separator; the output is, after every piece, the input framed so far;
 * no message is longer than the input; a QUIT message closes and later input is dropped. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echosrv/plugin.h"
#include "frame.h"
#include "fuzz.h"

struct es_conn {
    uint8_t *out;            /* everything written */
    size_t out_len, out_cap;
    const uint8_t *msg;      /* the message response is handling */
    size_t msg_len;
    int in_response;
    int closed;
};

static void append(uint8_t **p, size_t *len, size_t *cap, const void *data, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n)
            c *= 2;
        *p = realloc(*p, c);
        FUZZ_CHECK(*p != NULL);
        *cap = c;
    }
    if (n > 0)
        memcpy(*p + *len, data, n);
    *len += n;
}

static int fake_write(es_conn *c, const void *data, size_t len)
{
    FUZZ_CHECK(c->in_response);
    FUZZ_CHECK(!c->closed);
    /* The echo reply is the message itself, separator included. */
    FUZZ_CHECK(len == c->msg_len && memcmp(data, c->msg, len) == 0);
    append(&c->out, &c->out_len, &c->out_cap, data, len);
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

static const char *const presets[] = {NULL /* the default, \r\n\r\n */, "\\n", "\\r\\n", "ab",
                                      "aa", "aba", "\\0", "QUIT"};
#define NPRESETS (sizeof presets / sizeof presets[0])

/* The first occurrence of sep in h[0..n), by brute force: the model must not share
 * frame_next's memmem. Returns its offset, or n. */
static size_t naive_find(const uint8_t *h, size_t n, const uint8_t *sep, size_t sep_len)
{
    for (size_t i = 0; i + sep_len <= n; i++) {
        size_t k = 0;
        while (k < sep_len && h[i + k] == sep[k])
            k++;
        if (k == sep_len)
            return i;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_pieces fp = {data + 1, size - 1};

    /* The separator, as the [echo] section would give it. */
    char value[8 * 4 + 1];
    uint8_t sep[8];
    size_t sep_len;
    size_t choice = data[0] % (NPRESETS + 1);
    es_config_item item = {.key = "separator", .value = value, .line = 1};
    es_config cfg = {.items = &item, .count = 1};
    if (choice < NPRESETS) {
        const char *v = presets[choice] != NULL ? presets[choice] : "\\r\\n\\r\\n";
        snprintf(value, sizeof value, "%s", v);
        cfg.count = presets[choice] != NULL;
        char why[64];
        ssize_t n = unescape(value, sep, sizeof sep, why, sizeof why);
        FUZZ_CHECK(n > 0);
        sep_len = (size_t)n;
    } else {
        if (fp.left == 0)
            return 0;
        sep_len = fp.p[0] % 8 + 1;
        fp.p++, fp.left--;
        if (fp.left < sep_len)
            return 0;
        memcpy(sep, fp.p, sep_len);
        for (size_t i = 0; i < sep_len; i++)
            snprintf(value + 4 * i, 5, "\\x%02x", sep[i]);
        fp.p += sep_len, fp.left -= sep_len;
    }

    const es_plugin *pl = es_plugin_entry();
    void *inst = NULL;
    es_error err = {.item = -1};
    FUZZ_CHECK(pl->init(&host, &cfg, &inst, &err) == 0);
    es_conn conn = {0};
    void *state = calloc(1, pl->conn_size);
    FUZZ_CHECK(state != NULL);
    FUZZ_CHECK(pl->open == NULL || pl->open(&conn, inst, state) == 0);

    uint8_t *in = NULL, *all = NULL; /* unconsumed input; all input taken */
    size_t in_len = 0, in_cap = 0, all_len = 0, all_cap = 0;
    size_t framed = 0; /* the model: bytes of `all` framed so far */
    int quit = 0;
    const uint8_t *piece;
    size_t plen;
    while (fuzz_next_piece(&fp, 64, &piece, &plen)) {
        if (conn.closed || plen == 0)
            continue; /* the server drops input once the plugin closed */
        append(&in, &in_len, &in_cap, piece, plen);
        append(&all, &all_len, &all_cap, piece, plen);
        while (!conn.closed && in_len > 0) {
            ssize_t r = pl->data_received(&conn, state, in, in_len);
            FUZZ_CHECK(r >= 0 && (size_t)r <= in_len);
            if (r == 0)
                break;
            /* A message ends at the first separator, and only there. */
            FUZZ_CHECK((size_t)r >= sep_len);
            FUZZ_CHECK(naive_find(in, (size_t)r, sep, sep_len) == (size_t)r - sep_len);
            conn.msg = in, conn.msg_len = (size_t)r, conn.in_response = 1;
            FUZZ_CHECK(pl->response(&conn, state, in, (size_t)r) == 0);
            conn.in_response = 0;
            memmove(in, in + r, in_len - (size_t)r);
            in_len -= (size_t)r;
        }
        /* The model frames everything taken so far. */
        while (!quit) {
            size_t at = naive_find(all + framed, all_len - framed, sep, sep_len);
            if (at == all_len - framed)
                break;
            quit = at == 4 && memcmp(all + framed, "QUIT", 4) == 0;
            framed += at + sep_len;
        }
        FUZZ_CHECK(conn.out_len == framed);
        FUZZ_CHECK(framed == 0 || memcmp(conn.out, all, framed) == 0);
        FUZZ_CHECK(conn.closed == quit);
        FUZZ_CHECK(quit || in_len == all_len - framed);
    }

    if (pl->close != NULL)
        pl->close(&conn, state);
    free(state);
    pl->fini(inst);
    free(in);
    free(all);
    free(conn.out);
    return 0;
}

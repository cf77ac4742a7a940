/* resp.c - a Redis protocol (RESP2) subset: PING, ECHO and QUIT, as multibulk or inline commands. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echosrv/plugin.h"

#define RESP_DEFAULT_MAX_BULK ((size_t)64 << 20)
#define RESP_DEFAULT_MAX_ARGS 1024
#define RESP_MAX_ARGS_CEIL ((size_t)1 << 20)
/* The largest max_bulk accepted: offsets stay far from overflowing. */
#define RESP_MAX_BULK_CEIL                                                     \
    ((uint64_t)SIZE_MAX / 4 < ((uint64_t)1 << 40) ? (uint64_t)SIZE_MAX / 4     \
                                                  : ((uint64_t)1 << 40))
/* An inline request longer than this is a protocol error, as in redis
 * (PROTO_INLINE_MAX_SIZE). */
#define RESP_INLINE_MAX (64 * 1024)
/* Digits of a negative '*' count (ignored like redis does) before it is
 * refused. */
#define RESP_NEG_DIGITS_MAX 18
/* Arguments whose place in a multibulk request is remembered: the unknown
 * command reply shows arguments while its list is under 128 characters,
 * each adding at least 3 ("'' "), so argv[0] and at most 43 more. */
#define RESP_ARGS_KEPT 44
/* Inline lines up to this size are split on the stack, longer ones on the
 * heap; bulk replies up to this size are written in one call. */
#define RESP_SMALL 512
/* Redis cuts the command name and the argument list at 128 bytes. */
#define RESP_ERR_SHOW 128

/* Per plugin: read-only after init. */
typedef struct resp_instance {
    const es_host *host;
    uint64_t max_bulk; /* largest bulk string length accepted */
    uint64_t max_args; /* largest '*' count accepted */
} resp_instance;

/* Where the parser of a request stands, byte by byte. */
enum resp_phase {
    RP_START,     /* at the first byte of a request: '*' or inline */
    RP_INLINE,    /* an inline request: looking for '\n' */
    RP_COUNT,     /* the digits of "*<count>\r\n" */
    RP_COUNT_LF,  /* the '\n' that ends the count */
    RP_DOLLAR,    /* the '$' of the next bulk string */
    RP_BULK_LEN,  /* the digits of "$<len>\r\n" */
    RP_BULK_LF,   /* the '\n' that ends the length */
    RP_BODY,      /* the body: skipped in one step once it is all there */
    RP_BODY_CR,   /* the '\r' after the body */
    RP_BODY_LF,   /* the '\n' after the body */
};

/* A protocol error found in a request, replied to before closing. */
enum resp_error {
    RE_NONE,
    RE_MULTIBULK_LEN, /* bad "*<count>" line, or a count over max_args */
    RE_BULK_LEN,      /* bad "$<len>" line, or a length over max_bulk */
    RE_DOLLAR,        /* something else where '$' belongs */
    RE_BULK_CRLF,     /* a bulk string body not followed by "\r\n" */
    RE_INLINE_BIG,    /* no '\n' within RESP_INLINE_MAX bytes */
    RE_QUOTES,        /* unbalanced quotes in an inline request */
};

/* A bulk string of the current request: its body's offset from the
 * request's first byte, and its length. */
typedef struct resp_span {
    size_t off;
    size_t len;
} resp_span;

/* Per connection, allocated zeroed by the server: the parse of the current
 * request, kept between calls so that no byte is looked at twice. */
typedef struct resp_conn {
    const resp_instance *inst;
    size_t pos;      /* bytes of the current request parsed so far */
    uint64_t num;    /* the count or length being read */
    size_t nargs;    /* arguments announced by '*' */
    size_t argi;     /* arguments complete so far */
    size_t body_end; /* offset just past the current bulk string's body */
    uint8_t phase;   /* enum resp_phase */
    uint8_t ndigits; /* digits of num read so far */
    uint8_t neg;     /* num is negative (a '*' count only) */
    uint8_t inl;     /* the request delimited last is an inline line */
    uint8_t error;   /* enum resp_error to reply to instead of a command */
    uint8_t bad;     /* the byte found where '$' belongs */
    resp_span args[RESP_ARGS_KEPT]; /* the first arguments of a multibulk */
} resp_conn;

/* A command argument as response sees it. When wire is set, the bytes
 * "$<len>\r\n" come just before p and "\r\n" just after: the argument's
 * bulk string is in the input as it must be replied. */
typedef struct resp_arg {
    const uint8_t *p;
    size_t len;
    int wire;
} resp_arg;

/* Parses a size: digits with an optional K, M or G suffix (powers of 1024),
 * in [lo, hi]. Returns 0 with the value in *out, or -1. */
static int parse_size(const char *text, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = text;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (d > hi || v > (hi - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0': break;
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    default: return -1;
    }
    if (*p != '\0' || v > (hi >> shift))
        return -1;
    v <<= shift;
    if (v < lo)
        return -1;
    *out = v;
    return 0;
}

/* Reads the [resp] section: max_bulk and max_args. Returns 0 with the
 * instance in *instance (freed by resp_fini), or -1 with err filled (item =
 * the offending key). Main thread. */
static int resp_init(const es_host *host, const es_config *cfg, void **instance, es_error *err)
{
    resp_instance *inst = calloc(1, sizeof *inst);
    if (inst == NULL) {
        err->item = -1;
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -1;
    }
    inst->host = host;
    inst->max_bulk = RESP_DEFAULT_MAX_BULK;
    inst->max_args = RESP_DEFAULT_MAX_ARGS;
    for (size_t i = 0; i < cfg->count; i++) {
        const es_config_item *it = &cfg->items[i];
        err->item = (int)i;
        if (strcmp(it->key, "max_bulk") == 0) {
            if (parse_size(it->value, 1, RESP_MAX_BULK_CEIL, &inst->max_bulk) < 0) {
                snprintf(err->msg, sizeof err->msg,
                         "max_bulk: '%s' is not a size from 1 to %llu bytes (K, M, G suffixes)",
                         it->value, (unsigned long long)RESP_MAX_BULK_CEIL);
                goto fail;
            }
        } else if (strcmp(it->key, "max_args") == 0) {
            if (parse_size(it->value, 1, RESP_MAX_ARGS_CEIL, &inst->max_args) < 0) {
                snprintf(err->msg, sizeof err->msg,
                         "max_args: '%s' is not a number from 1 to %zu (K, M suffixes)",
                         it->value, (size_t)RESP_MAX_ARGS_CEIL);
                goto fail;
            }
        } else {
            snprintf(err->msg, sizeof err->msg,
                     "unknown key '%s' in [resp] (known: max_bulk, max_args)", it->key);
            goto fail;
        }
    }
    err->item = -1;
    *instance = inst;
    return 0;
fail:
    free(inst);
    return -1;
}

/* Frees the instance. Main thread, after every connection is gone. */
static void resp_fini(void *instance)
{
    free(instance);
}

/* Starts the connection at the first byte of a request. Returns 0. Owning
 * worker. */
static int resp_open(es_conn *c, void *instance, void *state)
{
    (void)c;
    resp_conn *rc = state;
    rc->inst = instance;
    rc->phase = RP_START;
    return 0;
}

/* Feeds one byte of a "*<count>" or "$<len>" line to rc->num: digits as
 * redis's string2ll takes them (no '+', no leading zero, "-" only when
 * neg_ok), up to limit. Returns 1 at the '\r' that ends a valid number, 0
 * when the byte was taken, -1 when the line is malformed. */
static int number_byte(resp_conn *rc, uint8_t ch, uint64_t limit, int neg_ok)
{
    if (ch >= '0' && ch <= '9') {
        unsigned d = (unsigned)(ch - '0');
        if (rc->ndigits > 0 && rc->num == 0)
            return -1; /* a leading zero */
        if (rc->neg) {
            if (d == 0 && rc->ndigits == 0)
                return -1; /* "-0" */
            if (rc->ndigits >= RESP_NEG_DIGITS_MAX)
                return -1;
        } else if (d > limit || rc->num > (limit - d) / 10) {
            return -1;
        }
        rc->num = rc->num * 10 + d;
        rc->ndigits++;
        return 0;
    }
    if (ch == '-' && neg_ok && rc->ndigits == 0 && !rc->neg) {
        rc->neg = 1;
        return 0;
    }
    if (ch == '\r' && rc->ndigits > 0)
        return 1;
    return -1;
}

/* Starts reading a number: nothing read yet. */
static void number_reset(resp_conn *rc)
{
    rc->num = 0;
    rc->ndigits = 0;
    rc->neg = 0;
}

/* The request ends at len: the next call starts a new one. Returns len. */
static ssize_t request_done(resp_conn *rc, size_t len, int inl)
{
    rc->pos = 0;
    rc->phase = RP_START;
    rc->inl = (uint8_t)inl;
    return (ssize_t)len;
}

/* A protocol error: response replies to it and closes. Returns 1, the
 * length of the one-byte message that carries it to response. */
static ssize_t request_error(resp_conn *rc, enum resp_error e, uint8_t bad)
{
    rc->error = (uint8_t)e;
    rc->bad = bad;
    return 1;
}

/*
 * Framing. Requests are either a multibulk "*<n>\r\n" followed by n bulk
 * strings "$<len>\r\n<len bytes>\r\n", or an inline line ending in '\n'.
 * The parse resumes where the previous call stopped (rc->pos, rc->phase),
 * and bulk bodies are skipped without being looked at, so the cost is
 * linear in the request's headers. Returns the length of the next complete
 * request, 0 when more input is needed, or 1 with rc->error set for a
 * protocol error that response reports. Owning worker.
 */
static ssize_t resp_data_received(es_conn *c, void *state, const uint8_t *data, size_t len)
{
    (void)c;
    resp_conn *rc = state;
    const resp_instance *inst = rc->inst;
    size_t p = rc->pos;

    if (rc->error != RE_NONE)
        return -1; /* only after a reported error, which closed the connection */
    while (p < len) {
        uint8_t ch = data[p];
        int r;
        switch ((enum resp_phase)rc->phase) {
        case RP_START:
            if (ch == '*') {
                number_reset(rc);
                rc->phase = RP_COUNT;
                p++;
            } else {
                rc->phase = RP_INLINE;
            }
            break;
        case RP_INLINE: {
            const uint8_t *nl = memchr(data + p, '\n', len - p);
            size_t end = nl != NULL ? (size_t)(nl - data) + 1 : len;
            if (end > RESP_INLINE_MAX)
                return request_error(rc, RE_INLINE_BIG, 0);
            if (nl == NULL) {
                p = len;
                break;
            }
            return request_done(rc, end, 1);
        }
        case RP_COUNT:
            r = number_byte(rc, ch, inst->max_args, 1);
            if (r < 0)
                return request_error(rc, RE_MULTIBULK_LEN, 0);
            if (r > 0)
                rc->phase = RP_COUNT_LF;
            p++;
            break;
        case RP_COUNT_LF:
            if (ch != '\n')
                return request_error(rc, RE_MULTIBULK_LEN, 0);
            p++;
            if (rc->neg || rc->num == 0) {
                rc->nargs = 0; /* "*0" and "*-1" ask for nothing, as in redis */
                return request_done(rc, p, 0);
            }
            rc->nargs = (size_t)rc->num;
            rc->argi = 0;
            rc->phase = RP_DOLLAR;
            break;
        case RP_DOLLAR:
            if (ch != '$')
                return request_error(rc, RE_DOLLAR, ch);
            number_reset(rc);
            rc->phase = RP_BULK_LEN;
            p++;
            break;
        case RP_BULK_LEN:
            r = number_byte(rc, ch, inst->max_bulk, 0);
            if (r < 0)
                return request_error(rc, RE_BULK_LEN, 0);
            if (r > 0)
                rc->phase = RP_BULK_LF;
            p++;
            break;
        case RP_BULK_LF:
            if (ch != '\n')
                return request_error(rc, RE_BULK_LEN, 0);
            p++;
            if (rc->argi < RESP_ARGS_KEPT) {
                rc->args[rc->argi].off = p;
                rc->args[rc->argi].len = (size_t)rc->num;
            }
            rc->body_end = p + (size_t)rc->num;
            rc->phase = RP_BODY;
            break;
        case RP_BODY:
            if (len < rc->body_end) {
                p = len; /* the rest of the body has not arrived */
                break;
            }
            p = rc->body_end;
            rc->phase = RP_BODY_CR;
            break;
        case RP_BODY_CR:
            if (ch != '\r')
                return request_error(rc, RE_BULK_CRLF, 0);
            rc->phase = RP_BODY_LF;
            p++;
            break;
        case RP_BODY_LF:
            if (ch != '\n')
                return request_error(rc, RE_BULK_CRLF, 0);
            p++;
            if (++rc->argi == rc->nargs)
                return request_done(rc, p, 0);
            rc->phase = RP_DOLLAR;
            break;
        }
    }
    rc->pos = p;
    return 0;
}

/* True if the argument is name (lower case ASCII), whatever its case. */
static int arg_is(const resp_arg *a, const char *name)
{
    size_t n = strlen(name);
    if (a->len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = a->p[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (uint8_t)(ch - 'A' + 'a');
        if (ch != (uint8_t)name[i])
            return 0;
    }
    return 1;
}

/* Number of decimal digits of v. */
static size_t digits_of(size_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Queues text (a NUL-terminated reply). Returns 0 or -1 (closing). */
static int reply_text(es_conn *c, const es_host *host, const char *text)
{
    return host->write(c, text, strlen(text));
}

/* Queues the bulk string reply "$<len>\r\n<bytes>\r\n" of a. An argument
 * still in the input as a bulk string is written from there, which the
 * server sends without a copy. Returns 0 or -1 (closing). */
static int reply_bulk(es_conn *c, const es_host *host, const resp_arg *a)
{
    if (a->wire) {
        size_t hdr = 1 + digits_of(a->len) + 2;
        return host->write(c, a->p - hdr, hdr + a->len + 2);
    }
    char head[32];
    int n = snprintf(head, sizeof head, "$%zu\r\n", a->len);
    if ((size_t)n + a->len + 2 <= RESP_SMALL) {
        uint8_t out[RESP_SMALL];
        memcpy(out, head, (size_t)n);
        memcpy(out + n, a->p, a->len);
        memcpy(out + n + a->len, "\r\n", 2);
        return host->write(c, out, (size_t)n + a->len + 2);
    }
    if (host->write(c, head, (size_t)n) < 0 || host->write(c, a->p, a->len) < 0)
        return -1;
    return host->write(c, "\r\n", 2);
}

/* Appends to out (at *n) at most max bytes of p[0..len), stopping at a NUL
 * as redis's "%.*s" does, with '\r' and '\n' made spaces as redis does in
 * error replies. Returns the number of bytes appended. */
static size_t append_shown(char *out, size_t *n, const uint8_t *p, size_t len, size_t max)
{
    size_t k = 0;
    for (; k < len && k < max && p[k] != '\0'; k++)
        out[*n + k] = p[k] == '\r' || p[k] == '\n' ? ' ' : (char)p[k];
    *n += k;
    return k;
}

/* Appends the NUL-terminated s to out at *n. */
static void append_str(char *out, size_t *n, const char *s)
{
    size_t k = strlen(s);
    memcpy(out + *n, s, k);
    *n += k;
}

/* Queues redis's reply to an unknown command: its name, then arguments in
 * quotes while the list is under 128 characters. Only the first
 * RESP_ARGS_KEPT arguments can be needed. Returns 0 or -1 (closing). */
static int reply_unknown(es_conn *c, const es_host *host, const resp_arg *argv, size_t argc)
{
    /* "-ERR unknown command '" + 128 + "', with args beginning with: " +
     * at most 127 + 128 + 3 + "\r\n" */
    char out[512];
    size_t n = 0;
    append_str(out, &n, "-ERR unknown command '");
    append_shown(out, &n, argv[0].p, argv[0].len, RESP_ERR_SHOW);
    append_str(out, &n, "', with args beginning with: ");
    size_t start = n;
    for (size_t i = 1; i < argc && i < RESP_ARGS_KEPT && n - start < RESP_ERR_SHOW; i++) {
        out[n++] = '\'';
        append_shown(out, &n, argv[i].p, argv[i].len, RESP_ERR_SHOW - (n - 1 - start));
        out[n++] = '\'';
        out[n++] = ' ';
    }
    append_str(out, &n, "\r\n");
    return host->write(c, out, n);
}

/* Queues "-ERR wrong number of arguments for 'name' command". Returns 0 or
 * -1 (closing). */
static int reply_arity(es_conn *c, const es_host *host, const char *name)
{
    char out[96];
    int n = snprintf(out, sizeof out, "-ERR wrong number of arguments for '%s' command\r\n",
                     name);
    return host->write(c, out, (size_t)n);
}

/* The text of a protocol error, after "Protocol error: ", into out. */
static void error_text(const resp_conn *rc, char *out, size_t cap)
{
    switch ((enum resp_error)rc->error) {
    case RE_MULTIBULK_LEN:
        snprintf(out, cap, "invalid multibulk length");
        break;
    case RE_BULK_LEN:
        snprintf(out, cap, "invalid bulk length");
        break;
    case RE_DOLLAR:
        snprintf(out, cap, "expected '$', got '%c'",
                 rc->bad == '\r' || rc->bad == '\n' ? ' ' : rc->bad == '\0' ? '?' : rc->bad);
        break;
    case RE_BULK_CRLF:
        snprintf(out, cap, "expected CRLF after a bulk string");
        break;
    case RE_INLINE_BIG:
        snprintf(out, cap, "too big inline request");
        break;
    case RE_QUOTES:
        snprintf(out, cap, "unbalanced quotes in request");
        break;
    case RE_NONE:
        snprintf(out, cap, "none");
        break;
    }
}

/* Queues "-ERR Protocol error: ..." and closes the connection once it is
 * sent, as redis does. Returns 0, or -1 if the reply could not be queued. */
static int reply_protocol_error(es_conn *c, const es_host *host, const resp_conn *rc)
{
    char text[96];
    char out[128];
    error_text(rc, text, sizeof text);
    int n = snprintf(out, sizeof out, "-ERR Protocol error: %s\r\n", text);
    host->log(c, ES_LOG_INFO, "protocol error: %s: closing the connection", text);
    int r = host->write(c, out, (size_t)n);
    host->close(c);
    return r < 0 ? -1 : 0;
}

/* True for the bytes C's isspace() takes in the "C" locale. */
static int is_space(uint8_t ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

/* The value of a hex digit, or -1 for another byte. */
static int hex_value(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * Splits an inline request line (ending in '\n', maybe "\r\n") into
 * arguments the way redis's sdssplitargs does: whitespace separates them,
 * "double quotes" take \n \r \t \b \a \xHH and \<char> escapes, 'single
 * quotes' take \', a closing quote must be followed by whitespace, and a
 * NUL ends the line (redis, which looks for the '\n' with strchr, would
 * not see the end of such a line at all). The unescaped bytes go to out (at least len bytes);
 * argv receives the first RESP_ARGS_KEPT arguments, *argc counts all.
 * Returns 0, or -1 for unbalanced quotes.
 */
static int split_inline(const uint8_t *line, size_t len, uint8_t *out, resp_arg *argv,
                        size_t *argc)
{
    len--; /* the '\n' */
    if (len > 0 && line[len - 1] == '\r')
        len--;
    const uint8_t *nul = memchr(line, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - line);

    size_t i = 0, o = 0, n = 0;
    for (;;) {
        while (i < len && is_space(line[i]))
            i++;
        if (i == len)
            break;
        size_t start = o;
        int inq = 0, insq = 0, done = 0;
        while (!done) {
            uint8_t ch = i < len ? line[i] : 0;
            uint8_t next = i + 1 < len ? line[i + 1] : 0;
            if (inq) {
                if (ch == '\\' && next == 'x' && i + 3 < len && hex_value(line[i + 2]) >= 0 &&
                    hex_value(line[i + 3]) >= 0) {
                    out[o++] = (uint8_t)(hex_value(line[i + 2]) * 16 + hex_value(line[i + 3]));
                    i += 3;
                } else if (ch == '\\' && i + 1 < len) {
                    i++;
                    switch (next) {
                    case 'n': out[o++] = '\n'; break;
                    case 'r': out[o++] = '\r'; break;
                    case 't': out[o++] = '\t'; break;
                    case 'b': out[o++] = '\b'; break;
                    case 'a': out[o++] = '\a'; break;
                    default: out[o++] = next; break;
                    }
                } else if (ch == '"' && i < len) {
                    if (i + 1 < len && !is_space(next))
                        return -1;
                    done = 1;
                } else if (i == len) {
                    return -1;
                } else {
                    out[o++] = ch;
                }
            } else if (insq) {
                if (ch == '\\' && next == '\'' && i + 1 < len) {
                    i++;
                    out[o++] = '\'';
                } else if (ch == '\'' && i < len) {
                    if (i + 1 < len && !is_space(next))
                        return -1;
                    done = 1;
                } else if (i == len) {
                    return -1;
                } else {
                    out[o++] = ch;
                }
            } else if (i == len || ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') {
                done = 1;
            } else if (ch == '"') {
                inq = 1;
            } else if (ch == '\'') {
                insq = 1;
            } else {
                out[o++] = ch;
            }
            if (i < len)
                i++;
        }
        if (n < RESP_ARGS_KEPT) {
            argv[n].p = out + start;
            argv[n].len = o - start;
            argv[n].wire = 0;
        }
        n++;
    }
    *argc = n;
    return 0;
}

/* Runs one command. Returns 0, or -1 when the connection is closing. */
static int run_command(es_conn *c, const es_host *host, const resp_arg *argv, size_t argc)
{
    if (arg_is(&argv[0], "ping")) {
        if (argc == 1)
            return reply_text(c, host, "+PONG\r\n");
        if (argc == 2)
            return reply_bulk(c, host, &argv[1]);
        return reply_arity(c, host, "ping");
    }
    if (arg_is(&argv[0], "echo")) {
        if (argc == 2)
            return reply_bulk(c, host, &argv[1]);
        return reply_arity(c, host, "echo");
    }
    if (arg_is(&argv[0], "quit")) {
        int r = reply_text(c, host, "+OK\r\n");
        host->close(c);
        return r;
    }
    return reply_unknown(c, host, argv, argc);
}

/* One complete request (or a protocol error data_received found): replies
 * with host->write. Returns 0, or -1 when the connection is closing or out
 * of memory. Owning worker. */
static int resp_response(es_conn *c, void *state, const uint8_t *msg, size_t len)
{
    resp_conn *rc = state;
    const es_host *host = rc->inst->host;
    resp_arg argv[RESP_ARGS_KEPT];
    size_t argc;
    int r;

    if (rc->error != RE_NONE)
        return reply_protocol_error(c, host, rc);
    if (!rc->inl) {
        argc = rc->nargs;
        for (size_t i = 0; i < argc && i < RESP_ARGS_KEPT; i++) {
            argv[i].p = msg + rc->args[i].off;
            argv[i].len = rc->args[i].len;
            argv[i].wire = 1;
        }
        return argc == 0 ? 0 : run_command(c, host, argv, argc);
    }

    uint8_t small[RESP_SMALL];
    uint8_t *out = small;
    if (len > sizeof small) {
        out = malloc(len);
        if (out == NULL) {
            host->log(c, ES_LOG_ERROR, "out of memory splitting a %zu-byte inline request", len);
            return -1;
        }
    }
    if (split_inline(msg, len, out, argv, &argc) < 0) {
        rc->error = RE_QUOTES;
        r = reply_protocol_error(c, host, rc);
    } else {
        r = argc == 0 ? 0 : run_command(c, host, argv, argc);
    }
    if (out != small)
        free(out);
    return r;
}

static const es_plugin resp_plugin = {
    .magic = ES_PLUGIN_MAGIC,
    .abi_major = ES_PLUGIN_ABI_MAJOR,
    .abi_minor = ES_PLUGIN_ABI_MINOR,
    .size = sizeof(es_plugin),
    .name = "resp",
    .version = PACKAGE_VERSION,
    .conn_size = sizeof(resp_conn),
    .init = resp_init,
    .fini = resp_fini,
    .open = resp_open,
    .data_received = resp_data_received,
    .response = resp_response,
};

/* The plugin's descriptor, a constant. Any thread. */
ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return &resp_plugin;
}

/* test_resp.c - unit tests of the resp (RESP2 subset) plugin's hooks, driven through a fake host table. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* The plugin itself, for its statics (resp_plugin, resp_conn, ...). */
#include "../../plugins/resp.c"

#include "buf.h"
#include "fake_host.h"

/* Length of a string literal, NUL bytes inside included. */
#define LIT(s) (s), (sizeof(s) - 1)

/* Prints bytes with C escapes, for failure messages. */
static void show(const char *what, const void *data, size_t len)
{
    const uint8_t *p = data;
    fprintf(stderr, "# %s (%zu bytes): \"", what, len);
    for (size_t i = 0; i < len && i < 400; i++) {
        if (p[i] == '\r')
            fputs("\\r", stderr);
        else if (p[i] == '\n')
            fputs("\\n", stderr);
        else if (p[i] < 0x20 || p[i] >= 0x7f)
            fprintf(stderr, "\\x%02x", p[i]);
        else
            fputc(p[i], stderr);
    }
    fputs(len > 400 ? "\"...\n" : "\"\n", stderr);
}

/* Asserts that the connection's output so far is want. */
static void assert_output(const fh_client *cl, const void *want, size_t want_len)
{
    if (cl->conn.out.len != want_len ||
        (want_len > 0 && memcmp(buf_head(&cl->conn.out), want, want_len) != 0)) {
        show("expected", want, want_len);
        show("got", buf_head(&cl->conn.out), cl->conn.out.len);
        fail_msg("unexpected replies");
    }
}

/* Asserts that a close came last and only once, after every write. */
static void assert_closed_last(const fh_client *cl)
{
    assert_int_equal(cl->conn.closes, 1);
    assert_true(cl->conn.nevents >= 1);
    assert_int_equal(cl->conn.events[cl->conn.nevents - 1], 'c');
    assert_null(memchr(cl->conn.events, 'c', cl->conn.nevents - 1));
}

/* Feeds in (in one piece) to a fresh connection of instance and checks the
 * replies are want and whether the connection closed. */
static void expect(void *instance, const void *in, size_t in_len, const void *want,
                   size_t want_len, int closes)
{
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, instance);
    fh_client_feed(&cl, in, in_len);
    if (cl.conn.out.len != want_len ||
        (want_len > 0 && memcmp(buf_head(&cl.conn.out), want, want_len) != 0))
        show("input", in, in_len);
    assert_output(&cl, want, want_len);
    if ((int)cl.conn.closes != closes)
        show("input", in, in_len);
    assert_int_equal(cl.conn.closes, closes);
    if (closes)
        assert_closed_last(&cl);
    fh_client_close(&cl);
}

#define EXPECT(inst, in, want, closes) expect((inst), LIT(in), LIT(want), (closes))

/* Feeds in to a fresh connection in the pieces given by cuts and checks
 * the replies are want and the closes. With single set, in is one request:
 * nothing may be written before its last byte. */
static void feed_in_pieces(void *instance, const void *in, size_t len, const size_t *cuts,
                           size_t ncuts, const void *want, size_t want_len, int closes,
                           int single)
{
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, instance);
    size_t pos = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        fh_client_feed(&cl, (const uint8_t *)in + pos, end - pos);
        if (single && k < ncuts && cl.conn.writes != 0) {
            show("input", in, len);
            fail_msg("a reply after %zu of %zu bytes", end, len);
        }
        pos = end;
    }
    if (cl.conn.out.len != want_len ||
        (want_len > 0 && memcmp(buf_head(&cl.conn.out), want, want_len) != 0)) {
        show("input", in, len);
        for (size_t k = 0; k < ncuts; k++)
            fprintf(stderr, "# cut at %zu\n", cuts[k]);
    }
    assert_output(&cl, want, want_len);
    assert_int_equal(cl.conn.closes, closes);
    if (!closes)
        assert_int_equal(cl.in.len, 0);
    fh_client_close(&cl);
}

/* Feeds in whole, then cut in two and in three at every place. */
static void every_split(void *instance, const void *in, size_t len, const void *want,
                        size_t want_len, int closes, int single)
{
    feed_in_pieces(instance, in, len, NULL, 0, want, want_len, closes, single);
    for (size_t i = 1; i < len; i++) {
        size_t c1[1] = {i};
        feed_in_pieces(instance, in, len, c1, 1, want, want_len, closes, single);
        for (size_t j = i + 1; j < len; j++) {
            size_t c2[2] = {i, j};
            feed_in_pieces(instance, in, len, c2, 2, want, want_len, closes, single);
        }
    }
}

#define EVERY_SPLIT(inst, in, want, closes, single)                            \
    every_split((inst), LIT(in), LIT(want), (closes), (single))

/* Feeds in a byte at a time. */
static void byte_at_a_time(void *instance, const void *in, size_t len, const void *want,
                           size_t want_len, int closes)
{
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, instance);
    for (size_t i = 0; i < len; i++)
        fh_client_feed(&cl, (const uint8_t *)in + i, 1);
    assert_output(&cl, want, want_len);
    assert_int_equal(cl.conn.closes, closes);
    fh_client_close(&cl);
}

static void test_descriptor(void **state)
{
    (void)state;
    const es_plugin *d = ES_PLUGIN_ENTRY();
    assert_ptr_equal(d, &resp_plugin);
    fh_check_descriptor(d, "resp", sizeof(resp_conn));
}

static void test_init_defaults(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&resp_plugin, NULL, 0);
    const resp_instance *inst = instance;
    assert_ptr_equal(inst->host, &fh_host);
    assert_int_equal(inst->max_bulk, 64u << 20);
    assert_int_equal(inst->max_args, 1024);
    resp_plugin.fini(instance);
}

static void test_init_options(void **state)
{
    (void)state;
    const es_config_item items[] = {
        {.key = "max_bulk", .value = "1K", .line = 2},
        {.key = "max_args", .value = "3", .line = 3},
    };
    void *instance = fh_init_ok(&resp_plugin, items, 2);
    const resp_instance *inst = instance;
    assert_int_equal(inst->max_bulk, 1024);
    assert_int_equal(inst->max_args, 3);
    resp_plugin.fini(instance);

    static const struct {
        const char *text;
        uint64_t value;
    } sizes[] = {{"1", 1}, {"512m", 512u << 20}, {"2G", (uint64_t)2 << 30},
                 {"1048576", 1048576}, {"1k", 1024}, {"1M", 1 << 20}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        es_config_item it = {.key = "max_bulk", .value = sizes[i].text, .line = 1};
        instance = fh_init_ok(&resp_plugin, &it, 1);
        assert_int_equal(((resp_instance *)instance)->max_bulk, sizes[i].value);
        resp_plugin.fini(instance);
    }
    es_config_item most = {.key = "max_args", .value = "1M", .line = 1};
    instance = fh_init_ok(&resp_plugin, &most, 1);
    assert_int_equal(((resp_instance *)instance)->max_args, 1 << 20);
    resp_plugin.fini(instance);
}

static void test_init_bad_values(void **state)
{
    (void)state;
    static const char *const bad_bulk[] = {"0", "", "-1", "+5", " 5", "5 ", "x", "1T", "1KB",
                                           "0x10", "2000G", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad_bulk / sizeof bad_bulk[0]; i++) {
        const es_config_item items[] = {
            {.key = "max_args", .value = "10", .line = 2},
            {.key = "max_bulk", .value = bad_bulk[i], .line = 3},
        };
        fh_init_err(&resp_plugin, items, 2, 1, "max_bulk: '");
    }
    static const char *const bad_args[] = {"0", "", "-3", "abc", "2M", "1048577", "1G"};
    for (size_t i = 0; i < sizeof bad_args / sizeof bad_args[0]; i++) {
        const es_config_item items[] = {{.key = "max_args", .value = bad_args[i], .line = 2}};
        fh_init_err(&resp_plugin, items, 1, 0, "max_args: '");
    }
}

static void test_init_unknown_key(void **state)
{
    (void)state;
    const es_config_item items[] = {
        {.key = "max_bulk", .value = "1M", .line = 3},
        {.key = "max_args", .value = "8", .line = 4},
        {.key = "max_bulks", .value = "1", .line = 5},
    };
    fh_init_err(&resp_plugin, items, 3, 2, "unknown key 'max_bulks' in [resp]");
    fh_init_err(&resp_plugin, items, 3, 2, "known: max_bulk, max_args");
    const es_config_item sep[] = {{.key = "separator", .value = "\\n", .line = 1}};
    fh_init_err(&resp_plugin, sep, 1, 0, "'separator'");
}

/* The commands, in both forms, any case. */
static void test_commands(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    EXPECT(in, "PING\r\n", "+PONG\r\n", 0);
    EXPECT(in, "ping\r\n", "+PONG\r\n", 0);
    EXPECT(in, "pInG\n", "+PONG\r\n", 0);
    EXPECT(in, "*1\r\n$4\r\nPING\r\n", "+PONG\r\n", 0);
    EXPECT(in, "*1\r\n$4\r\nPiNg\r\n", "+PONG\r\n", 0);
    EXPECT(in, "PING hello\r\n", "$5\r\nhello\r\n", 0);
    EXPECT(in, "*2\r\n$4\r\nping\r\n$5\r\nhello\r\n", "$5\r\nhello\r\n", 0);
    EXPECT(in, "ECHO hello\r\n", "$5\r\nhello\r\n", 0);
    EXPECT(in, "echo hello\r\n", "$5\r\nhello\r\n", 0);
    EXPECT(in, "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n", "$5\r\nhello\r\n", 0);
    EXPECT(in, "*2\r\n$4\r\neChO\r\n$0\r\n\r\n", "$0\r\n\r\n", 0);
    EXPECT(in, "ECHO \"\"\r\n", "$0\r\n\r\n", 0);
    EXPECT(in, "QUIT\r\n", "+OK\r\n", 1);
    EXPECT(in, "quit\r\n", "+OK\r\n", 1);
    EXPECT(in, "*1\r\n$4\r\nQuit\r\n", "+OK\r\n", 1);
    /* QUIT takes any arguments, as in redis 7. */
    EXPECT(in, "QUIT now please\r\n", "+OK\r\n", 1);
    /* Nothing after QUIT is answered. */
    EXPECT(in, "PING\r\nQUIT\r\nPING\r\n", "+PONG\r\n+OK\r\n", 1);
    EXPECT(in, "*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n", "+OK\r\n", 1);
    /* Not commands: names are compared whole. */
    EXPECT(in, "PINGS\r\n", "-ERR unknown command 'PINGS', with args beginning with: \r\n", 0);
    EXPECT(in, "*1\r\n$3\r\nPIN\r\n",
           "-ERR unknown command 'PIN', with args beginning with: \r\n", 0);
    resp_plugin.fini(in);
}

/* Empty requests are consumed without a reply, as in redis. */
static void test_empty_requests(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    EXPECT(in, "\r\n", "", 0);
    EXPECT(in, "\n", "", 0);
    EXPECT(in, "  \t \r\n", "", 0);
    EXPECT(in, "*0\r\n", "", 0);
    EXPECT(in, "*-1\r\n", "", 0);
    EXPECT(in, "*-25\r\n", "", 0);
    EXPECT(in, "\r\n*0\r\n\n*-1\r\nPING\r\n", "+PONG\r\n", 0);
    resp_plugin.fini(in);
}

/* Inline requests are split like redis's sdssplitargs. */
static void test_inline_splitting(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    EXPECT(in, "  ECHO \t  spaced   \r\n", "$6\r\nspaced\r\n", 0);
    EXPECT(in, "ECHO x\r\r\n", "$1\r\nx\r\n", 0);
    EXPECT(in, "ECHO \"a b\"\r\n", "$3\r\na b\r\n", 0);
    EXPECT(in, "ECHO \"\\x41\\x4a\\n\\r\\t\\b\\a\\\\\\\"\\q\"\r\n",
           "$10\r\nAJ\n\r\t\b\a\\\"q\r\n", 0);
    EXPECT(in, "ECHO \"\\x4g\"\r\n", "$3\r\nx4g\r\n", 0);
    EXPECT(in, "ECHO 'it\\'s \\n'\r\n", "$7\r\nit's \\n\r\n", 0);
    EXPECT(in, "ECHO a\"b c\"d\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n", 1);
    EXPECT(in, "ECHO a\"b c\"\r\n", "$4\r\nab c\r\n", 0);
    EXPECT(in, "ECHO x\vy\r\n", "$3\r\nx\vy\r\n", 0);
    EXPECT(in, "ECHO \vxy\r\n", "$2\r\nxy\r\n", 0);
    /* A NUL ends the line's arguments. */
    EXPECT(in, "ECHO ab\0cd\r\n", "$2\r\nab\r\n", 0);
    /* Inline replies are built, not taken from the input. */
    EXPECT(in, "PING \"a\\x00b\"\r\n", "$3\r\na\0b\r\n", 0);
    resp_plugin.fini(in);
}

static void test_unknown_command(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    EXPECT(in, "foo\r\n", "-ERR unknown command 'foo', with args beginning with: \r\n", 0);
    EXPECT(in, "foo a b\r\n",
           "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n", 0);
    EXPECT(in, "*3\r\n$3\r\nFoo\r\n$1\r\na\r\n$0\r\n\r\n",
           "-ERR unknown command 'Foo', with args beginning with: 'a' '' \r\n", 0);
    /* CR and LF become spaces; a NUL ends what is shown. */
    EXPECT(in, "*3\r\n$4\r\nf\r\no\r\n$3\r\na\nb\r\n$3\r\nc\0d\r\n",
           "-ERR unknown command 'f  o', with args beginning with: 'a b' 'c' \r\n", 0);
    /* The connection stays open. */
    EXPECT(in, "foo\r\nPING\r\n",
           "-ERR unknown command 'foo', with args beginning with: \r\n+PONG\r\n", 0);

    /* The name is cut at 128 bytes, the list once it reaches 128. */
    char req[1024], want[1024];
    char name[201], arg[201];
    memset(name, 'n', 200);
    name[200] = '\0';
    memset(arg, 'a', 200);
    arg[200] = '\0';
    int n = snprintf(req, sizeof req, "%s %s b\r\n", name, arg);
    int w = snprintf(want, sizeof want,
                     "-ERR unknown command '%.128s', with args beginning with: '%.128s' \r\n",
                     name, arg);
    expect(in, req, (size_t)n, want, (size_t)w, 0);
    /* 126 characters shown: the next argument is cut to 2 bytes, no more after. */
    n = snprintf(req, sizeof req, "x %.123s hello world\r\n", arg);
    w = snprintf(want, sizeof want,
                 "-ERR unknown command 'x', with args beginning with: '%.123s' 'he' \r\n", arg);
    expect(in, req, (size_t)n, want, (size_t)w, 0);
    /* Exactly 128 characters: nothing more is shown. */
    n = snprintf(req, sizeof req, "x %.125s hello\r\n", arg);
    w = snprintf(want, sizeof want,
                 "-ERR unknown command 'x', with args beginning with: '%.125s' \r\n", arg);
    expect(in, req, (size_t)n, want, (size_t)w, 0);
    /* 43 empty arguments make 129 characters: a 44th is not shown. */
    size_t rl = (size_t)snprintf(req, sizeof req, "*45\r\n$1\r\nz\r\n");
    for (int i = 0; i < 43; i++)
        rl += (size_t)snprintf(req + rl, sizeof req - rl, "$0\r\n\r\n");
    rl += (size_t)snprintf(req + rl, sizeof req - rl, "$1\r\nq\r\n");
    size_t wl = (size_t)snprintf(want, sizeof want,
                                 "-ERR unknown command 'z', with args beginning with: ");
    for (int i = 0; i < 43; i++)
        wl += (size_t)snprintf(want + wl, sizeof want - wl, "'' ");
    wl += (size_t)snprintf(want + wl, sizeof want - wl, "\r\n");
    expect(in, req, rl, want, wl, 0);
    /* With 42 of them, the 43rd is shown. */
    rl = (size_t)snprintf(req, sizeof req, "*44\r\n$1\r\nz\r\n");
    for (int i = 0; i < 42; i++)
        rl += (size_t)snprintf(req + rl, sizeof req - rl, "$0\r\n\r\n");
    rl += (size_t)snprintf(req + rl, sizeof req - rl, "$1\r\nq\r\n");
    wl = (size_t)snprintf(want, sizeof want,
                          "-ERR unknown command 'z', with args beginning with: ");
    for (int i = 0; i < 42; i++)
        wl += (size_t)snprintf(want + wl, sizeof want - wl, "'' ");
    wl += (size_t)snprintf(want + wl, sizeof want - wl, "'q' \r\n");
    expect(in, req, rl, want, wl, 0);
    resp_plugin.fini(in);
}

static void test_wrong_arity(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    EXPECT(in, "ECHO\r\n", "-ERR wrong number of arguments for 'echo' command\r\n", 0);
    EXPECT(in, "Echo a b\r\n", "-ERR wrong number of arguments for 'echo' command\r\n", 0);
    EXPECT(in, "*1\r\n$4\r\nECHO\r\n", "-ERR wrong number of arguments for 'echo' command\r\n",
           0);
    EXPECT(in, "*3\r\n$4\r\necho\r\n$1\r\na\r\n$1\r\nb\r\n",
           "-ERR wrong number of arguments for 'echo' command\r\n", 0);
    EXPECT(in, "PING a b\r\n", "-ERR wrong number of arguments for 'ping' command\r\n", 0);
    EXPECT(in, "*3\r\n$4\r\nPING\r\n$1\r\na\r\n$1\r\nb\r\n",
           "-ERR wrong number of arguments for 'ping' command\r\n", 0);
    /* The connection stays open. */
    EXPECT(in, "ECHO\r\nECHO ok\r\n",
           "-ERR wrong number of arguments for 'echo' command\r\n$2\r\nok\r\n", 0);
    resp_plugin.fini(in);
}

#define PROTO(text) "-ERR Protocol error: " text "\r\n"

/* Malformed input: the error is replied to, then the connection closes;
 * nothing after it is answered, everything before it is. */
static void test_protocol_errors(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    EXPECT(in, "*x\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*-\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*-0\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*--1\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*+1\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*01\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*00\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "* 1\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*1 \r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*1\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*1\rx", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*1-\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*-1234567890123456789\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*1025\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*99999999999999999999999\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*1\r\n+PING\r\n", PROTO("expected '$', got '+'"), 1);
    EXPECT(in, "*1\r\nPING\r\n", PROTO("expected '$', got 'P'"), 1);
    EXPECT(in, "*1\r\n\r\n", PROTO("expected '$', got ' '"), 1);
    EXPECT(in, "*1\r\n\0", PROTO("expected '$', got '?'"), 1);
    EXPECT(in, "*2\r\n$4\r\nECHO\r\n:5\r\n", PROTO("expected '$', got ':'"), 1);
    EXPECT(in, "*1\r\n$\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*1\r\n$-1\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*1\r\n$04\r\nPING\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*1\r\n$4x\r\nPING\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*1\r\n$4\rPING\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*1\r\n$4\nPING\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*1\r\n$99999999999999999999\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*1\r\n$67108865\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*1\r\n$4\r\nPINGX\r\n", PROTO("expected CRLF after a bulk string"), 1);
    EXPECT(in, "*1\r\n$4\r\nPING\rX", PROTO("expected CRLF after a bulk string"), 1);
    EXPECT(in, "*1\r\n$4\r\nPING\n", PROTO("expected CRLF after a bulk string"), 1);
    EXPECT(in, "*1\r\n$3\r\nPING\r\n", PROTO("expected CRLF after a bulk string"), 1);
    EXPECT(in, "ECHO \"abc\r\n", PROTO("unbalanced quotes in request"), 1);
    EXPECT(in, "ECHO 'abc\r\n", PROTO("unbalanced quotes in request"), 1);
    EXPECT(in, "ECHO \"abc\"def\r\n", PROTO("unbalanced quotes in request"), 1);
    EXPECT(in, "ECHO 'abc'def\r\n", PROTO("unbalanced quotes in request"), 1);
    EXPECT(in, "ECHO \"abc\\\"\r\n", PROTO("unbalanced quotes in request"), 1);
    /* Replies to what came before stay; nothing after is answered. */
    EXPECT(in, "PING\r\n*1\r\n$4\r\nPING\r\n*z\r\nPING\r\n",
           "+PONG\r\n+PONG\r\n" PROTO("invalid multibulk length"), 1);
    EXPECT(in, "ECHO 'x\r\nPING\r\n", PROTO("unbalanced quotes in request"), 1);

    /* The error is logged once, and a later call refuses at once. */
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, in);
    fh_client_feed(&cl, LIT("*1\r\n$x"));
    assert_closed_last(&cl);
    assert_int_equal(cl.conn.logs, 1);
    assert_contains(cl.conn.last_log, "invalid bulk length");
    assert_int_equal(resp_plugin.data_received(&cl.conn, cl.state, (const uint8_t *)"P", 1), -1);
    fh_client_close(&cl);
    resp_plugin.fini(in);
}

/* An error is found as soon as its byte arrives, whatever follows. */
static void test_protocol_error_early(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, in);
    fh_client_feed(&cl, LIT("*2\r\n$4\r\nECHO\r\n$"));
    assert_int_equal(cl.conn.writes, 0);
    fh_client_feed(&cl, LIT("1"));
    assert_int_equal(cl.conn.writes, 0);
    fh_client_feed(&cl, LIT("0"));
    assert_int_equal(cl.conn.writes, 0);
    fh_client_feed(&cl, LIT("a"));
    assert_output(&cl, LIT(PROTO("invalid bulk length")));
    assert_closed_last(&cl);
    fh_client_close(&cl);
    resp_plugin.fini(in);
}

/* Every command cut into two or three pieces at every place. */
static void test_every_split(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    EVERY_SPLIT(in, "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n", "$5\r\nhello\r\n", 0, 1);
    EVERY_SPLIT(in, "*1\r\n$4\r\nPING\r\n", "+PONG\r\n", 0, 1);
    EVERY_SPLIT(in, "*2\r\n$4\r\nPING\r\n$11\r\n\r\n*1\r\n$0\r\n\0\r\n",
                "$11\r\n\r\n*1\r\n$0\r\n\0\r\n", 0, 1);
    EVERY_SPLIT(in, "ECHO \"a b\\x00\"\r\n", "$4\r\na b\0\r\n", 0, 1);
    EVERY_SPLIT(in, "PING\r\n", "+PONG\r\n", 0, 1);
    EVERY_SPLIT(in, "*1\r\n$4\r\nQUIT\r\n", "+OK\r\n", 1, 1);
    EVERY_SPLIT(in, "*2\r\n$4\r\nECHO\r\n$2\r\nabX\r\n",
                PROTO("expected CRLF after a bulk string"), 1, 0);
    EVERY_SPLIT(in, "*1\r\n$1x\r\n", PROTO("invalid bulk length"), 1, 0);
    /* Pipelines of both forms. */
    EVERY_SPLIT(in, "PING\r\n*2\r\n$4\r\nECHO\r\n$3\r\na\r\n\r\necho x\n*0\r\n\r\nfoo\r\n",
                "+PONG\r\n$3\r\na\r\n\r\n$1\r\nx\r\n"
                "-ERR unknown command 'foo', with args beginning with: \r\n", 0, 0);
    byte_at_a_time(in, LIT("*3\r\n$4\r\nECHO\r\n$3\r\nabc\r\n$1\r\nd\r\nPING\r\nQUIT\r\nPING\r\n"),
                   LIT("-ERR wrong number of arguments for 'echo' command\r\n+PONG\r\n+OK\r\n"),
                   1);
    resp_plugin.fini(in);
}

/* Many commands in one read: all answered, in order, and the input is
 * consumed exactly; a partial command at the end waits. */
static void test_pipelined(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    enum { N = 1000 };
    buf req = {0}, want = {0};
    for (int i = 0; i < N; i++) {
        char r[128], w[64];
        int rn, wn;
        switch (i % 4) {
        case 0:
            rn = snprintf(r, sizeof r, "PING\r\n");
            wn = snprintf(w, sizeof w, "+PONG\r\n");
            break;
        case 1:
            rn = snprintf(r, sizeof r, "*1\r\n$4\r\nPING\r\n");
            wn = snprintf(w, sizeof w, "+PONG\r\n");
            break;
        case 2:
            rn = snprintf(r, sizeof r, "*2\r\n$4\r\nECHO\r\n$%d\r\n%d\r\n",
                          snprintf(NULL, 0, "%d", i), i);
            wn = snprintf(w, sizeof w, "$%d\r\n%d\r\n", snprintf(NULL, 0, "%d", i), i);
            break;
        default:
            rn = snprintf(r, sizeof r, "echo m%d\r\n", i);
            wn = snprintf(w, sizeof w, "$%d\r\nm%d\r\n", snprintf(NULL, 0, "m%d", i), i);
            break;
        }
        assert_int_equal(buf_append(&req, r, (size_t)rn), 0);
        assert_int_equal(buf_append(&want, w, (size_t)wn), 0);
    }
    assert_int_equal(buf_append(&req, LIT("*2\r\n$4\r\nECHO\r\n$5\r\nhel")), 0);
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, in);
    fh_client_feed(&cl, buf_head(&req), req.len);
    assert_int_equal(cl.messages, N);
    assert_output(&cl, buf_head(&want), want.len);
    assert_int_equal(cl.in.len, 21);
    fh_client_feed(&cl, LIT("lo\r\n"));
    assert_int_equal(cl.messages, N + 1);
    assert_int_equal(cl.conn.out.len, want.len + 11);
    assert_memory_equal(buf_head(&cl.conn.out) + want.len, "$5\r\nhello\r\n", 11);
    assert_int_equal(cl.conn.closes, 0);
    fh_client_close(&cl);

    /* Cut in two at every place. */
    for (size_t cut = 0; cut <= 200; cut++) {
        fh_client_open(&cl, &resp_plugin, in);
        fh_client_feed(&cl, buf_head(&req), cut);
        fh_client_feed(&cl, buf_head(&req) + cut, req.len - cut);
        assert_int_equal(cl.messages, N);
        assert_output(&cl, buf_head(&want), want.len);
        fh_client_close(&cl);
    }
    buf_free(&req);
    buf_free(&want);
    resp_plugin.fini(in);
}

/* Bulk strings are binary-safe: NUL, CR, LF, '*' and '$' inside. */
static void test_binary_bulk(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    uint8_t body[256 + 12];
    for (int i = 0; i < 256; i++)
        body[i] = (uint8_t)i;
    memcpy(body + 256, "\r\n*1\r\n$4\r\n\r\n", 12);
    buf req = {0}, want = {0};
    char head[32];
    int hn = snprintf(head, sizeof head, "$%zu\r\n", sizeof body);
    assert_int_equal(buf_append(&req, LIT("*2\r\n$4\r\nECHO\r\n")), 0);
    assert_int_equal(buf_append(&req, head, (size_t)hn), 0);
    assert_int_equal(buf_append(&req, body, sizeof body), 0);
    assert_int_equal(buf_append(&req, LIT("\r\n")), 0);
    assert_int_equal(buf_append(&want, head, (size_t)hn), 0);
    assert_int_equal(buf_append(&want, body, sizeof body), 0);
    assert_int_equal(buf_append(&want, LIT("\r\n")), 0);
    every_split(in, buf_head(&req), req.len, buf_head(&want), want.len, 0, 1);
    buf_free(&req);
    buf_free(&want);

    /* A 1 MiB bulk string in irregular pieces. */
    enum { BIG = 1 << 20 };
    uint8_t *big = malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (uint8_t)(i * 7 + i / 251);
    hn = snprintf(head, sizeof head, "$%d\r\n", BIG);
    memset(&req, 0, sizeof req);
    assert_int_equal(buf_append(&req, LIT("*2\r\n$4\r\nPING\r\n")), 0);
    assert_int_equal(buf_append(&req, head, (size_t)hn), 0);
    assert_int_equal(buf_append(&req, big, BIG), 0);
    assert_int_equal(buf_append(&req, LIT("\r\n")), 0);
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, in);
    size_t pos = 0, step = 1;
    while (pos < req.len) {
        size_t n = req.len - pos < step ? req.len - pos : step;
        fh_client_feed(&cl, buf_head(&req) + pos, n);
        pos += n;
        if (pos < req.len)
            assert_int_equal(cl.conn.writes, 0);
        step = step * 5 % 40009 + 1;
    }
    assert_int_equal(cl.messages, 1);
    assert_int_equal(cl.conn.out.len, (size_t)hn + BIG + 2);
    assert_memory_equal(buf_head(&cl.conn.out), head, (size_t)hn);
    assert_memory_equal(buf_head(&cl.conn.out) + hn, big, BIG);
    fh_client_close(&cl);
    buf_free(&req);
    free(big);
    resp_plugin.fini(in);
}

/* A multibulk argument is replied from the input, where its bulk string
 * already lies: one host->write of a pointer into the request. */
static void test_reply_from_input(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    static const char req[] = "*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n";
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, in);
    size_t len = sizeof req - 1;
    assert_int_equal(resp_plugin.data_received(&cl.conn, cl.state, (const uint8_t *)req, len),
                     (ssize_t)len);
    assert_int_equal(resp_plugin.response(&cl.conn, cl.state, (const uint8_t *)req, len), 0);
    assert_int_equal(cl.conn.writes, 1);
    assert_ptr_equal(cl.conn.last_data, req + 14);
    assert_int_equal(cl.conn.last_len, 18);
    fh_client_close(&cl);
    resp_plugin.fini(in);
}

/* data_received never looks again at bytes it has parsed, nor at bulk
 * bodies: poisoning them between calls changes nothing. */
static void test_no_rescan(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    static const char *const reqs[] = {
        "*3\r\n$4\r\nECHO\r\n$10\r\n0123456789\r\n$2\r\nab\r\n",
        "ECHO a fairly long inline request, cut anywhere\r\n",
        "*2\r\n$4\r\nPING\r\n$24\r\n*1\r\n$4\r\nPING\r\n\n\n\r\r\r\n\r\n\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof reqs / sizeof reqs[0]; k++) {
        size_t len = strlen(reqs[k]);
        for (size_t step = 1; step < len; step++) {
            uint8_t *data = malloc(len);
            assert_non_null(data);
            memcpy(data, reqs[k], len);
            fh_client cl;
            fh_client_open(&cl, &resp_plugin, in);
            const resp_conn *rc = cl.state;
            ssize_t r = 0;
            for (size_t have = step; r == 0; have = have + step < len ? have + step : len) {
                r = resp_plugin.data_received(&cl.conn, cl.state, data, have);
                if (r == 0) {
                    assert_int_equal(rc->pos, have);
                    memset(data, 0xa5, have); /* '*', '$', digits: all gone */
                }
            }
            assert_int_equal(r, (ssize_t)len);
            assert_int_equal(rc->pos, 0);
            fh_client_close(&cl);
            free(data);
        }
    }
    /* A 64 MiB body announced, 1 byte at a time: each call is O(1). */
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, in);
    static const char head[] = "*2\r\n$4\r\nECHO\r\n$67108864\r\n";
    size_t hl = sizeof head - 1;
    uint8_t *data = calloc(1, hl + 4096);
    assert_non_null(data);
    memcpy(data, head, hl);
    assert_int_equal(resp_plugin.data_received(&cl.conn, cl.state, data, hl), 0);
    for (size_t have = hl + 1; have <= hl + 4096; have++)
        assert_int_equal(resp_plugin.data_received(&cl.conn, cl.state, data, have), 0);
    assert_int_equal(((const resp_conn *)cl.state)->pos, hl + 4096);
    assert_int_equal(((const resp_conn *)cl.state)->phase, RP_BODY);
    free(data);
    fh_client_close(&cl);
    resp_plugin.fini(in);
}

/* max_bulk, max_args and the inline limit, at and past the edge. */
static void test_limits(void **state)
{
    (void)state;
    const es_config_item items[] = {
        {.key = "max_bulk", .value = "16", .line = 1},
        {.key = "max_args", .value = "3", .line = 2},
    };
    void *in = fh_init_ok(&resp_plugin, items, 2);
    EXPECT(in, "*2\r\n$4\r\nECHO\r\n$16\r\n0123456789abcdef\r\n",
           "$16\r\n0123456789abcdef\r\n", 0);
    EXPECT(in, "*2\r\n$4\r\nECHO\r\n$17\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*2\r\n$4\r\nECHO\r\n$160\r\n", PROTO("invalid bulk length"), 1);
    EXPECT(in, "*3\r\n$4\r\nECHO\r\n$1\r\na\r\n$1\r\nb\r\n",
           "-ERR wrong number of arguments for 'echo' command\r\n", 0);
    EXPECT(in, "*4\r\n", PROTO("invalid multibulk length"), 1);
    EXPECT(in, "*30\r\n", PROTO("invalid multibulk length"), 1);
    /* Inline requests are not bounded by max_args or max_bulk. */
    EXPECT(in, "ECHO 0123456789abcdefghij\r\n", "$20\r\n0123456789abcdefghij\r\n", 0);
    EXPECT(in, "x 1 2 3 4\r\n",
           "-ERR unknown command 'x', with args beginning with: '1' '2' '3' '4' \r\n", 0);
    resp_plugin.fini(in);

    in = fh_init_ok(&resp_plugin, NULL, 0);
    /* An inline line of RESP_INLINE_MAX bytes, '\n' included, is served. */
    size_t max = RESP_INLINE_MAX;
    char *line = malloc(max + 2);
    assert_non_null(line);
    memcpy(line, "ECHO ", 5);
    memset(line + 5, 'x', max - 5);
    line[max - 2] = '\r';
    line[max - 1] = '\n';
    fh_client cl;
    fh_client_open(&cl, &resp_plugin, in);
    fh_client_feed(&cl, line, max);
    assert_int_equal(cl.messages, 1);
    assert_int_equal(cl.conn.closes, 0);
    char head[32];
    int hn = snprintf(head, sizeof head, "$%zu\r\n", max - 7);
    assert_int_equal(cl.conn.out.len, (size_t)hn + max - 7 + 2);
    assert_memory_equal(buf_head(&cl.conn.out), head, (size_t)hn);
    fh_client_close(&cl);
    /* One more byte is too big, found with or without its '\n'. */
    line[max - 1] = 'x';
    line[max] = '\r';
    line[max + 1] = '\n';
    expect(in, line, max + 2, LIT(PROTO("too big inline request")), 1);
    fh_client_open(&cl, &resp_plugin, in);
    fh_client_feed(&cl, line, max);
    assert_int_equal(cl.conn.writes, 0); /* RESP_INLINE_MAX bytes, no '\n': waiting */
    fh_client_feed(&cl, "x", 1);
    assert_output(&cl, LIT(PROTO("too big inline request")));
    assert_closed_last(&cl);
    fh_client_close(&cl);
    free(line);
    resp_plugin.fini(in);
}

static void test_write_failure(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    static const char *const reqs[] = {"PING\r\n", "ECHO x\r\n", "*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n",
                                       "foo\r\n", "ECHO\r\n", "*x\r\n", "ECHO \"\r\n"};
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        fh_client cl;
        fh_client_open(&cl, &resp_plugin, in);
        cl.conn.fail_write = 1;
        size_t len = strlen(reqs[i]);
        ssize_t m = resp_plugin.data_received(&cl.conn, cl.state, (const uint8_t *)reqs[i], len);
        assert_true(m > 0);
        assert_int_equal(resp_plugin.response(&cl.conn, cl.state, (const uint8_t *)reqs[i],
                                              (size_t)m), -1);
        assert_true(cl.conn.writes >= 1);
        fh_client_close(&cl);
    }
    resp_plugin.fini(in);
}

/* Connections parse apart, and so do two instances with other limits. */
static void test_state_isolation(void **state)
{
    (void)state;
    void *in = fh_init_ok(&resp_plugin, NULL, 0);
    const es_config_item items[] = {{.key = "max_bulk", .value = "2", .line = 1}};
    void *small = fh_init_ok(&resp_plugin, items, 1);
    fh_client a, b, s;
    fh_client_open(&a, &resp_plugin, in);
    fh_client_open(&b, &resp_plugin, in);
    fh_client_open(&s, &resp_plugin, small);
    fh_client_feed(&a, LIT("*2\r\n$4\r\nECHO\r\n$3\r"));
    fh_client_feed(&b, LIT("ECHO b"));
    fh_client_feed(&s, LIT("*2\r\n$4\r\nECHO\r\n$3\r"));
    fh_client_feed(&a, LIT("\nabc\r\n"));
    fh_client_feed(&b, LIT("bb\r\n"));
    assert_output(&a, LIT("$3\r\nabc\r\n"));
    assert_output(&b, LIT("$3\r\nbbb\r\n"));
    assert_output(&s, LIT(PROTO("invalid bulk length")));
    assert_int_equal(s.conn.closes, 1);
    assert_int_equal(a.conn.closes, 0);
    fh_client_close(&a);
    fh_client_close(&b);
    fh_client_close(&s);
    resp_plugin.fini(small);
    resp_plugin.fini(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init_defaults),
        cmocka_unit_test(test_init_options),
        cmocka_unit_test(test_init_bad_values),
        cmocka_unit_test(test_init_unknown_key),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_empty_requests),
        cmocka_unit_test(test_inline_splitting),
        cmocka_unit_test(test_unknown_command),
        cmocka_unit_test(test_wrong_arity),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_protocol_error_early),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_binary_bulk),
        cmocka_unit_test(test_reply_from_input),
        cmocka_unit_test(test_no_rescan),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_write_failure),
        cmocka_unit_test(test_state_isolation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

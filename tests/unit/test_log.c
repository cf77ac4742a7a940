/* test_log.c - unit tests of the log line format (server/log.c): key=value, one line per event. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs fn with stderr sent to a pipe and returns what it wrote (caller frees). */
static char *capture(void (*fn)(void))
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *out = calloc(1, 65536);
    assert_non_null(out);
    size_t n = 0;
    ssize_t r;
    while (n < 65535 && (r = read(p[0], out + n, 65535 - n)) > 0)
        n += (size_t)r;
    close(p[0]);
    return out;
}

static void emit_plain(void)
{
    log_threshold = ES_LOG_INFO;
    log_msg(ES_LOG_INFO, "listening on %s (listener %s)", "127.0.0.1:8060", "a");
}

static void test_line_shape(void **state)
{
    (void)state;
    char *out = capture(emit_plain);
    /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ level=info msg="..." */
    assert_int_equal(strncmp(out, "ts=", 3), 0);
    assert_true(strlen(out) > 28);
    assert_int_equal(out[7], '-');
    assert_int_equal(out[13], 'T');
    assert_int_equal(out[26], 'Z');
    assert_string_equal(out + 27,
                        " level=info msg=\"listening on 127.0.0.1:8060 (listener a)\"\n");
    free(out);
}

static void emit_escaped(void)
{
    log_threshold = ES_LOG_INFO;
    log_fields(ES_LOG_WARN, "peer=[::1]:5 listener=x", "say \"hi\"\\\nnext\tline\r\x01\x7f end");
}

/* Quotes, backslashes and control bytes are escaped: one event, one line. */
static void test_escaping(void **state)
{
    (void)state;
    char *out = capture(emit_escaped);
    const char *msg = strstr(out, " level=warn msg=");
    assert_non_null(msg);
    assert_string_equal(msg, " level=warn msg=\"say \\\"hi\\\"\\\\\\nnext\\tline\\r\\x01\\x7f end\" "
                             "peer=[::1]:5 listener=x\n");
    assert_int_equal(strchr(out, '\n') - out, (long)strlen(out) - 1);
    free(out);
}

static void emit_levels(void)
{
    log_threshold = ES_LOG_WARN;
    log_msg(ES_LOG_ERROR, "e");
    log_msg(ES_LOG_WARN, "w");
    log_msg(ES_LOG_INFO, "i");
    log_debug("d");
    log_msg(ES_LOG_INFO | LOG_ALWAYS, "always");
    log_threshold = ES_LOG_INFO;
}

/* The threshold drops what is more verbose; LOG_ALWAYS passes whatever it is. */
static void test_threshold(void **state)
{
    (void)state;
    char *out = capture(emit_levels);
    assert_non_null(strstr(out, "level=error msg=\"e\"\n"));
    assert_non_null(strstr(out, "level=warn msg=\"w\"\n"));
    assert_null(strstr(out, "msg=\"i\""));
    assert_null(strstr(out, "msg=\"d\""));
    assert_non_null(strstr(out, "level=info msg=\"always\"\n"));
    free(out);
}

static void emit_long(void)
{
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_fields(ES_LOG_ERROR, "peer=p", "%s", big);
}

/* A message too long for a line is cut, and the line still ends. */
static void test_long_message(void **state)
{
    (void)state;
    char *out = capture(emit_long);
    size_t n = strlen(out);
    assert_true(n > 1000 && n <= 2048);
    assert_int_equal(out[n - 1], '\n');
    assert_int_equal(strchr(out, '\n') - out, (long)n - 1);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_shape),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_threshold),
        cmocka_unit_test(test_long_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_privs.c - unit tests of the decision to run as root or not (server/privs.c). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "privs.h"

#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        if (strstr((hay), (needle)) == NULL)                                   \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));           \
    } while (0)

/* Loads text as the configuration file "test.ini" (from memory). */
static void load(config *cfg, const char *text)
{
    FILE *fp = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(fp);
    char err[512] = "";
    int rc = config_load_stream(cfg, fp, "test.ini", err, sizeof err);
    fclose(fp);
    if (rc != 0)
        fail_msg("config_load_stream: %s", err);
}

/* Runs privs_check with stderr captured: returns its result, the error in
 * err and what it logged in logged. */
static int check(const config *cfg, uid_t euid, int allow_root, char *err, size_t errlen,
                 char *logged, size_t loglen)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), 2) == 2);
    err[0] = '\0';
    int rc = privs_check(cfg, euid, allow_root, err, errlen);
    fflush(stderr);
    assert_true(dup2(saved, 2) == 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(logged, 1, loglen - 1, tmp);
    logged[n] = '\0';
    fclose(tmp);
    return rc;
}

/* Root with no user: refused with how to fix it, unless --allow-root,
 * which warns. */
static void test_root_without_user(void **state)
{
    (void)state;
    config cfg;
    char err[512], logged[1024];
    load(&cfg, "[server]\nbind = :1\n");
    assert_int_equal(check(&cfg, 0, 0, err, sizeof err, logged, sizeof logged), -1);
    assert_contains(err, "test.ini: ");
    assert_contains(err, "refusing to run as root");
    assert_contains(err, "user = NAME");
    assert_contains(err, "--allow-root");

    assert_int_equal(check(&cfg, 0, 1, err, sizeof err, logged, sizeof logged), 0);
    assert_string_equal(err, "");
    assert_contains(logged, "level=warn msg=\"running as root (--allow-root)");
    config_free(&cfg);
}

/* Root with a user: no complaint, --allow-root or not. */
static void test_root_with_user(void **state)
{
    (void)state;
    config cfg;
    char err[512], logged[1024];
    load(&cfg, "[server]\nuser = nobody\n");
    for (int allow = 0; allow < 2; allow++) {
        assert_int_equal(check(&cfg, 0, allow, err, sizeof err, logged, sizeof logged), 0);
        assert_string_equal(logged, "");
    }
    config_free(&cfg);
}

/* Not root: user cannot be applied and is ignored with a warning naming the
 * key's line, unless it is the user already; no user, no word. */
static void test_not_root(void **state)
{
    (void)state;
    config cfg;
    char err[512], logged[1024];
    load(&cfg, "[server]\n\nuser = nobody\ngroup = nogroup\n");
    assert_int_equal(check(&cfg, 4242, 0, err, sizeof err, logged, sizeof logged), 0);
    assert_contains(logged, "level=warn msg=\"test.ini:3: user = nobody, group = nogroup ignored");
    assert_contains(logged, "uid 4242");

    const struct passwd *pw = getpwnam("nobody");
    assert_non_null(pw);
    assert_int_equal(check(&cfg, pw->pw_uid, 0, err, sizeof err, logged, sizeof logged), 0);
    assert_string_equal(logged, "");
    config_free(&cfg);

    load(&cfg, "[server]\n");
    for (int allow = 0; allow < 2; allow++) {
        assert_int_equal(check(&cfg, 4242, allow, err, sizeof err, logged, sizeof logged), 0);
        assert_string_equal(logged, "");
    }
    config_free(&cfg);
}

/* privs_drop does nothing without a user (whoever runs the test). */
static void test_drop_without_user(void **state)
{
    (void)state;
    config cfg;
    char err[512] = "";
    load(&cfg, "[server]\n");
    uid_t before = geteuid();
    assert_int_equal(privs_drop(&cfg, NULL, 0, err, sizeof err), 0);
    assert_int_equal(geteuid(), before);
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root_without_user),
        cmocka_unit_test(test_root_with_user),
        cmocka_unit_test(test_not_root),
        cmocka_unit_test(test_drop_without_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

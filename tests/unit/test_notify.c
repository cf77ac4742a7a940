/* test_notify.c - unit tests of the service manager notifications (server/notify.c). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"

static void test_parse(void **state)
{
    (void)state;
    struct sockaddr_un sun;
    socklen_t len;
    assert_int_equal(notify_parse("/run/systemd/notify", &sun, &len), 0);
    assert_string_equal(sun.sun_path, "/run/systemd/notify");
    assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
    /* Abstract: a leading NUL, the name's bytes, no terminator counted. */
    assert_int_equal(notify_parse("@sd-notify", &sun, &len), 0);
    assert_int_equal(sun.sun_path[0], '\0');
    assert_memory_equal(sun.sun_path + 1, "sd-notify", 9);
    assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 10);
    assert_int_equal(notify_parse("relative/notify", &sun, &len), -1);
    assert_int_equal(notify_parse("", &sun, &len), -1);
    assert_int_equal(notify_parse("@", &sun, &len), -1);
    assert_int_equal(notify_parse("vsock:2:1234", &sun, &len), -1);
    assert_int_equal(notify_parse(NULL, &sun, &len), -1);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    assert_int_equal(notify_parse(longp, &sun, &len), -1);
}

/* Receives one datagram within a second into buf (NUL-terminated). */
static void recv_one(int fd, char *buf, size_t cap)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 1000), 1);
    ssize_t n = recv(fd, buf, cap - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
}

/* The messages as a manager receives them; NOTIFY_SOCKET leaves the environment; a status
 * with newlines stays one assignment; MAINPID= only with the first READY=1. */
static void test_messages(void **state)
{
    (void)state;
    char dir[] = "/tmp/echosrv-notify.XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s/n.sock", dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);

    assert_int_equal(notify_ready("not yet"), 0); /* off: nothing sent, no error */
    setenv("NOTIFY_SOCKET", sun.sun_path, 1);
    notify_init();
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_true(notify_enabled());

    char buf[4096], want[128];
    assert_int_equal(notify_ready("serving %d\nREADY=0", 2), 0);
    recv_one(fd, buf, sizeof buf);
    snprintf(want, sizeof want, "READY=1\nSTATUS=serving 2 READY=0\nMAINPID=%ld\n", (long)getpid());
    assert_string_equal(buf, want);
    assert_int_equal(notify_reloading("reloading"), 0);
    recv_one(fd, buf, sizeof buf);
    assert_true(strncmp(buf, "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=", 44) == 0);
    assert_int_equal(notify_ready("again"), 0);
    recv_one(fd, buf, sizeof buf);
    assert_string_equal(buf, "READY=1\nSTATUS=again\n");
    /* A long status is cut, the message still ends as it must. */
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(notify_stopping("%s", big), 0);
    recv_one(fd, buf, sizeof buf);
    assert_true(strncmp(buf, "STOPPING=1\nSTATUS=xxx", 21) == 0);
    assert_int_equal(buf[strlen(buf) - 1], '\n');
    notify_close();
    assert_false(notify_enabled());
    assert_int_equal(notify_stopping("closed"), 0);

    close(fd);
    unlink(sun.sun_path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_messages),
    };
    return cmocka_run_group_tests_name("notify", tests, NULL, NULL);
}

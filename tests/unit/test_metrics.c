/* test_metrics.c - unit tests of server/metrics.c: series across generations, sums over workers, the exposition text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "server.h"

/* A generation of n services named names[i] with plugins named plugins[i] (storage in *g's
 * arrays, which the caller frees with gen_done()). */
static void gen_make(gen *g, size_t n, const char *const names[], const char *const plugins[])
{
    memset(g, 0, sizeof *g);
    g->services = calloc(n, sizeof *g->services);
    g->plugins = calloc(n, sizeof *g->plugins);
    config_listener *cl = calloc(n, sizeof *cl);
    assert_non_null(g->services);
    assert_non_null(g->plugins);
    assert_non_null(cl);
    for (size_t i = 0; i < n; i++) {
        cl[i].name = (char *)names[i];
        g->plugins[i].hooks.name = plugins[i];
        g->services[i].cfg = &cl[i];
        g->services[i].plugin = &g->plugins[i];
    }
    g->nservices = g->nplugins = n;
}

static void gen_done(gen *g)
{
    free((void *)g->services[0].cfg);
    free(g->services);
    free(g->plugins);
}

static char *render(metrics *m)
{
    buf b = {0};
    assert_int_equal(metrics_render(m, &b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    return (char *)b.data;
}

static void has_line(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (strstr(text, want) == NULL) {
        fprintf(stderr, "# no line '%s' in:\n%s", line, text);
        fail();
    }
}

/* Counters of both workers add up per listener, per plugin and per worker; label values
 * are escaped; every family has HELP and TYPE. */
static void test_sums(void **state)
{
    (void)state;
    metrics *m = metrics_new(2);
    assert_non_null(m);
    gen g;
    const char *names[] = {"a", "b"}, *plugins[] = {"echo", "we\"ird\\"};
    gen_make(&g, 2, names, plugins);
    assert_int_equal(metrics_attach(m, &g), 0);
    metrics_publish(m);
    metrics_block *a0 = &g.services[0].stats->w[0], *a1 = &g.services[0].stats->w[1];
    metrics_block *b1 = &g.services[1].stats->w[1];
    metrics_add(&a0->opened, 3);
    metrics_closed(a0);
    metrics_add(&a0->messages, 10);
    metrics_add(&a1->opened, 1);
    metrics_add(&a1->messages, 5);
    metrics_add(&a1->bytes_in, 100);
    metrics_add(&a1->errors[ME_IDLE_TIMEOUT], 2);
    metrics_add(&b1->messages, 7);
    metrics_add(&b1->refused[MR_ACCESS], 4);
    metrics_reload(m, 1);
    metrics_reload(m, 0);
    metrics_reload(m, 0);
    char *t = render(m);
    has_line(t, "echosrv_connections_open{listener=\"a\"} 3");
    has_line(t, "echosrv_connections_total{listener=\"a\"} 4");
    has_line(t, "echosrv_messages_total{listener=\"a\"} 15");
    has_line(t, "echosrv_messages_total{listener=\"b\"} 7");
    has_line(t, "echosrv_bytes_received_total{listener=\"a\"} 100");
    has_line(t, "echosrv_errors_total{listener=\"a\",kind=\"idle_timeout\"} 2");
    has_line(t, "echosrv_connections_refused_total{listener=\"b\",reason=\"access\"} 4");
    has_line(t, "echosrv_plugin_messages_total{plugin=\"echo\"} 15");
    has_line(t, "echosrv_plugin_messages_total{plugin=\"we\\\"ird\\\\\"} 7");
    has_line(t, "echosrv_worker_connections{worker=\"0\"} 2");
    has_line(t, "echosrv_worker_connections{worker=\"1\"} 1");
    has_line(t, "echosrv_worker_messages_total{worker=\"0\"} 10");
    has_line(t, "echosrv_worker_messages_total{worker=\"1\"} 12");
    has_line(t, "echosrv_reloads_total{result=\"ok\"} 1");
    has_line(t, "echosrv_reloads_total{result=\"failed\"} 2");
    has_line(t, "# TYPE echosrv_messages_total counter");
    has_line(t, "# TYPE echosrv_connections_open gauge");
    assert_int_equal(strncmp(t, "# HELP echosrv_build_info ", 26), 0);
    free(t);
    gen_done(&g);
    metrics_free(m);
}

/* A listener that keeps its name and plugin keeps its series across generations; a new
 * one is invisible until published, and gone when discarded. */
static void test_generations(void **state)
{
    (void)state;
    metrics *m = metrics_new(1);
    assert_non_null(m);
    gen g1, g2, g3;
    const char *n1[] = {"a"}, *p1[] = {"echo"};
    gen_make(&g1, 1, n1, p1);
    assert_int_equal(metrics_attach(m, &g1), 0);
    metrics_publish(m);
    metrics_add(&g1.services[0].stats->w[0].messages, 3);

    const char *n2[] = {"a", "c"}, *p2[] = {"echo", "raw"};
    gen_make(&g2, 2, n2, p2);
    assert_int_equal(metrics_attach(m, &g2), 0);
    assert_ptr_equal(g2.services[0].stats, g1.services[0].stats);
    char *t = render(m);
    assert_null(strstr(t, "listener=\"c\""));
    free(t);
    metrics_discard(m);

    gen_make(&g3, 2, n2, p2);
    assert_int_equal(metrics_attach(m, &g3), 0);
    metrics_publish(m);
    metrics_add(&g3.services[1].stats->w[0].messages, 4);
    t = render(m);
    has_line(t, "echosrv_messages_total{listener=\"a\"} 3");
    has_line(t, "echosrv_messages_total{listener=\"c\"} 4");
    has_line(t, "echosrv_plugin_messages_total{plugin=\"raw\"} 4");
    free(t);
    gen_done(&g1);
    gen_done(&g2);
    gen_done(&g3);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums),
        cmocka_unit_test(test_generations),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}

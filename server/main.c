/* main.c - echosrv: command line, start-up, signals and orderly shutdown. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "activation.h"
#include "admin.h"
#include "config.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "privs.h"
#include "server.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/usr/local/etc"
#endif
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

#define DEFAULT_CONFIG SYSCONFDIR "/echosrv/echo.ini"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: echosrv [-t] [-c FILE] [--io BACKEND] [--allow-root]\n"
            "A multi-threaded TCP server whose protocol is a plugin.\n"
            "\n"
            "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
            "  -t, --test         check the configuration and every plugin, then exit\n"
            "      --io BACKEND   epoll, io_uring or auto: overrides [server] io\n"
            "      --allow-root   run as root when [server] sets no user (refused otherwise)\n"
            "  -h, --help         show this help and exit\n"
            "  -V, --version      show the version and exit\n"
            "\n"
            "Signals: SIGTERM or SIGINT stop gracefully (a second one stops at once);\n"
            "SIGHUP reloads the configuration without dropping a connection.\n"
            "See echosrv(8) and echosrv.ini(5).\n");
}

/* Drain: workers drop the listeners, which are then closed (new
 * connections are refused from here on). */
static void stop_accepting(server *srv)
{
    worker_stop_all(srv, 1);
    worker_wait_released(srv);
    for (size_t i = 0; i < srv->nsocks; i++)
        sock_close(srv->socks[i]);
}

/* echosrv -t: what the configuration defines, a line per listener. */
static void print_summary(const gen *g)
{
    const config *cfg = &g->cfg;
    printf("%s: configuration OK (%zu listener%s, %zu plugin%s, %ld threads, "
           "max_connections %ld in all)\n",
           cfg->path, cfg->nlisteners, cfg->nlisteners == 1 ? "" : "s", g->nplugins,
           g->nplugins == 1 ? "" : "s", cfg->threads, cfg->max_connections);
    for (size_t i = 0; i < g->nservices; i++) {
        const service *svc = &g->services[i];
        const config_listener *l = svc->cfg;
        const es_plugin *h = &svc->plugin->hooks;
        printf("  listener %s: bind %s; plugin %s %s (%s); backlog %ld, max_connections %ld, "
               "idle_timeout %ld, read_timeout %ld, max_message %zu%s%s%s%s\n",
               l->name, l->bind, h->name, h->version ? h->version : "", svc->plugin->path,
               l->backlog, l->max_connections, l->idle_timeout, l->read_timeout, l->max_message,
               svc->tls != NULL ? "; TLS " : "", svc->tls != NULL ? l->tls.cert : "",
               svc->tls == NULL ? ""
               : l->tls.verify_client == TLS_VERIFY_ON ? ", client certificates required"
               : l->tls.verify_client == TLS_VERIFY_OPTIONAL ? ", client certificates checked"
                                                             : "",
               l->proxy.on ? "; PROXY protocol from proxy_allow" : "");
    }
    char who[256];
    privs_describe(cfg, who, sizeof who);
    printf("  privileges: %s\n", who);
}

/* The "listening on" line of every listener of g (whatever the log level:
 * scripts wait for them). */
static void log_listening(const gen *g)
{
    for (size_t i = 0; i < g->nlisteners; i++) {
        const listener *l = &g->listeners[i];
        log_msg(ES_LOG_INFO | LOG_ALWAYS, "listening on %s (listener %s, plugin %s%s%s)",
                l->name, l->svc->cfg->name, l->hooks->name, l->tls != NULL ? ", TLS" : "",
                l->svc->cfg->proxy.on ? ", PROXY protocol" : "");
    }
}

/* Free the generations the workers have let go. Main thread. */
static void reap(server *srv)
{
    pthread_mutex_lock(&srv->lock);
    gen *dead = srv->dead;
    srv->dead = NULL;
    pthread_mutex_unlock(&srv->lock);
    while (dead != NULL) {
        gen *next = dead->next;
        for (gen **p = &srv->all; *p != NULL; p = &(*p)->older) {
            if (*p == dead) {
                *p = dead->older;
                break;
            }
        }
        log_info("configuration generation %u: its last connection closed: unloaded", dead->id);
        gen_free(srv, dead);
        dead = next;
    }
}

/* SIGHUP: load the file again as a new generation, bind what it adds, hand
 * it to the workers, close what it no longer binds. Connections carry on
 * under the generation that accepted them. A bad file changes nothing.
 * Main thread. */
static void reload(server *srv)
{
    char err[1024];
    gen *old = atomic_load(&srv->gen);
    log_info("SIGHUP: reloading %s", srv->config_path);
    notify_reloading("reloading %s", srv->config_path);
    gen *g = gen_load(srv, err, sizeof err);
    if (g == NULL) {
        log_error("reload refused: %s: still serving the previous configuration", err);
        notify_ready("reload refused: %s: serving generation %u", err, old->id);
        metrics_reload(srv->metrics, 0);
        return;
    }
    if (metrics_attach(srv->metrics, g) < 0) {
        snprintf(err, sizeof err, "%s: out of memory", srv->config_path);
        goto refused;
    }
    if (admin_prepare(srv->admin, &g->cfg, 1, err, sizeof err) < 0)
        goto refused;
    if (gen_bind(srv, g, err, sizeof err) < 0) {
        admin_abort(srv->admin);
        goto refused;
    }
    const config *oc = &old->cfg, *nc = &g->cfg;
    if ((oc->user == NULL) != (nc->user == NULL) || (oc->user && strcmp(oc->user, nc->user)) ||
        (oc->group == NULL) != (nc->group == NULL) || (oc->group && strcmp(oc->group, nc->group)))
        log_warn("reload: user and group take effect at the next start");
    if (g->cfg.threads != srv->nworkers)
        log_warn("reload: threads = %ld takes effect at the next start; %d worker threads "
                 "keep running", g->cfg.threads, srv->nworkers);
    if (nc->io != oc->io && srv->io_override < 0)
        log_warn("reload: io takes effect at the next start; the workers keep using %s",
                 srv->io == IO_URING ? "io_uring" : "epoll");
    log_threshold = g->cfg.log_level;
    log_set_target(g->cfg.log_target);
    g->older = srv->all;
    srv->all = g;
    metrics_publish(srv->metrics);
    worker_switch_all(srv, g);
    gen_close_unused_socks(srv);
    srv->next_gen++;
    log_listening(g);
    admin_commit(srv->admin);
    metrics_reload(srv->metrics, 1);
    log_msg(ES_LOG_INFO | LOG_ALWAYS, "configuration reloaded (generation %u, %zu listener%s)",
            g->id, g->nservices, g->nservices == 1 ? "" : "s");
    notify_ready("serving %zu address%s (generation %u)", g->nlisteners,
                 g->nlisteners == 1 ? "" : "es", g->id);
    if (atomic_fetch_sub(&old->refs, 1) == 1) {
        /* No connection of it was left anywhere. */
        pthread_mutex_lock(&srv->lock);
        old->next = srv->dead;
        srv->dead = old;
        pthread_mutex_unlock(&srv->lock);
        reap(srv);
    }
    return;
refused:
    log_error("reload refused: %s: still serving the previous configuration", err);
    notify_ready("reload refused: %s: serving generation %u", err, old->id);
    metrics_discard(srv->metrics);
    gen_free(srv, g);
    metrics_reload(srv->metrics, 0);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"allow-root", no_argument, NULL, 'R'},
        {"io", required_argument, NULL, 'I'},
        {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_CONFIG;
    int test_only = 0, allow_root = 0, io = -1, opt;
    while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': test_only = 1; break;
        case 'R': allow_root = 1; break;
        case 'I':
            if (config_parse_io(optarg, &io) < 0) {
                fprintf(stderr, "echosrv: --io: '%s' is not epoll, io_uring or auto\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("echosrv %s (plugin ABI %d.%d)\n", PACKAGE_VERSION,
                         ES_PLUGIN_ABI_MAJOR, ES_PLUGIN_ABI_MINOR);
                  return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "echosrv: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    char err[1024];
    int status = 1;
    server srv;
    memset(&srv, 0, sizeof srv);
    srv.config_path = path;
    srv.allow_root = allow_root;
    srv.io_override = io;
    srv.donefd = srv.reapfd = -1;
    int sfd = -1;
    conn_host_init(&srv.host);
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.cond, NULL);
    /* systemd: before anything else opens an fd or starts a thread, and
     * while the notify socket's path is reachable (before privs_drop()). */
    if (!test_only) {
        notify_init();
        if (activation_take(&srv, err, sizeof err) < 0) {
            fprintf(stderr, "echosrv: %s\n", err);
            goto out;
        }
    }
    gen *g = gen_load(&srv, err, sizeof err);
    if (g == NULL) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    srv.next_gen++;
    g->older = srv.all;
    srv.all = g;
    atomic_store(&g->refs, 1);
    atomic_store(&srv.gen, g);
    /* Counters and the [admin] listener (checked only, with -t). */
    srv.metrics = metrics_new((int)g->cfg.threads);
    srv.admin = admin_new(&srv);
    if (srv.metrics == NULL || srv.admin == NULL || metrics_attach(srv.metrics, g) < 0) {
        fprintf(stderr, "echosrv: out of memory\n");
        goto out;
    }
    metrics_publish(srv.metrics);
    if (admin_prepare(srv.admin, &g->cfg, !test_only, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    if (test_only) {
        print_summary(g);
        status = 0;
        goto out;
    }

    /* Signals are taken from a signalfd; block them before any worker
     * exists so that every thread inherits the mask. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    srv.donefd = eventfd(0, EFD_CLOEXEC);
    srv.reapfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sfd < 0 || srv.donefd < 0 || srv.reapfd < 0) {
        fprintf(stderr, "echosrv: signalfd/eventfd: %s\n", strerror(errno));
        goto out;
    }
    if (gen_bind(&srv, g, err, sizeof err) < 0) {
        fprintf(stderr, "echosrv: %s\n", err);
        goto out;
    }
    /* Everything that needs the starting user's rights is done: sockets
     * bound, plugins initialised. Workers start as the configured user. */
    if (privs_drop(&g->cfg, srv.socks, srv.nsocks, err, sizeof err) < 0) {
        fprintf(stderr, "echosrv: %s\n", err);
        goto out;
    }
    if (worker_start_all(&srv, err, sizeof err) < 0) {
        fprintf(stderr, "echosrv: %s\n", err);
        goto out;
    }
    char plugins[512] = "";
    size_t plen = 0;
    for (size_t i = 0; i < g->nplugins && plen < sizeof plugins; i++)
        plen += (size_t)snprintf(plugins + plen, sizeof plugins - plen, "%s%s %s",
                                 i ? ", " : "", g->plugins[i].hooks.name,
                                 g->plugins[i].hooks.version ? g->plugins[i].hooks.version : "");
    log_info("echosrv %s: plugin%s %s, %d worker threads", PACKAGE_VERSION,
             g->nplugins == 1 ? "" : "s", plugins, srv.nworkers);
    log_listening(g);
    admin_commit(srv.admin);
    notify_ready("serving %zu address%s (generation %u)", g->nlisteners,
                 g->nlisteners == 1 ? "" : "es", g->id);

    /* Signals, generations to free and worker exits, until every worker
     * has ended. The first SIGTERM/SIGINT drains, a second closes
     * everything at once; SIGHUP reloads. */
    int level = 0, failed = 0;
    for (int done = 0; done < srv.nworkers;) {
        struct pollfd pfd[3] = {{.fd = sfd, .events = POLLIN},
                                {.fd = srv.donefd, .events = POLLIN},
                                {.fd = srv.reapfd, .events = POLLIN}};
        if (poll(pfd, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s: stopping", strerror(errno));
            failed = 1;
            break;
        }
        struct signalfd_siginfo si;
        if ((pfd[0].revents & POLLIN) && read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            long grace = atomic_load(&srv.gen)->cfg.shutdown_timeout;
            if (si.ssi_signo == SIGHUP) {
                if (level == 0)
                    reload(&srv);
                else
                    log_warn("SIGHUP while shutting down: ignored");
            } else if (level++ == 0) {
                /* Stopped first, then said: whoever reads the line finds
                 * /healthz answering 503 already. */
                stop_accepting(&srv);
                log_info("%s: shutting down (up to %ld s for replies in flight)",
                         strsignal((int)si.ssi_signo), grace);
                notify_stopping("shutting down (%s)", strsignal((int)si.ssi_signo));
            } else {
                log_warn("%s again: closing every connection now", strsignal((int)si.ssi_signo));
                worker_stop_all(&srv, 2);
            }
        }
        uint64_t v;
        if ((pfd[2].revents & POLLIN) && read(srv.reapfd, &v, sizeof v) == (ssize_t)sizeof v)
            reap(&srv);
        if ((pfd[1].revents & POLLIN) && read(srv.donefd, &v, sizeof v) == (ssize_t)sizeof v) {
            done += (int)v;
            if (level == 0) {
                log_error("a worker thread stopped unexpectedly: shutting down");
                notify_stopping("a worker thread stopped unexpectedly");
                failed = 1;
                level = 1;
                stop_accepting(&srv);
            }
        }
    }
    status = failed;
out:
    admin_free(srv.admin);
    if (srv.workers != NULL) {
        worker_stop_all(&srv, 2);
        worker_join_all(&srv);
    }
    /* Every worker is gone: whatever generation is left has no connection. */
    reap(&srv);
    while (srv.all != NULL) {
        gen *older = srv.all->older;
        gen_free(&srv, srv.all);
        srv.all = older;
    }
    gen_cleanup(&srv);
    if (sfd >= 0)
        close(sfd);
    if (srv.donefd >= 0)
        close(srv.donefd);
    if (srv.reapfd >= 0)
        close(srv.reapfd);
    metrics_free(srv.metrics);
    pthread_mutex_destroy(&srv.lock);
    pthread_cond_destroy(&srv.cond);
    notify_close();
    if (status == 0 && !test_only)
        log_info("stopped");
    return status;
}

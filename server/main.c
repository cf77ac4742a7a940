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

#include "config.h"
#include "loader.h"
#include "log.h"
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
            "Usage: echosrv [-t] [-c FILE]\n"
            "A multi-threaded TCP server whose protocol is a plugin.\n"
            "\n"
            "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
            "  -t, --test         check the configuration and the plugin, then exit\n"
            "  -h, --help         show this help and exit\n"
            "  -V, --version      show the version and exit\n"
            "\n"
            "Signals: SIGTERM or SIGINT stop gracefully (a second one stops at once).\n"
            "See echosrv(8) and echosrv.ini(5).\n");
}

/* Prefix a plugin-related error with the file and line it comes from. */
static void print_at(const config *cfg, int line, const char *msg)
{
    if (line > 0)
        fprintf(stderr, "%s:%d: %s\n", cfg->path, line, msg);
    else
        fprintf(stderr, "%s: %s\n", cfg->path, msg);
}

/* Drain: workers drop the listeners, which are then closed (new
 * connections are refused from here on). */
static void stop_accepting(server *srv)
{
    worker_stop_all(srv, 1);
    worker_wait_released(srv);
    for (size_t i = 0; i < srv->nlisteners; i++)
        listener_close(&srv->listeners[i]);
}

static int load_plugin(const config *cfg, plugin *p, const es_host *host)
{
    char err[1024];
    if (loader_open(p, cfg->plugin_path, err, sizeof err) < 0) {
        print_at(cfg, cfg->plugin_line, err);
        return -1;
    }
    if (config_check_sections(cfg, p->hooks.name, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        loader_close(p);
        return -1;
    }
    const config_section *sec = config_section_find(cfg, p->hooks.name);
    es_config pc = {.items = sec ? sec->items : NULL, .count = sec ? sec->count : 0};
    es_error e;
    if (loader_init(p, host, &pc, &e) < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "plugin %s: %s", p->hooks.name, e.msg);
        print_at(cfg, e.item >= 0 ? pc.items[e.item].line : (sec ? sec->line : cfg->plugin_line),
                 msg);
        loader_close(p);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_CONFIG;
    int test_only = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': test_only = 1; break;
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

    config cfg;
    char err[1024];
    int status = 1;
    plugin p;
    server srv;
    memset(&srv, 0, sizeof srv);
    srv.donefd = -1;
    int plugin_loaded = 0, sfd = -1;
    if (config_load(&cfg, path, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        config_free(&cfg);
        return 1;
    }
    log_threshold = cfg.log_level;
    srv.cfg = &cfg;
    srv.plugin = &p;
    conn_host_init(&srv.host);
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.cond, NULL);
    if (load_plugin(&cfg, &p, &srv.host) < 0)
        goto out;
    plugin_loaded = 1;
    if (test_only) {
        printf("%s: configuration OK (plugin %s %s, %zu listener%s, %ld threads)\n", cfg.path,
               p.hooks.name, p.hooks.version ? p.hooks.version : "", cfg.nbinds,
               cfg.nbinds == 1 ? "" : "s", cfg.threads);
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
    if (sfd < 0 || srv.donefd < 0) {
        fprintf(stderr, "echosrv: signalfd/eventfd: %s\n", strerror(errno));
        goto out;
    }
    srv.listeners = calloc(cfg.nbinds, sizeof *srv.listeners);
    if (srv.listeners == NULL) {
        fprintf(stderr, "echosrv: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < cfg.nbinds; i++) {
        if (listener_open(&srv.listeners[i], &cfg.binds[i], (int)cfg.backlog, err, sizeof err) < 0) {
            fprintf(stderr, "echosrv: %s\n", err);
            goto out;
        }
        srv.nlisteners = i + 1;
    }
    if (worker_start_all(&srv, err, sizeof err) < 0) {
        fprintf(stderr, "echosrv: %s\n", err);
        goto out;
    }
    log_info("echosrv %s: plugin %s %s, %d worker threads", PACKAGE_VERSION, p.hooks.name,
             p.hooks.version ? p.hooks.version : "", srv.nworkers);
    for (size_t i = 0; i < srv.nlisteners; i++)
        log_msg(ES_LOG_INFO | LOG_ALWAYS, "listening on %s", srv.listeners[i].name);

    /* Signals and worker exits, until every worker has ended. The first
     * SIGTERM/SIGINT drains, a second closes everything at once. */
    int level = 0, failed = 0;
    for (int done = 0; done < srv.nworkers;) {
        struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN}, {.fd = srv.donefd, .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s: stopping", strerror(errno));
            failed = 1;
            break;
        }
        struct signalfd_siginfo si;
        if ((pfd[0].revents & POLLIN) && read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            if (si.ssi_signo == SIGHUP) {
                log_warn("SIGHUP: configuration reload is not supported yet; ignored");
            } else if (level++ == 0) {
                log_info("%s: shutting down (up to %ld s for replies in flight)",
                         strsignal((int)si.ssi_signo), cfg.shutdown_timeout);
                stop_accepting(&srv);
            } else {
                log_warn("%s again: closing every connection now", strsignal((int)si.ssi_signo));
                worker_stop_all(&srv, 2);
            }
        }
        uint64_t v;
        if ((pfd[1].revents & POLLIN) && read(srv.donefd, &v, sizeof v) == (ssize_t)sizeof v) {
            done += (int)v;
            if (level == 0) {
                log_error("a worker thread stopped unexpectedly: shutting down");
                failed = 1;
                level = 1;
                stop_accepting(&srv);
            }
        }
    }
    status = failed;
out:
    if (srv.workers != NULL) {
        worker_stop_all(&srv, 2);
        worker_join_all(&srv);
    }
    for (size_t i = 0; i < srv.nlisteners; i++)
        listener_close(&srv.listeners[i]);
    free(srv.listeners);
    if (plugin_loaded)
        loader_close(&p);
    if (sfd >= 0)
        close(sfd);
    if (srv.donefd >= 0)
        close(srv.donefd);
    pthread_mutex_destroy(&srv.lock);
    pthread_cond_destroy(&srv.cond);
    if (status == 0 && !test_only)
        log_info("stopped");
    config_free(&cfg);
    return status;
}

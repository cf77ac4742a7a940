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
            "Usage: echosrv [-t] [-c FILE] [--allow-root]\n"
            "A multi-threaded TCP server whose protocol is a plugin.\n"
            "\n"
            "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
            "  -t, --test         check the configuration and every plugin, then exit\n"
            "      --allow-root   run as root when [server] sets no user (refused otherwise)\n"
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

/* The plugin a listener uses: its entry in srv->plugins, loaded (dlopen,
 * descriptor checks) unless a listener before it uses the same file. files
 * holds the identity of each loaded file (its real path). Returns the
 * plugin, or NULL after printing the error. */
static plugin *plugin_for(server *srv, char **files, const config_listener *l)
{
    const config *cfg = srv->cfg;
    char err[1024];
    char *file = realpath(l->plugin_path, NULL);
    if (file == NULL)
        file = strdup(l->plugin_path);
    if (file == NULL) {
        fprintf(stderr, "echosrv: out of memory\n");
        return NULL;
    }
    for (size_t i = 0; i < srv->nplugins; i++) {
        if (strcmp(files[i], file) == 0) {
            free(file);
            return &srv->plugins[i];
        }
    }
    plugin *p = &srv->plugins[srv->nplugins];
    if (loader_open(p, l->plugin_path, err, sizeof err) < 0) {
        print_at(cfg, l->plugin_line, err);
        free(file);
        return NULL;
    }
    for (size_t i = 0; i < srv->nplugins; i++) {
        if (strcmp(srv->plugins[i].hooks.name, p->hooks.name) == 0) {
            /* Both would read the same section: refuse the ambiguity. */
            snprintf(err, sizeof err, "plugin %s: named '%s' like %s, a different file",
                     l->plugin_path, p->hooks.name, srv->plugins[i].path);
            print_at(cfg, l->plugin_line, err);
            loader_close(p);
            free(file);
            return NULL;
        }
    }
    files[srv->nplugins++] = file;
    return p;
}

/* Load every plugin the listeners use, each distinct file once; check the
 * sections against their names; init each with its own section; set up
 * srv->services. Returns 0, or -1 after printing the error (what was
 * loaded is in srv->plugins, for loader_close). Main thread. */
static int load_plugins(server *srv)
{
    const config *cfg = srv->cfg;
    size_t n = cfg->nlisteners;
    int rc = -1;
    char err[1024];
    char **files = calloc(n, sizeof *files);
    const char **names = calloc(n, sizeof *names);
    srv->plugins = calloc(n, sizeof *srv->plugins);
    srv->services = calloc(n, sizeof *srv->services);
    if (files == NULL || names == NULL || srv->plugins == NULL || srv->services == NULL) {
        fprintf(stderr, "echosrv: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const config_listener *l = &cfg->listeners[i];
        service *svc = &srv->services[i];
        svc->cfg = l;
        svc->index = (int)i;
        svc->idle_ms = (uint64_t)l->idle_timeout * 1000u;
        svc->max_connections = l->max_connections;
        atomic_init(&svc->nconns, 0);
        svc->plugin = plugin_for(srv, files, l);
        if (svc->plugin == NULL)
            goto out;
        srv->nservices = i + 1;
    }
    for (size_t i = 0; i < srv->nplugins; i++)
        names[i] = srv->plugins[i].hooks.name;
    if (config_check_sections(cfg, names, srv->nplugins, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    for (size_t i = 0; i < srv->nplugins; i++) {
        plugin *p = &srv->plugins[i];
        const config_section *sec = config_section_find(cfg, p->hooks.name);
        es_config pc = {.items = sec ? sec->items : NULL, .count = sec ? sec->count : 0};
        es_error e;
        if (loader_init(p, &srv->host, &pc, &e) < 0) {
            int line = cfg->plugin_line;
            for (size_t j = 0; j < n; j++)
                if (srv->services[j].plugin == p) {
                    line = cfg->listeners[j].plugin_line;
                    break;
                }
            char msg[512];
            snprintf(msg, sizeof msg, "plugin %s: %s", p->hooks.name, e.msg);
            print_at(cfg, e.item >= 0 ? pc.items[e.item].line : (sec ? sec->line : line), msg);
            goto out;
        }
        /* One line per init: several listeners of one plugin share it. */
        char users[512] = "";
        size_t len = 0;
        for (size_t j = 0; j < n && len < sizeof users; j++)
            if (srv->services[j].plugin == p)
                len += (size_t)snprintf(users + len, sizeof users - len, "%s%s",
                                        len ? ", " : "", cfg->listeners[j].name);
        log_info("plugin %s %s loaded from %s, for listener%s %s", p->hooks.name,
                 p->hooks.version ? p->hooks.version : "", p->path,
                 strchr(users, ',') ? "s" : "", users);
    }
    rc = 0;
out:
    for (size_t i = 0; files != NULL && i < n; i++)
        free(files[i]);
    free(files);
    free(names);
    return rc;
}

/* echosrv -t: what the configuration defines, a line per listener. */
static void print_summary(const server *srv)
{
    const config *cfg = srv->cfg;
    printf("%s: configuration OK (%zu listener%s, %zu plugin%s, %ld threads, "
           "max_connections %ld in all)\n",
           cfg->path, cfg->nlisteners, cfg->nlisteners == 1 ? "" : "s", srv->nplugins,
           srv->nplugins == 1 ? "" : "s", cfg->threads, cfg->max_connections);
    for (size_t i = 0; i < srv->nservices; i++) {
        const service *svc = &srv->services[i];
        const config_listener *l = svc->cfg;
        const es_plugin *h = &svc->plugin->hooks;
        printf("  listener %s: bind %s; plugin %s %s (%s); backlog %ld, max_connections %ld, "
               "idle_timeout %ld, max_message %zu\n",
               l->name, l->bind, h->name, h->version ? h->version : "", svc->plugin->path,
               l->backlog, l->max_connections, l->idle_timeout, l->max_message);
    }
    char who[256];
    privs_describe(cfg, who, sizeof who);
    printf("  privileges: %s\n", who);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"allow-root", no_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_CONFIG;
    int test_only = 0, allow_root = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': test_only = 1; break;
        case 'R': allow_root = 1; break;
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
    server srv;
    memset(&srv, 0, sizeof srv);
    srv.donefd = -1;
    int sfd = -1;
    if (config_load(&cfg, path, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        config_free(&cfg);
        return 1;
    }
    log_threshold = cfg.log_level;
    srv.cfg = &cfg;
    conn_host_init(&srv.host);
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.cond, NULL);
    /* Before any plugin code runs as root. */
    if (privs_check(&cfg, geteuid(), allow_root, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    if (load_plugins(&srv) < 0)
        goto out;
    if (test_only) {
        print_summary(&srv);
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
    size_t nsockets = 0;
    for (size_t i = 0; i < cfg.nlisteners; i++)
        nsockets += cfg.listeners[i].nbinds;
    srv.listeners = calloc(nsockets, sizeof *srv.listeners);
    if (srv.listeners == NULL) {
        fprintf(stderr, "echosrv: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < srv.nservices; i++) {
        service *svc = &srv.services[i];
        const config_listener *lc = svc->cfg;
        for (size_t j = 0; j < lc->nbinds; j++) {
            listener *l = &srv.listeners[srv.nlisteners];
            if (listener_open(l, &lc->binds[j], (int)lc->backlog, lc->socket_mode, err,
                              sizeof err) < 0) {
                fprintf(stderr, "echosrv: listener %s: %s\n", lc->name, err);
                goto out;
            }
            l->svc = svc;
            l->hooks = &svc->plugin->hooks;
            l->instance = svc->plugin->instance;
            l->max_message = lc->max_message;
            srv.nlisteners++;
        }
    }
    /* Everything that needs the starting user's rights is done: listeners
     * bound, plugins initialised. Workers start as the configured user. */
    if (privs_drop(&cfg, srv.listeners, srv.nlisteners, err, sizeof err) < 0) {
        fprintf(stderr, "echosrv: %s\n", err);
        goto out;
    }
    if (worker_start_all(&srv, err, sizeof err) < 0) {
        fprintf(stderr, "echosrv: %s\n", err);
        goto out;
    }
    char plugins[512] = "";
    size_t plen = 0;
    for (size_t i = 0; i < srv.nplugins && plen < sizeof plugins; i++)
        plen += (size_t)snprintf(plugins + plen, sizeof plugins - plen, "%s%s %s",
                                 i ? ", " : "", srv.plugins[i].hooks.name,
                                 srv.plugins[i].hooks.version ? srv.plugins[i].hooks.version : "");
    log_info("echosrv %s: plugin%s %s, %d worker threads", PACKAGE_VERSION,
             srv.nplugins == 1 ? "" : "s", plugins, srv.nworkers);
    for (size_t i = 0; i < srv.nlisteners; i++) {
        const listener *l = &srv.listeners[i];
        log_msg(ES_LOG_INFO | LOG_ALWAYS, "listening on %s (listener %s, plugin %s)", l->name,
                l->svc->cfg->name, l->hooks->name);
    }

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
    /* fini for every plugin, now that no worker or connection is left. */
    for (size_t i = 0; i < srv.nplugins; i++)
        loader_close(&srv.plugins[i]);
    free(srv.plugins);
    free(srv.services);
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

/* gen.c - generations: one loading of the configuration (plugins, TLS, listeners), and reloads. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "activation.h"
#include "log.h"
#include "privs.h"
#include "server.h"

/* "FILE:LINE: msg" (or "FILE: msg" without a line) into err. */
static void fail_at(const config *cfg, int line, char *err, size_t errlen, const char *msg)
{
    if (line > 0)
        snprintf(err, errlen, "%s:%d: %s", cfg->path, line, msg);
    else
        snprintf(err, errlen, "%s: %s", cfg->path, msg);
}

static int same_file(const plugin_file *f, const struct stat *st)
{
    return f->dev == st->st_dev && f->ino == st->st_ino && f->size == st->st_size &&
           f->mtime.tv_sec == st->st_mtim.tv_sec && f->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* Copy the plugin file src to a new file in srv's private copy directory
 * (made on first use, mode 0700). Returns the copy's path (caller frees and
 * unlinks), or NULL with a message in err. */
static char *plugin_copy(server *srv, unsigned id, const char *src, char *err, size_t errlen)
{
    if (srv->copy_dir == NULL) {
        const char *tmp = getenv("TMPDIR");
        char *dir = NULL;
        if (asprintf(&dir, "%s/echosrv-plugins.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
            dir = NULL;
        if (dir == NULL || mkdtemp(dir) == NULL) {
            snprintf(err, errlen, "plugin %s: cannot make a directory for a copy: %s", src,
                     strerror(errno));
            free(dir);
            return NULL;
        }
        srv->copy_dir = dir;
    }
    const char *base = strrchr(src, '/');
    char *dst = NULL;
    if (asprintf(&dst, "%s/%u-%s", srv->copy_dir, id, base ? base + 1 : src) < 0) {
        snprintf(err, errlen, "plugin %s: out of memory", src);
        return NULL;
    }
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = in < 0 ? -1 : open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0500);
    int ok = in >= 0 && out >= 0;
    char chunk[65536];
    while (ok) {
        ssize_t n = read(in, chunk, sizeof chunk);
        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0 && write(out, chunk, (size_t)n) == n;
    }
    int e = errno;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0)
        ok = 0;
    if (!ok) {
        snprintf(err, errlen, "plugin %s: cannot copy it to %s: %s", src, dst, strerror(e));
        unlink(dst);
        free(dst);
        return NULL;
    }
    return dst;
}

/* Load the plugin file at path into p. The dynamic loader returns the code
 * it already has for a path it loaded before: a file replaced since (other
 * identity) is therefore loaded from a private copy, so that new
 * connections run the new code while old ones finish on the old. Returns 0,
 * or -1 with a message in err. */
static int plugin_load(server *srv, gen *g, plugin *p, const char *path, const char *real,
                       char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return loader_open(p, path, err, errlen); /* reports the error */
    plugin_file *f = NULL;
    for (size_t i = 0; i < srv->nfiles; i++)
        if (strcmp(srv->files[i].path, real) == 0)
            f = &srv->files[i];
    if (f == NULL) {
        plugin_file *v = realloc(srv->files, (srv->nfiles + 1) * sizeof *v);
        char *copy = strdup(real);
        if (v == NULL || copy == NULL) {
            if (v != NULL)
                srv->files = v;
            free(copy);
            snprintf(err, errlen, "plugin %s: out of memory", path);
            return -1;
        }
        srv->files = v;
        srv->files[srv->nfiles++] = (plugin_file){.path = copy, .dev = st.st_dev,
                                                  .ino = st.st_ino, .mtime = st.st_mtim,
                                                  .size = st.st_size};
        return loader_open(p, path, err, errlen);
    }
    if (same_file(f, &st))
        return loader_open(p, path, err, errlen);
    char *copy = plugin_copy(srv, g->id, real, err, errlen);
    if (copy == NULL)
        return -1;
    int rc = loader_open_from(p, path, copy, err, errlen);
    /* Mapped now (or refused): the name is no longer needed. */
    unlink(copy);
    free(copy);
    if (rc == 0)
        log_info("plugin %s: %s changed since it was first loaded: new connections run the "
                 "new file", p->hooks.name, path);
    return rc;
}

/* The plugin listener l uses in g: loaded unless a listener before it uses
 * the same file (files[] holds the real path of each loaded one). Returns
 * it, or NULL with "FILE:LINE: message" in err. */
static plugin *plugin_for(server *srv, gen *g, char **files, const config_listener *l,
                          char *err, size_t errlen)
{
    const config *cfg = &g->cfg;
    char msg[1024];
    char *file = realpath(l->plugin_path, NULL);
    if (file == NULL)
        file = strdup(l->plugin_path);
    if (file == NULL) {
        fail_at(cfg, 0, err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < g->nplugins; i++) {
        if (strcmp(files[i], file) == 0) {
            free(file);
            return &g->plugins[i];
        }
    }
    plugin *p = &g->plugins[g->nplugins];
    if (plugin_load(srv, g, p, l->plugin_path, file, msg, sizeof msg) < 0) {
        fail_at(cfg, l->plugin_line, err, errlen, msg);
        free(file);
        return NULL;
    }
    for (size_t i = 0; i < g->nplugins; i++) {
        if (strcmp(g->plugins[i].hooks.name, p->hooks.name) == 0) {
            /* Both would read the same section: refuse the ambiguity. */
            snprintf(msg, sizeof msg, "plugin %s: named '%s' like %s, a different file",
                     l->plugin_path, p->hooks.name, g->plugins[i].path);
            fail_at(cfg, l->plugin_line, err, errlen, msg);
            loader_close(p);
            free(file);
            return NULL;
        }
    }
    files[g->nplugins++] = file;
    return p;
}

/* The slot of the listener named name, made on first use. NULL when out of memory. */
static slot *slot_get(server *srv, const char *name)
{
    for (size_t i = 0; i < srv->nslots; i++)
        if (strcmp(srv->slots[i]->name, name) == 0)
            return srv->slots[i];
    slot **v = realloc(srv->slots, (srv->nslots + 1) * sizeof *v);
    if (v == NULL)
        return NULL;
    srv->slots = v;
    slot *s = calloc(1, sizeof *s);
    if (s == NULL || (s->name = strdup(name)) == NULL) {
        free(s);
        return NULL;
    }
    s->index = (int)srv->nslots;
    atomic_init(&s->nconns, 0);
    srv->slots[srv->nslots++] = s;
    return s;
}

/* Load every plugin g's listeners use, each distinct file once; check the
 * sections against their names; init each with its own section; set up the
 * services. Returns 0, or -1 with the error in err. */
static int load_plugins(server *srv, gen *g, char *err, size_t errlen)
{
    const config *cfg = &g->cfg;
    size_t n = cfg->nlisteners;
    int rc = -1;
    char msg[1024];
    char **files = calloc(n, sizeof *files);
    const char **names = calloc(n, sizeof *names);
    g->plugins = calloc(n, sizeof *g->plugins);
    g->services = calloc(n, sizeof *g->services);
    if (files == NULL || names == NULL || g->plugins == NULL || g->services == NULL) {
        fail_at(cfg, 0, err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const config_listener *l = &cfg->listeners[i];
        service *svc = &g->services[i];
        svc->cfg = l;
        svc->idle_ms = (uint64_t)l->idle_timeout * 1000u;
        svc->max_connections = l->max_connections;
        svc->slot = slot_get(srv, l->name);
        if (svc->slot == NULL) {
            fail_at(cfg, l->line, err, errlen, "out of memory");
            goto out;
        }
        svc->plugin = plugin_for(srv, g, files, l, err, errlen);
        if (svc->plugin == NULL)
            goto out;
        g->nservices = i + 1;
    }
    for (size_t i = 0; i < g->nplugins; i++)
        names[i] = g->plugins[i].hooks.name;
    if (config_check_sections(cfg, names, g->nplugins, err, errlen) < 0)
        goto out;
    for (size_t i = 0; i < g->nplugins; i++) {
        plugin *p = &g->plugins[i];
        const config_section *sec = config_section_find(cfg, p->hooks.name);
        es_config pc = {.items = sec ? sec->items : NULL, .count = sec ? sec->count : 0};
        es_error e;
        if (loader_init(p, &srv->host, &pc, &e) < 0) {
            int line = cfg->plugin_line;
            for (size_t j = 0; j < n; j++)
                if (g->services[j].plugin == p) {
                    line = cfg->listeners[j].plugin_line;
                    break;
                }
            snprintf(msg, sizeof msg, "plugin %s: %s", p->hooks.name, e.msg);
            fail_at(cfg, e.item >= 0 ? pc.items[e.item].line : (sec ? sec->line : line), err,
                    errlen, msg);
            goto out;
        }
        /* One line per init: several listeners of one plugin share it. */
        char users[512] = "";
        size_t len = 0;
        for (size_t j = 0; j < n && len < sizeof users; j++)
            if (g->services[j].plugin == p)
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

gen *gen_load(server *srv, char *err, size_t errlen)
{
    gen *g = calloc(1, sizeof *g);
    if (g == NULL) {
        snprintf(err, errlen, "%s: out of memory", srv->config_path);
        return NULL;
    }
    g->id = srv->next_gen; /* taken (next_gen moved on) once the generation is published */
    atomic_init(&g->refs, 0);
    if (config_load(&g->cfg, srv->config_path, err, errlen) < 0)
        goto fail;
    if (srv->nworkers == 0) {
        log_threshold = g->cfg.log_level; /* the first load: the level of its own messages */
        log_set_target(g->cfg.log_target);
        /* Before any plugin code runs as root. */
        if (privs_check(&g->cfg, geteuid(), srv->allow_root, err, errlen) < 0)
            goto fail;
    }
    size_t nworkers = srv->nworkers > 0 ? (size_t)srv->nworkers : (size_t)g->cfg.threads;
    g->wconns = calloc(nworkers, sizeof *g->wconns);
    if (g->wconns == NULL) {
        snprintf(err, errlen, "%s: out of memory", srv->config_path);
        goto fail;
    }
    if (load_plugins(srv, g, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < g->nservices; i++) {
        service *svc = &g->services[i];
        const config_listener *l = svc->cfg;
        if (l->tls.cert != NULL && *l->tls.cert != '\0') {
            svc->tls = tls_server_ctx(&g->cfg, l, err, errlen);
            if (svc->tls == NULL)
                goto fail;
        }
    }
    return g;
fail:
    gen_free(srv, g);
    return NULL;
}

enum { SOCK_UNUSED = 0, SOCK_KEPT = 1, SOCK_NEW = 2 };

static int port_zero(const addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_port == 0;
    if (a->ss.ss_family == AF_INET6)
        return ((const struct sockaddr_in6 *)&a->ss)->sin6_port == 0;
    return 0;
}

/* Whether the open socket s can serve address a of listener name: the same
 * address as configured or as bound; "port 0" only for the same listener,
 * whose port it keeps. */
static int sock_fits(const sock *s, const addr *a, const char *name)
{
    if (s->used != SOCK_UNUSED)
        return 0;
    if (port_zero(a))
        return addr_equal(&s->want, a) && strcmp(s->owner, name) == 0;
    return addr_equal(&s->want, a) || addr_equal(&s->a, a) || activation_fits(s, a);
}

/* Close and forget the sockets marked `used` == mark. */
static void socks_close_marked(server *srv, int mark)
{
    size_t keep = 0;
    for (size_t i = 0; i < srv->nsocks; i++) {
        sock *s = srv->socks[i];
        if (s->used == mark) {
            sock_close(s);
            free(s);
        } else {
            srv->socks[keep++] = s;
        }
    }
    srv->nsocks = keep;
}


int gen_bind(server *srv, gen *g, char *err, size_t errlen)
{
    char msg[512];
    size_t total = 0;
    for (size_t i = 0; i < g->nservices; i++)
        total += g->services[i].cfg->nbinds;
    g->listeners = calloc(total ? total : 1, sizeof *g->listeners);
    if (g->listeners == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < srv->nsocks; i++)
        srv->socks[i]->used = SOCK_UNUSED;
    for (size_t i = 0; i < g->nservices; i++) {
        service *svc = &g->services[i];
        const config_listener *lc = svc->cfg;
        for (size_t j = 0; j < lc->nbinds; j++) {
            sock *s = NULL;
            for (size_t k = 0; k < srv->nsocks && s == NULL; k++)
                if (sock_fits(srv->socks[k], &lc->binds[j], lc->name))
                    s = srv->socks[k];
            if (s != NULL) {
                if (sock_update(s, (int)lc->backlog, lc->socket_mode, msg, sizeof msg) < 0)
                    goto fail;
                if (s->inherited && s->owner[0] == '\0')
                    log_info("listener %s: %s: socket inherited from the service manager "
                             "(fd %d%s%s), not bound", lc->name, s->name, s->fd,
                             s->fdname[0] ? ", " : "", s->fdname);
                s->used = SOCK_KEPT;
            } else {
                sock **v = realloc(srv->socks, (srv->nsocks + 1) * sizeof *v);
                if (v == NULL || (s = calloc(1, sizeof *s)) == NULL) {
                    if (v != NULL)
                        srv->socks = v;
                    snprintf(msg, sizeof msg, "out of memory");
                    goto fail;
                }
                srv->socks = v;
                if (sock_open(s, &lc->binds[j], (int)lc->backlog, lc->socket_mode, msg,
                              sizeof msg) < 0) {
                    free(s);
                    goto fail;
                }
                s->used = SOCK_NEW;
                srv->socks[srv->nsocks++] = s;
            }
            snprintf(s->owner, sizeof s->owner, "%s", lc->name);
            listener *l = &g->listeners[g->nlisteners++];
            l->kind = SRC_LISTENER;
            l->fd = s->fd;
            l->svc = svc;
            l->gen = g;
            l->hooks = &svc->plugin->hooks;
            l->instance = svc->plugin->instance;
            l->max_message = lc->max_message;
            l->tls = svc->tls;
            memcpy(l->name, s->name, sizeof l->name);
        }
        continue;
    fail:
        snprintf(err, errlen, "listener %s: %s", lc->name, msg);
        socks_close_marked(srv, SOCK_NEW);
        return -1;
    }
    /* The service manager's sockets stay open whatever we do: one without
     * a listener would queue connections no one accepts. */
    if (activation_check_claimed(srv, g->cfg.path, err, errlen) < 0) {
        socks_close_marked(srv, SOCK_NEW);
        return -1;
    }
    return 0;
}

void gen_close_unused_socks(server *srv)
{
    socks_close_marked(srv, SOCK_UNUSED);
}

void gen_free(server *srv, gen *g)
{
    (void)srv;
    if (g == NULL)
        return;
    /* fini for every plugin, now that no worker or connection is left. */
    for (size_t i = 0; i < g->nplugins; i++)
        loader_close(&g->plugins[i]);
    for (size_t i = 0; i < g->nservices; i++)
        SSL_CTX_free(g->services[i].tls);
    free(g->plugins);
    free(g->services);
    free(g->listeners);
    free(g->wconns);
    config_free(&g->cfg);
    free(g);
}

void gen_cleanup(server *srv)
{
    for (size_t i = 0; i < srv->nsocks; i++) {
        sock_close(srv->socks[i]);
        free(srv->socks[i]);
    }
    free(srv->socks);
    srv->socks = NULL;
    srv->nsocks = 0;
    for (size_t i = 0; i < srv->nslots; i++) {
        free(srv->slots[i]->name);
        free(srv->slots[i]);
    }
    free(srv->slots);
    srv->slots = NULL;
    srv->nslots = 0;
    for (size_t i = 0; i < srv->nfiles; i++)
        free(srv->files[i].path);
    free(srv->files);
    srv->files = NULL;
    srv->nfiles = 0;
    if (srv->copy_dir != NULL) {
        rmdir(srv->copy_dir);
        free(srv->copy_dir);
        srv->copy_dir = NULL;
    }
}

/* loader.c - loads a protocol plugin with dlopen: checks who may write the file, then its descriptor. */
#include "loader.h"

#include <dlfcn.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define KEEP_MAPPED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEP_MAPPED 1
#endif
#endif
#ifndef KEEP_MAPPED
#define KEEP_MAPPED 0
#endif

static void unload(plugin *p)
{
    if (p->handle != NULL && !KEEP_MAPPED)
        dlclose(p->handle);
    free(p->path);
    memset(p, 0, sizeof *p);
}

/* "name (uid N)" or "uid N" into buf. */
static const char *user_text(uid_t uid, char *buf, size_t len)
{
    const struct passwd *pw = getpwuid(uid);
    if (pw != NULL)
        snprintf(buf, len, "%s (uid %u)", pw->pw_name, (unsigned)uid);
    else
        snprintf(buf, len, "uid %u", (unsigned)uid);
    return buf;
}

/* The directory part of path ("." for none). Caller frees; NULL when out
 * of memory. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    return strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

/* Refuse a directory anyone may add files to or remove them from. */
static int check_dir(const char *path, const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) < 0)
        return 0;
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
        snprintf(err, errlen,
                 "plugin %s: refused: its directory %s has mode %04o, world-writable without "
                 "the sticky bit, so any user could replace the plugin (chmod o-w %s)",
                 path, dir, (unsigned)(st.st_mode & 07777), dir);
        return -1;
    }
    return 0;
}

int loader_check_file(const char *path, uid_t euid, char *err, size_t errlen)
{
    struct stat st;
    char who[128], me[128];
    if (stat(path, &st) < 0)
        return 0; /* dlopen says why */
    unsigned mode = (unsigned)(st.st_mode & 07777);
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "plugin %s: refused: not a regular file", path);
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen,
                 "plugin %s: refused: mode %04o makes it %s-writable, so other users could "
                 "change the code the server runs (chmod go-w %s)",
                 path, mode, (st.st_mode & S_IWOTH) ? "world" : "group", path);
        return -1;
    }
    if (st.st_uid != 0 && st.st_uid != euid) {
        snprintf(err, errlen,
                 "plugin %s: refused: owned by %s, neither root nor the user echosrv runs as, "
                 "%s, so that user could change the code the server runs",
                 path, user_text(st.st_uid, who, sizeof who), user_text(euid, me, sizeof me));
        return -1;
    }
    int rc = 0;
    char *dir = dir_of(path);
    char *real = realpath(path, NULL);
    char *rdir = real != NULL ? dir_of(real) : NULL;
    if (dir == NULL || (real != NULL && rdir == NULL)) {
        snprintf(err, errlen, "plugin %s: out of memory", path);
        rc = -1;
    } else if (check_dir(path, dir, err, errlen) < 0 ||
               (rdir != NULL && strcmp(rdir, dir) != 0 && check_dir(path, rdir, err, errlen) < 0)) {
        rc = -1;
    }
    free(dir);
    free(real);
    free(rdir);
    return rc;
}

int loader_open(plugin *p, const char *path, char *err, size_t errlen)
{
    return loader_open_from(p, path, path, err, errlen);
}

int loader_open_from(plugin *p, const char *path, const char *file, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->path = strdup(path);
    if (p->path == NULL) {
        snprintf(err, errlen, "plugin %s: out of memory", path);
        return -1;
    }
    if (loader_check_file(path, geteuid(), err, errlen) < 0)
        goto fail;
    p->handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (p->handle == NULL) {
        const char *why = dlerror();
        snprintf(err, errlen, "plugin %s: cannot load: %s", path, why ? why : "unknown error");
        goto fail;
    }
    dlerror();
    void *sym = dlsym(p->handle, ES_PLUGIN_ENTRY_NAME);
    if (sym == NULL) {
        snprintf(err, errlen, "plugin %s: no entry point '%s' (not an echosrv plugin?)", path,
                 ES_PLUGIN_ENTRY_NAME);
        goto fail;
    }
    es_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const es_plugin *d = entry();
    if (d == NULL) {
        snprintf(err, errlen, "plugin %s: entry point returned no descriptor", path);
        goto fail;
    }
    if (d->magic != ES_PLUGIN_MAGIC) {
        snprintf(err, errlen, "plugin %s: bad descriptor magic 0x%08x, expected 0x%08x", path,
                 d->magic, ES_PLUGIN_MAGIC);
        goto fail;
    }
    if (d->abi_major != ES_PLUGIN_ABI_MAJOR) {
        snprintf(err, errlen,
                 "plugin %s: built for plugin ABI %u.%u, this server supports ABI %u.x (%u.%u)",
                 path, d->abi_major, d->abi_minor, ES_PLUGIN_ABI_MAJOR, ES_PLUGIN_ABI_MAJOR,
                 ES_PLUGIN_ABI_MINOR);
        goto fail;
    }
    if (d->size < ES_PLUGIN_MIN_SIZE) {
        snprintf(err, errlen, "plugin %s: descriptor size %u is below the minimum %u of ABI %u",
                 path, d->size, ES_PLUGIN_MIN_SIZE, ES_PLUGIN_ABI_MAJOR);
        goto fail;
    }
    if (d->name == NULL || d->name[0] == '\0') {
        snprintf(err, errlen, "plugin %s: descriptor has no name", path);
        goto fail;
    }
    if (d->data_received == NULL || d->response == NULL) {
        snprintf(err, errlen, "plugin %s (%s): the data_received and response hooks are required",
                 path, d->name);
        goto fail;
    }
    /* Fields beyond what this plugin knows read as zero. */
    memcpy(&p->hooks, d, d->size < sizeof p->hooks ? d->size : sizeof p->hooks);
    return 0;
fail:
    unload(p);
    return -1;
}

int loader_init(plugin *p, const es_host *host, const es_config *cfg, es_error *e)
{
    e->item = -1;
    e->msg[0] = '\0';
    if (p->hooks.init != NULL && p->hooks.init(host, cfg, &p->instance, e) != 0) {
        e->msg[sizeof e->msg - 1] = '\0';
        if (e->msg[0] == '\0')
            snprintf(e->msg, sizeof e->msg, "init failed");
        if (e->item < -1 || (e->item >= 0 && (size_t)e->item >= cfg->count))
            e->item = -1;
        return -1;
    }
    p->initialized = 1;
    return 0;
}

void loader_close(plugin *p)
{
    if (p->initialized && p->hooks.fini != NULL)
        p->hooks.fini(p->instance);
    unload(p);
}

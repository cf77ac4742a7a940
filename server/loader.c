/* loader.c - loads a protocol plugin with dlopen and checks its descriptor. */
#include "loader.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

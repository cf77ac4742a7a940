/* fuzz_ini.c - libFuzzer target: the INI loader (server/config.c) on the input as a file,
 * read from memory through config_load_stream.
 *
 * Checked: no crash, leak or sanitizer report; an error is always "FILE:LINE: message"
 * with 1 <= LINE <= the input's last line; a success has at least one listener, each with
 * at least one address and a plugin file, and 1 to 1024 threads. Host names in bind values
 * never reach DNS (fuzz.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

#define FUZZ_PATH "fuzz/echo.ini"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* fmemopen wants a writable buffer, and one byte for an empty input. */
    char *copy = malloc(size + 1);
    FUZZ_CHECK(copy != NULL);
    if (size > 0)
        memcpy(copy, data, size);
    FILE *fp = fmemopen(copy, size > 0 ? size : 1, "r");
    FUZZ_CHECK(fp != NULL);
    if (size == 0)
        fgetc(fp); /* past the placeholder byte: an empty file */

    config cfg;
    char err[1024] = "";
    int rc = config_load_stream(&cfg, fp, FUZZ_PATH, err, sizeof err);
    fclose(fp);

    if (rc < 0) {
        size_t lines = 1;
        for (size_t i = 0; i < size; i++)
            lines += data[i] == '\n';
        const char *p = err + strlen(FUZZ_PATH);
        if (strncmp(err, FUZZ_PATH ":", strlen(FUZZ_PATH) + 1) != 0 || p[1] < '1' ||
            p[1] > '9') {
            fprintf(stderr, "error without FILE:LINE: '%s'\n", err);
            abort();
        }
        char *end;
        unsigned long line = strtoul(p + 1, &end, 10);
        if (line < 1 || line > lines || strncmp(end, ": ", 2) != 0 || end[2] == '\0') {
            fprintf(stderr, "bad line in '%s' (input has %zu lines)\n", err, lines);
            abort();
        }
    } else {
        FUZZ_CHECK(err[0] == '\0');
        FUZZ_CHECK(cfg.nlisteners >= 1);
        FUZZ_CHECK(cfg.threads >= 1 && cfg.threads <= 1024);
        FUZZ_CHECK(cfg.plugin_path != NULL);
        for (size_t i = 0; i < cfg.nlisteners; i++) {
            const config_listener *l = &cfg.listeners[i];
            FUZZ_CHECK(l->name != NULL && l->plugin_path != NULL && l->bind != NULL);
            FUZZ_CHECK(l->nbinds >= 1 && l->binds != NULL);
            for (size_t j = 0; j < l->nbinds; j++) {
                char text[ADDR_TEXT_MAX];
                addr_format((const struct sockaddr *)&l->binds[j].ss, l->binds[j].len, text,
                            sizeof text);
            }
        }
    }
    config_free(&cfg);
    free(copy);
    return 0;
}

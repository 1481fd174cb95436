/* libFuzzer: shmstat's segment reader. The input is a statistics segment as
 * another process (or an attacker with write access to /dev/shm) may have
 * left it: mapped read-only, validated, then read into a view and rendered
 * in every format, as shmstat does. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/buf.h"
#include "shm/stats.h"
#include "shm/stats_export.h"

static char name[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(name, sizeof(name), "/legate-fuzz.%d.stats", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 0;
    ssize_t w = size > 0 ? write(fd, data, size) : 0;
    close(fd);
    if (w != (ssize_t)size) {
        shm_unlink(name);
        return 0;
    }
    struct stats s;
    const char *why = NULL;
    if (stats_attach(&s, name, true, &why) == 0) {
        for (int hosts = 0; hosts < 2; hosts++) {
            struct stats_view_opts o = {.hosts = hosts, .per_slot = true};
            struct stats_view v;
            if (stats_view_take(&s, &o, &v) == 0) {
                struct buf out = {0};
                stats_render_text(&v, &out);
                stats_render_json(&v, &out);
                stats_render_prometheus(&v, &out);
                stats_view_refresh(&s, &o, &v);
                buf_release(&out);
                stats_view_free(&v);
            }
        }
        stats_owner_alive(&s);
        stats_detach(&s);
    }
    shm_unlink(name);
    return 0;
}

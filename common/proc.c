#include "common/proc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char *title_area; /* original argv[0] storage */
static size_t title_cap; /* bytes available there (argv + environ strings) */

void proc_title_init(int argc, char **argv)
{
    if (argc < 1 || argv[0] == NULL)
        return;
    /* argv strings and then environ strings are contiguous; move both away so the
     * whole span can hold a longer title (the classic setproctitle technique). */
    char *start = argv[0];
    char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    size_t n_env = 0;
    while (environ[n_env] != NULL) {
        if (environ[n_env] == end)
            end += strlen(environ[n_env]) + 1;
        n_env++;
    }
    char **env_copy = calloc(n_env + 1, sizeof(*env_copy));
    if (env_copy == NULL)
        return;
    for (size_t i = 0; i < n_env; i++)
        env_copy[i] = strdup(environ[i]);
    environ = env_copy;
    /* Keep argv[] valid for the caller: it is parsed after this. */
    for (int i = 0; i < argc; i++)
        argv[i] = strdup(argv[i]);
    title_area = start;
    title_cap = (size_t)(end - start);
}

void proc_set_title(const char *title)
{
    if (title_area == NULL || title_cap < 2)
        return;
    size_t n = strlen(title);
    if (n > title_cap - 1)
        n = title_cap - 1;
    memset(title_area, 0, title_cap);
    memcpy(title_area, title, n);
}

uint64_t proc_now_ms(void)
{
    return proc_now_ns() / 1000000u;
}

uint64_t proc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

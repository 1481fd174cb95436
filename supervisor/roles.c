/* The role table: one row per child role, with what each keeps once started
 * (common/sandbox.h adds the calls every child makes). */
#include <string.h>
#include <sys/syscall.h>

#include "common/role.h"

/* Binds its sockets (the privileged ports with the one capability it keeps)
 * and passes them on; never reads a byte from a client. */
static const int listener_calls[] = {
    SYS_socket,
    SYS_bind,
    SYS_listen,
};

/* Accepts clients; connects to upstreams. */
static const int worker_calls[] = {
    SYS_accept4,
    SYS_socket,
    SYS_connect,
};

/* Runs the active health checks: connects to upstreams. */
static const int upstream_calls[] = {
    SYS_socket,
    SYS_connect,
};

#define CALLS(a) a, sizeof(a) / sizeof(a[0])

const struct role_def role_table[] = {
    {ROLE_LISTENER, "listener", "listener", listener_run, {true, CALLS(listener_calls)}},
    {ROLE_UPSTREAM,
     "upstream",
     "upstream manager",
     upstream_manager_run,
     {false, CALLS(upstream_calls)}},
    {ROLE_WORKER, "worker", "worker", worker_run, {false, CALLS(worker_calls)}},
};
const size_t role_table_len = sizeof(role_table) / sizeof(role_table[0]);

const struct role_def *role_find(const char *token)
{
    for (size_t i = 0; i < role_table_len; i++)
        if (strcmp(role_table[i].token, token) == 0)
            return &role_table[i];
    return NULL;
}

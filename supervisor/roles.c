/* The role table: one row per child role. */
#include <string.h>

#include "common/role.h"

const struct role_def role_table[] = {
    {ROLE_LISTENER, "listener", "listener", listener_run},
    {ROLE_UPSTREAM, "upstream", "upstream manager", upstream_manager_run},
    {ROLE_WORKER, "worker", "worker", worker_run},
};
const size_t role_table_len = sizeof(role_table) / sizeof(role_table[0]);

const struct role_def *role_find(const char *token)
{
    for (size_t i = 0; i < role_table_len; i++)
        if (strcmp(role_table[i].token, token) == 0)
            return &role_table[i];
    return NULL;
}

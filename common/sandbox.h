/* Privilege separation: what a child role keeps once it has started.
 *
 * Every child enters its sandbox in one place (child_start), in the order
 * trusted daemons use: chroot, chdir, setgroups, setresgid, setresuid (keeping
 * only the capabilities its role needs), RLIMIT_CORE, no_new_privs, then a
 * seccomp allow-list of exactly the system calls its loop makes. A call
 * outside the list traps: the process names it on stderr and dies with
 * SIGSYS, which the supervisor logs and answers with a respawn.
 *
 * What each role keeps is declared in the role table (supervisor/roles.c). */
#ifndef LEGATE_COMMON_SANDBOX_H
#define LEGATE_COMMON_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A role's row: its allow-list, and whether it keeps the capability to bind
 * privileged ports. The calls every child needs (memory, time, signals, the
 * event loop, ZeroMQ's threads) are added by sandbox_enter. */
struct sandbox_profile {
    bool keep_bind_cap;  /* CAP_NET_BIND_SERVICE (the listener) */
    const int *syscalls; /* SYS_* numbers (<sys/syscall.h>), on top of the common ones */
    size_t n_syscalls;
};

/* What the supervisor decided at start (the same for every role). */
struct sandbox_opts {
    bool drop; /* started as root: change user, chroot, drop capabilities */
    uid_t uid;
    gid_t gid;
    const char *root;      /* the chroot directory */
    bool allow_core_dumps; /* else RLIMIT_CORE 0 */
    bool relaxed;          /* sanitizer builds: no chroot, no seccomp (LeakSanitizer needs
                              /proc and ptrace at exit); the rest applies */
};

/* Enter the sandbox; on any failure the process exits (log_fatal): a child
 * must never serve with less isolation than it was asked for. */
void sandbox_enter(const char *role, const struct sandbox_profile *p, const struct sandbox_opts *o);

/* How many system calls a role's filter allows (common ones included). */
size_t sandbox_profile_size(const struct sandbox_profile *p);

/* Make (or check) the default chroot: an empty directory owned by root and
 * writable by nobody else. 0, or -1 with a message in err. */
int sandbox_prepare_root(const char *dir, char *err, size_t cap);

#endif

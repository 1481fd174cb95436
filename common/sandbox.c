#include "common/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <seccomp.h>

#include "common/log.h"

/* What every child's loop does, whatever its role: memory, time, signals,
 * libev's epoll, ZeroMQ's I/O and reaper threads (created before the filter,
 * which applies to them too), reading and writing descriptors it already
 * holds, descriptor passing, and exiting. Nothing here opens a path, creates
 * a process or changes credentials. */
static const int common_syscalls[] = {
    SCMP_SYS(brk),
    SCMP_SYS(mmap),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(mprotect),
    SCMP_SYS(madvise),
    SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(nanosleep),
    SCMP_SYS(gettimeofday),
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(sigaltstack),
    SCMP_SYS(getpid),
    SCMP_SYS(gettid),
    SCMP_SYS(getppid),
    SCMP_SYS(tgkill), /* raise(): abort, and the SIGSYS handler's own death */
    SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait),
    SCMP_SYS(epoll_ctl),
    SCMP_SYS(epoll_create1), /* a worker's EPOLLEXCLUSIVE set per listener */
    SCMP_SYS(signalfd4),     /* libev's signal watchers, started after the sandbox */
    SCMP_SYS(eventfd2),      /* libev's wake-up pipe, made on first need */
    SCMP_SYS(pipe2),
    SCMP_SYS(poll),
    SCMP_SYS(ppoll),
    SCMP_SYS(read),
    SCMP_SYS(readv),
    SCMP_SYS(write),
    SCMP_SYS(writev),
    SCMP_SYS(pread64), /* /proc/self/statm, opened before the sandbox */
    SCMP_SYS(lseek),
    SCMP_SYS(fstat),
    SCMP_SYS(newfstatat),
    SCMP_SYS(close),
    SCMP_SYS(fcntl),
    SCMP_SYS(ioctl), /* FIONREAD */
    SCMP_SYS(recvfrom),
    SCMP_SYS(sendto),
    SCMP_SYS(recvmsg),
    SCMP_SYS(sendmsg),
    SCMP_SYS(shutdown),
    SCMP_SYS(getsockopt),
    SCMP_SYS(setsockopt),
    SCMP_SYS(getsockname),
    SCMP_SYS(getpeername),
    SCMP_SYS(futex),
    SCMP_SYS(sched_yield),
    SCMP_SYS(getrandom),
    SCMP_SYS(sysinfo), /* glibc's qsort asks for the memory size (admin /stats sorts) */
    SCMP_SYS(restart_syscall),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
};

#define N_COMMON (sizeof(common_syscalls) / sizeof(common_syscalls[0]))

size_t sandbox_profile_size(const struct sandbox_profile *p)
{
    return N_COMMON + p->n_syscalls;
}

/* --- a call outside the profile --------------------------------------------------- */

#define NAMES_MAX 512
static const char
    *syscall_names[NAMES_MAX]; /* resolved before the filter: the handler only reads */
static char trap_prefix[96];

static size_t append(char *buf, size_t off, size_t cap, const char *s)
{
    while (*s != '\0' && off + 1 < cap)
        buf[off++] = *s++;
    return off;
}

/* Async-signal-safe: name the call on stderr, then die of SIGSYS. */
static void on_sigsys(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    char line[256], num[16];
    int nr = si->si_syscall;
    size_t n = 0, k = sizeof(num) - 1;
    num[k] = '\0';
    unsigned v = nr < 0 ? 0u : (unsigned)nr;
    do
        num[--k] = (char)('0' + v % 10);
    while ((v /= 10) != 0 && k > 0);
    n = append(line, n, sizeof(line), trap_prefix);
    n = append(line, n, sizeof(line),
               nr >= 0 && nr < NAMES_MAX && syscall_names[nr] != NULL ? syscall_names[nr] : "?");
    n = append(line, n, sizeof(line), " (");
    n = append(line, n, sizeof(line), num + k);
    n = append(line, n, sizeof(line), "), which its seccomp profile does not allow: killed\n");
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig); /* blocked in this handler: delivered, and fatal, as it returns */
}

static void install_trap_handler(const char *role)
{
    for (int nr = 0; nr < NAMES_MAX; nr++)
        syscall_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    snprintf(trap_prefix, sizeof(trap_prefix), "legate %s (pid %d) called ", role, (int)getpid());
    struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) != 0)
        log_fatal("sandbox: SIGSYS handler: %s", strerror(errno));
}

static void load_seccomp(const char *role, const struct sandbox_profile *p)
{
    install_trap_handler(role);
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    if (ctx == NULL)
        log_fatal("sandbox: seccomp_init failed");
    /* Every thread (ZeroMQ's included) gets the filter, not just this one. */
    if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) != 0)
        log_fatal("sandbox: seccomp cannot synchronise threads");
    for (size_t i = 0; i < N_COMMON + p->n_syscalls; i++) {
        int nr = i < N_COMMON ? common_syscalls[i] : p->syscalls[i - N_COMMON];
        if (nr < 0)
            continue; /* not a call on this architecture */
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (rc != 0)
            log_fatal("sandbox: seccomp rule for call %d: %s", nr, strerror(-rc));
    }
    int rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0)
        log_fatal("sandbox: seccomp_load: %s", strerror(-rc));
}

/* --- ZeroMQ's threads -------------------------------------------------------------- */

/* ZeroMQ's I/O and reaper threads begin, with every signal blocked, by
 * reading and setting their scheduling parameters and naming themselves
 * (sched_getparam, sched_setscheduler, prctl). One that has not got that far
 * when the filter arrives dies of SIGSYS without a word, since a blocked
 * SIGSYS cannot reach our handler. Naming itself is the last thing such a
 * thread does before its poll loop, so wait until every other thread carries
 * ZeroMQ's name: cheaper than widening every role's filter. */
static bool thread_is_named_by_zmq(pid_t tid)
{
    char path[64], comm[32];
    snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true; /* gone: nothing to wait for */
    ssize_t n = read(fd, comm, sizeof(comm) - 1);
    close(fd);
    if (n <= 0)
        return true;
    comm[n] = '\0';
    return strncmp(comm, "ZMQbg/", 6) == 0;
}

static bool other_threads_ready(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return true; /* no /proc: nothing we can check */
    pid_t self = gettid();
    bool ready = true;
    struct dirent *e;
    while (ready && (e = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0 && tid != self && !thread_is_named_by_zmq(tid))
            ready = false;
    }
    closedir(d);
    return ready;
}

static int wait_for_zmq_threads(const char *role)
{
    int waited_ms = 0;
    for (; !other_threads_ready(); waited_ms++) {
        if (waited_ms == 2000) {
            log_warn("sandbox: a thread of the %s has not finished starting after 2 s; "
                     "the filter may kill it",
                     role);
            break;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return waited_ms;
}

/* --- credentials ------------------------------------------------------------------- */

static void keep_only_bind_cap(bool keep)
{
    /* The bounding set, while we still may (CAP_SETPCAP): nothing can come back. */
    for (int c = 0; c <= CAP_LAST_CAP; c++)
        if (!(keep && c == CAP_NET_BIND_SERVICE) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 &&
            errno != EINVAL)
            log_fatal("sandbox: dropping capability %d from the bounding set: %s", c,
                      strerror(errno));
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (keep && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
        log_fatal("sandbox: PR_SET_KEEPCAPS: %s", strerror(errno));
}

static void set_caps_after_setuid(bool keep)
{
    cap_t caps = cap_init(); /* all clear */
    if (caps == NULL)
        log_fatal("sandbox: cap_init: %s", strerror(errno));
    if (keep) {
        cap_value_t bind = CAP_NET_BIND_SERVICE;
        if (cap_set_flag(caps, CAP_PERMITTED, 1, &bind, CAP_SET) != 0 ||
            cap_set_flag(caps, CAP_EFFECTIVE, 1, &bind, CAP_SET) != 0)
            log_fatal("sandbox: cap_set_flag: %s", strerror(errno));
    }
    if (cap_set_proc(caps) != 0)
        log_fatal("sandbox: cap_set_proc: %s", strerror(errno));
    cap_free(caps);
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
}

void sandbox_enter(const char *role, const struct sandbox_profile *p, const struct sandbox_opts *o)
{
    /* strftime consults the time zone: load it now, while /etc is in reach;
     * glibc then keeps it and does not open the file again. */
    tzset();
    /* Before the chroot, while /proc is in reach. */
    int waited_ms = o->relaxed ? 0 : wait_for_zmq_threads(role);
    if (o->drop) {
        keep_only_bind_cap(p->keep_bind_cap);
        if (!o->relaxed) {
            if (chroot(o->root) != 0)
                log_fatal("sandbox: chroot %s: %s", o->root, strerror(errno));
            if (chdir("/") != 0)
                log_fatal("sandbox: chdir / in the chroot: %s", strerror(errno));
        }
        if (setgroups(1, &o->gid) != 0)
            log_fatal("sandbox: setgroups: %s", strerror(errno));
        if (setresgid(o->gid, o->gid, o->gid) != 0)
            log_fatal("sandbox: setresgid %d: %s", (int)o->gid, strerror(errno));
        if (setresuid(o->uid, o->uid, o->uid) != 0)
            log_fatal("sandbox: setresuid %d: %s", (int)o->uid, strerror(errno));
        /* No way back to root. */
        if (setresuid(0, 0, 0) == 0)
            log_fatal("sandbox: could become root again after dropping it");
        set_caps_after_setuid(p->keep_bind_cap);
        /* A change of credentials clears the parent-death signal: arm it
         * again, and make sure the supervisor did not die in between. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 || getppid() == 1)
            log_fatal("sandbox: the supervisor is gone");
    }
    if (!o->allow_core_dumps) {
        struct rlimit none = {0, 0};
        if (setrlimit(RLIMIT_CORE, &none) != 0)
            log_fatal("sandbox: RLIMIT_CORE: %s", strerror(errno));
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        log_fatal("sandbox: no_new_privs: %s", strerror(errno));
    if (!o->relaxed)
        load_seccomp(role, p);
    log_debug("sandbox: %s%s, seccomp %s (%zu calls, after %d ms for ZeroMQ's threads), bind "
              "capability %s",
              o->drop ? "uid " : "", o->drop ? "dropped" : "unchanged (not started as root)",
              o->relaxed ? "off (sanitizer build)" : "on", sandbox_profile_size(p), waited_ms,
              p->keep_bind_cap && o->drop ? "kept" : "none");
}

int sandbox_prepare_root(const char *dir, char *err, size_t cap)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        /* its parent may not exist yet: one level is enough for the default */
        char parent[512];
        snprintf(parent, sizeof(parent), "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash != NULL && slash != parent) {
            *slash = '\0';
            mkdir(parent, 0755);
        }
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            snprintf(err, cap, "cannot create the chroot directory %s: %s", dir, strerror(errno));
            return -1;
        }
    }
    struct stat st;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, cap, "the chroot %s is not a directory", dir);
        return -1;
    }
    if (st.st_uid != 0 || (st.st_mode & 0022) != 0) {
        snprintf(err, cap,
                 "the chroot %s must be owned by root and writable by nobody else (it is uid "
                 "%d, mode %03o)",
                 dir, (int)st.st_uid, (unsigned)(st.st_mode & 0777));
        return -1;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, cap, "cannot read the chroot %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = false;
    closedir(d);
    if (!empty) {
        snprintf(err, cap, "the chroot %s is not empty", dir);
        return -1;
    }
    return 0;
}

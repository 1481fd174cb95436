/* legate's entry point: parse flags, load the configuration, then either
 * validate it and exit, or become the supervisor. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/role.h"
#include "shm/hosts.h"
#include "supervisor/supervisor.h"
#include "worker/access_log.h"

#ifdef LEGATE_TEST_HOOKS
#include <fcntl.h>

#include "worker/worker.h"

/* legate-testhooks only: what the admin's /test/forbidden_call attempts. */
static void attempt_forbidden_call(const char *which)
{
    if (strcmp(which, "execve") == 0) {
        char *argv[] = {"/bin/true", NULL};
        execve("/bin/true", argv, argv + 1);
    } else {
        int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
    }
}
#endif

/* Tells apart builds of one version (the hot restart tests alternate two). */
#ifndef LEGATE_BUILD_TAG
#define LEGATE_BUILD_TAG ""
#endif

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: legate [-c FILE] [options]\n"
        "\n"
        "  -c, --config-path FILE   Envoy v3 bootstrap YAML (default: the embedded quickstart "
        "config)\n"
        "      --mode serve|validate  validate: check the config, print OK or the errors, exit\n"
        "      --concurrency N      worker processes (default: online CPUs)\n"
        "      --base-id N          instance id; names the runtime directory (default 0)\n"
        "  -l, --log-level LEVEL    trace, debug, info, warn, error (default info)\n"
        "      --drain-time-s N     on stop or hot restart, time in-flight requests get to "
        "finish\n"
        "                           (default 600)\n"
        "      --restart-epoch N    hot restart: take over from the running epoch N-1 of this "
        "base id\n"
        "                           (default 0: start afresh)\n"
        "      --parent-shutdown-time-s N\n"
        "                           hot restart: the previous generation is gone this long after\n"
        "                           the new one serves (default 900)\n"
        "      --drain-strategy gradual|immediate\n"
        "                           hot restart: close the old generation's idle connections\n"
        "                           spread over the drain time (default), or at its end\n"
        "      --user NAME          started as root: the children run as NAME (default nobody)\n"
        "      --group NAME         ... and as group NAME (default: NAME's primary group)\n"
        "      --chroot DIR         ... chrooted to DIR, an empty directory owned by root\n"
        "                           (default /var/empty/legate, created if missing)\n"
        "      --allow-core-dumps   let children dump core (default: RLIMIT_CORE 0)\n"
        "      --accept-strategy exclusive|reuseport\n"
        "                           one shared accept queue woken with EPOLLEXCLUSIVE "
        "(default),\n"
        "                           or one SO_REUSEPORT socket per worker\n"
        "      --version            print the version and exit\n"
        "      --hot-restart-version\n"
        "                           print the shared-memory layout version and exit\n"
        "  -h, --help               this text\n");
}

static int parse_uint(const char *flag, const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max) {
        fprintf(stderr, "legate: %s: '%s' is not a number in 0..%lu\n", flag, s, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* What the supervisor tells a child on its command line (see build_child_argv). */
struct child_args {
    const char *role;
    int index;
    int config_fd;
    const char *config_name;
    const char *runtime_dir;
    int fd_sock;
    int sup_sock;
    const char *worker_socks;
    const char *access_log_fds;
    const char *listen_fds;
    const char *stats_name;
    long stats_slot;
    int hosts_fd;
    int hosts_bell_fd;
};

/* Parse "index.shard=fd,..." (--listen-fds); returns the count, or -1. */
static int parse_listen_fds(const char *s, struct listen_fd *out, size_t max)
{
    size_t n = 0;
    while (s != NULL && *s != '\0') {
        unsigned idx, shard;
        int fd, used = 0;
        if (n >= max || sscanf(s, "%u.%u=%d%n", &idx, &shard, &fd, &used) != 3 || idx > 65535 ||
            shard > 65535 || fd < 0 || (s[used] != ',' && s[used] != '\0'))
            return -1;
        out[n++] = (struct listen_fd){.index = (uint16_t)idx, .shard = (uint16_t)shard, .fd = fd};
        s += used + (s[used] == ',');
    }
    return (int)n;
}

/* Parse "3,4,5" into fds; returns the count, or -1. */
static int parse_fd_list(const char *s, int *fds, size_t max)
{
    size_t n = 0;
    while (s != NULL && *s != '\0') {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT_MAX || n >= max || (*end != ',' && *end != '\0'))
            return -1;
        fds[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return (int)n;
}

/* A child: a fresh exec of this binary by the supervisor. It re-parses the
 * configuration the supervisor validated (a sealed memfd) and runs its role. */
static int child_main(const struct child_args *ca, const struct sup_options *opt)
{
    const struct role_def *def = role_find(ca->role);
    if (def == NULL)
        log_fatal("unknown child role '%s'", ca->role);
    struct stat st;
    if (fstat(ca->config_fd, &st) != 0)
        log_fatal("child: configuration descriptor: %s", strerror(errno));
    size_t len = (size_t)st.st_size;
    char *text = malloc(len + 1);
    if (text == NULL || pread(ca->config_fd, text, len, 0) != (ssize_t)len)
        log_fatal("child: cannot read the configuration");
    close(ca->config_fd);
    struct config cfg;
    struct config_errors errs = {0};
    if (config_load_string(ca->config_name, text, len, &cfg, &errs) != 0)
        log_fatal("child: the configuration no longer validates: %s", errs.n ? errs.msgs[0] : "?");
    free(text);

    int fds[IPC_MAX_FDS];
    int n = parse_fd_list(ca->access_log_fds, fds, IPC_MAX_FDS);
    int k = 0;
    for (size_t i = 0; i < cfg.n_listeners; i++)
        for (size_t j = 0; j < cfg.listeners[i].hcm.n_access_logs; j++)
            cfg.listeners[i].hcm.access_logs[j].fd = k < n ? fds[k++] : -1;
    if (k != n || n < 0)
        log_fatal("child: access-log descriptors do not match the configuration");

    static char endpoint[320];
    snprintf(endpoint, sizeof(endpoint), "ipc://%s/control", ca->runtime_dir);
    struct child_ctx ctx = {
        .cfg = &cfg,
        .role = def->role,
        .index = ca->index,
        .concurrency = opt->concurrency,
        .control_endpoint = endpoint,
        .runtime_dir = ca->runtime_dir,
        .base_id = opt->base_id,
        .restart_epoch = opt->restart_epoch,
        .drain_time_ms = opt->drain_time_ms,
        .reuseport = opt->reuseport,
        .fd_sock = ca->fd_sock,
        .sup_sock = ca->sup_sock,
    };
    int worker_socks[IPC_MAX_FDS];
    static struct listen_fd listen_fds[IPC_MAX_FDS];
    if (def->role == ROLE_LISTENER) {
        n = parse_fd_list(ca->worker_socks, worker_socks, IPC_MAX_FDS);
        if (n != (int)opt->concurrency)
            log_fatal("child: expected %u worker sockets", opt->concurrency);
        ctx.worker_socks = worker_socks;
        ctx.n_worker_socks = (size_t)n;
        n = parse_listen_fds(ca->listen_fds, listen_fds, IPC_MAX_FDS);
        if (n < 0)
            log_fatal("child: malformed --listen-fds");
        ctx.listen_fds = listen_fds;
        ctx.n_listen_fds = (size_t)n;
    }
    static struct stats stats;
    char shm_name[64];
    const char *why = NULL;
    if (ca->stats_name != NULL)
        snprintf(shm_name, sizeof(shm_name), "%s", ca->stats_name);
    else
        stats_shm_name(opt->base_id, shm_name, sizeof(shm_name));
    if (stats_attach(&stats, shm_name, false, &why) != 0)
        log_fatal("child: cannot attach the statistics segment %s: %s", shm_name, why);
    if (ca->stats_slot < 1 || stats_set_slot(&stats, (uint32_t)ca->stats_slot) != 0)
        log_fatal("child: no statistics slot %ld in %s", ca->stats_slot, shm_name);
    ctx.stats = &stats;
    static struct hosts_seg hosts;
    if (ca->hosts_fd >= 0) {
        char err[160];
        if (hosts_attach(&hosts, ca->hosts_fd, err, sizeof(err)) != 0)
            log_fatal("child: %s", err);
        close(ca->hosts_fd);
        ctx.hosts = &hosts;
    }
    ctx.hosts_bell_fd = ca->hosts_bell_fd;
    ctx.sandbox = &def->sandbox;
    ctx.sandbox_opts = &opt->sandbox;
    int rc = def->run(&ctx);
    stats_detach(&stats);
    hosts_detach(&hosts);
    config_free(&cfg);
    return rc;
}

/* What the children drop (common/sandbox.h). Only root can change user or
 * chroot; an ordinary user still gets no_new_privs and seccomp, with one
 * warning. */
static int decide_sandbox(const char *user, const char *group, const char *chroot_dir,
                          struct sandbox_opts *o)
{
#ifdef LEGATE_SANITIZE_BUILD
    o->relaxed = true;
    log_warn("sanitizer build: children are not chrooted and run no seccomp filter "
             "(LeakSanitizer needs /proc and ptrace at exit); the rest of the sandbox applies");
#endif
    if (geteuid() != 0) {
        log_warn("not started as root: the children keep this user's identity (no --user, "
                 "--group or --chroot)%s",
                 o->relaxed ? "" : "; no_new_privs and the seccomp filters still apply");
        return 0;
    }
    const char *name = user != NULL ? user : "nobody";
    struct passwd *pw = getpwnam(name);
    if (pw == NULL) {
        log_error("--user %s: no such user", name);
        return -1;
    }
    o->uid = pw->pw_uid;
    o->gid = pw->pw_gid;
    if (group != NULL) {
        struct group *gr = getgrnam(group);
        if (gr == NULL) {
            log_error("--group %s: no such group", group);
            return -1;
        }
        o->gid = gr->gr_gid;
    }
    if (o->uid == 0) {
        log_warn("--user %s is root: the children keep root's privileges", name);
        return 0;
    }
    static char root[512];
    snprintf(root, sizeof(root), "%s", chroot_dir != NULL ? chroot_dir : "/var/empty/legate");
    char err[600];
    if (sandbox_prepare_root(root, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return -1;
    }
    o->root = root;
    o->drop = true;
    log_info("children run as uid %d gid %d (%s), chrooted to %s", (int)o->uid, (int)o->gid, name,
             o->relaxed ? "(not: sanitizer build)" : root);
    return 0;
}

/* `path` made absolute against the working directory, without resolving links. */
static int absolute(const char *path, char *out, size_t cap)
{
    char cwd[PATH_MAX];
    int n = path[0] == '/'                     ? snprintf(out, cap, "%s", path)
            : getcwd(cwd, sizeof(cwd)) != NULL ? snprintf(out, cap, "%s/%s", cwd, path)
                                               : -1;
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* The path this binary was started from, made absolute, so that SIGUSR2 runs
 * whatever is at that path then (a binary replaced on disk is picked up),
 * unlike /proc/self/exe, which names the old, possibly deleted, file. */
static int find_own_path(const char *argv0, char *out, size_t cap)
{
    /* Symbolic links are not resolved: a `current -> release-N` link that is
     * switched before SIGUSR2 starts the release it points to then. */
    if (strchr(argv0, '/') != NULL)
        return absolute(argv0, out, cap);
    const char *path = getenv("PATH");
    while (path != NULL && *path != '\0') {
        const char *end = strchrnul(path, ':');
        char cand[PATH_MAX];
        int n = snprintf(cand, sizeof(cand), "%.*s/%s", (int)(end - path), path, argv0);
        if (n > 0 && (size_t)n < sizeof(cand) && access(cand, X_OK) == 0)
            return absolute(cand, out, cap);
        path = *end == ':' ? end + 1 : end;
    }
    ssize_t n = readlink("/proc/self/exe", out, cap - 1);
    if (n <= 0)
        return -1;
    out[n] = '\0';
    char *deleted = strstr(out, " (deleted)"); /* replaced on disk since: the path is still right */
    if (deleted != NULL && deleted[10] == '\0')
        *deleted = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    /* One malloc arena for every thread (ZeroMQ's too). glibc sizes and trims
     * extra arenas by reading /proc and /sys, which a sandboxed child may not
     * open: a ZeroMQ thread (all signals blocked) doing so would die of SIGSYS
     * without a word. The threads besides the loop allocate next to nothing. */
    mallopt(M_ARENA_MAX, 1);
    proc_title_init(argc, argv);
#ifdef LEGATE_TEST_HOOKS
    worker_test_forbidden_call = attempt_forbidden_call;
#endif

    enum {
        OPT_MODE = 256,
        OPT_CONCURRENCY,
        OPT_BASE_ID,
        OPT_DRAIN,
        OPT_VERSION,
        OPT_HOT_RESTART_VERSION,
        OPT_ACCEPT,
        OPT_RESTART_EPOCH,
        OPT_PARENT_SHUTDOWN,
        OPT_DRAIN_STRATEGY,
        OPT_USER,
        OPT_GROUP,
        OPT_CHROOT,
        OPT_ALLOW_CORE,
        /* internal: how the supervisor starts a child */
        OPT_CHILD_ROLE,
        OPT_CHILD_INDEX,
        OPT_CONFIG_FD,
        OPT_CONFIG_NAME,
        OPT_RUNTIME_DIR,
        OPT_FD_SOCK,
        OPT_SUP_SOCK,
        OPT_WORKER_SOCKS,
        OPT_ACCESS_LOG_FDS,
        OPT_HOSTS_FD,
        OPT_HOSTS_BELL_FD,
        OPT_STATS_SLOT,
        OPT_LISTEN_FDS,
        OPT_SANDBOX_UID,
        OPT_SANDBOX_GID,
        OPT_STATS_NAME,
    };
    static const struct option longopts[] = {
        {"config-path", required_argument, NULL, 'c'},
        {"mode", required_argument, NULL, OPT_MODE},
        {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
        {"base-id", required_argument, NULL, OPT_BASE_ID},
        {"log-level", required_argument, NULL, 'l'},
        {"drain-time-s", required_argument, NULL, OPT_DRAIN},
        {"accept-strategy", required_argument, NULL, OPT_ACCEPT},
        {"restart-epoch", required_argument, NULL, OPT_RESTART_EPOCH},
        {"parent-shutdown-time-s", required_argument, NULL, OPT_PARENT_SHUTDOWN},
        {"drain-strategy", required_argument, NULL, OPT_DRAIN_STRATEGY},
        {"user", required_argument, NULL, OPT_USER},
        {"group", required_argument, NULL, OPT_GROUP},
        {"chroot", required_argument, NULL, OPT_CHROOT},
        {"allow-core-dumps", no_argument, NULL, OPT_ALLOW_CORE},
        {"sandbox-uid", required_argument, NULL, OPT_SANDBOX_UID},
        {"sandbox-gid", required_argument, NULL, OPT_SANDBOX_GID},
        {"stats-name", required_argument, NULL, OPT_STATS_NAME},
        {"version", no_argument, NULL, OPT_VERSION},
        {"hot-restart-version", no_argument, NULL, OPT_HOT_RESTART_VERSION},
        {"child-role", required_argument, NULL, OPT_CHILD_ROLE},
        {"child-index", required_argument, NULL, OPT_CHILD_INDEX},
        {"config-fd", required_argument, NULL, OPT_CONFIG_FD},
        {"config-name", required_argument, NULL, OPT_CONFIG_NAME},
        {"runtime-dir", required_argument, NULL, OPT_RUNTIME_DIR},
        {"fd-sock", required_argument, NULL, OPT_FD_SOCK},
        {"sup-sock", required_argument, NULL, OPT_SUP_SOCK},
        {"worker-socks", required_argument, NULL, OPT_WORKER_SOCKS},
        {"access-log-fds", required_argument, NULL, OPT_ACCESS_LOG_FDS},
        {"hosts-fd", required_argument, NULL, OPT_HOSTS_FD},
        {"hosts-bell-fd", required_argument, NULL, OPT_HOSTS_BELL_FD},
        {"stats-slot", required_argument, NULL, OPT_STATS_SLOT},
        {"listen-fds", required_argument, NULL, OPT_LISTEN_FDS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    bool validate_only = false;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct sup_options opt = {
        .concurrency = ncpu > 0 ? (unsigned)ncpu : 1,
        .base_id = 0,
        .drain_time_ms = 600 * 1000,
        .parent_shutdown_ms = 900 * 1000,
        .drain_gradual = true,
        .argv = argv,
    };
    struct child_args child = {.config_fd = -1,
                               .fd_sock = -1,
                               .sup_sock = -1,
                               .stats_slot = -1,
                               .hosts_fd = -1,
                               .hosts_bell_fd = -1};
    const char *user = NULL, *group = NULL, *chroot_dir = NULL;
    unsigned long v;
    int c;
    while ((c = getopt_long(argc, argv, "c:l:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_MODE:
            if (strcmp(optarg, "validate") == 0)
                validate_only = true;
            else if (strcmp(optarg, "serve") != 0) {
                fprintf(stderr, "legate: --mode: '%s' is not serve or validate\n", optarg);
                return 2;
            }
            break;
        case OPT_CONCURRENCY:
            if (parse_uint("--concurrency", optarg, 256, &v) != 0)
                return 2;
            if (v == 0) {
                fprintf(stderr, "legate: --concurrency must be at least 1\n");
                return 2;
            }
            opt.concurrency = (unsigned)v;
            break;
        case OPT_BASE_ID:
            if (parse_uint("--base-id", optarg, UINT_MAX / 2, &v) != 0)
                return 2;
            opt.base_id = (unsigned)v;
            break;
        case 'l': {
            int level = log_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr,
                        "legate: --log-level: '%s' is not trace, debug, info, warn or "
                        "error\n",
                        optarg);
                return 2;
            }
            log_set_level((enum log_level)level);
            break;
        }
        case OPT_DRAIN:
            if (parse_uint("--drain-time-s", optarg, 86400, &v) != 0)
                return 2;
            opt.drain_time_ms = (uint32_t)v * 1000;
            break;
        case OPT_ACCEPT:
            if (strcmp(optarg, "reuseport") == 0)
                opt.reuseport = true;
            else if (strcmp(optarg, "exclusive") != 0) {
                fprintf(stderr, "legate: --accept-strategy: '%s' is not exclusive or reuseport\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_RESTART_EPOCH:
            if (parse_uint("--restart-epoch", optarg, 1000000000, &v) != 0)
                return 2;
            opt.restart_epoch = (unsigned)v;
            break;
        case OPT_PARENT_SHUTDOWN:
            if (parse_uint("--parent-shutdown-time-s", optarg, 86400, &v) != 0)
                return 2;
            opt.parent_shutdown_ms = (uint32_t)v * 1000;
            break;
        case OPT_DRAIN_STRATEGY:
            if (strcmp(optarg, "immediate") == 0)
                opt.drain_gradual = false;
            else if (strcmp(optarg, "gradual") == 0)
                opt.drain_gradual = true;
            else {
                fprintf(stderr, "legate: --drain-strategy: '%s' is not gradual or immediate\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_LISTEN_FDS:
            child.listen_fds = optarg;
            break;
        case OPT_USER:
            user = optarg;
            break;
        case OPT_STATS_NAME:
            child.stats_name = optarg;
            break;
        case OPT_GROUP:
            group = optarg;
            break;
        case OPT_CHROOT:
            chroot_dir = optarg;
            break;
        case OPT_ALLOW_CORE:
            opt.sandbox.allow_core_dumps = true;
            break;
        case OPT_SANDBOX_UID:
        case OPT_SANDBOX_GID:
            if (parse_uint("child option", optarg, INT_MAX, &v) != 0)
                return 2;
            opt.sandbox.drop = true;
            *(c == OPT_SANDBOX_UID ? &opt.sandbox.uid : &opt.sandbox.gid) = (unsigned)v;
            break;
        case OPT_CHILD_ROLE:
            child.role = optarg;
            break;
        case OPT_CHILD_INDEX:
        case OPT_CONFIG_FD:
        case OPT_FD_SOCK:
        case OPT_SUP_SOCK:
        case OPT_HOSTS_FD:
        case OPT_HOSTS_BELL_FD:
            if (parse_uint("child option", optarg, INT_MAX, &v) != 0)
                return 2;
            *(c == OPT_CHILD_INDEX     ? &child.index
              : c == OPT_CONFIG_FD     ? &child.config_fd
              : c == OPT_FD_SOCK       ? &child.fd_sock
              : c == OPT_HOSTS_FD      ? &child.hosts_fd
              : c == OPT_HOSTS_BELL_FD ? &child.hosts_bell_fd
                                       : &child.sup_sock) = (int)v;
            break;
        case OPT_CONFIG_NAME:
            child.config_name = optarg;
            break;
        case OPT_RUNTIME_DIR:
            child.runtime_dir = optarg;
            break;
        case OPT_WORKER_SOCKS:
            child.worker_socks = optarg;
            break;
        case OPT_ACCESS_LOG_FDS:
            child.access_log_fds = optarg;
            break;
        case OPT_STATS_SLOT:
            if (parse_uint("--stats-slot", optarg, 65535, &v) != 0)
                return 2;
            child.stats_slot = (long)v;
            break;
        case OPT_VERSION:
            printf("legate %s%s\n", LEGATE_VERSION, LEGATE_BUILD_TAG);
            return 0;
        case OPT_HOT_RESTART_VERSION:
            /* the shared-memory layout: generations that print the same share a segment */
            printf("%u\n", STATS_LAYOUT_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "legate: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    if (child.role != NULL) {
        if (child.config_fd < 0 || child.config_name == NULL || child.runtime_dir == NULL) {
            fprintf(stderr, "legate: --child-role is internal to the supervisor\n");
            return 2;
        }
        opt.sandbox.root = chroot_dir;
#ifdef LEGATE_SANITIZE_BUILD
        opt.sandbox.relaxed = true;
#endif
        if (opt.sandbox.drop && chroot_dir == NULL) {
            fprintf(stderr, "legate: --sandbox-uid needs --chroot\n");
            return 2;
        }
        return child_main(&child, &opt);
    }

    struct config cfg;
    struct config_errors errs = {0};
    int rc = config_path != NULL ? config_load_file(config_path, &cfg, &errs)
                                 : config_load_string("<embedded>", config_default_yaml,
                                                      strlen(config_default_yaml), &cfg, &errs);
    if (rc != 0) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        config_errors_free(&errs);
        return 1;
    }
    char err[512];
    if (access_log_check_config(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        config_free(&cfg);
        return 1;
    }
    if (validate_only) {
        printf("OK\n");
        config_free(&cfg);
        return 0;
    }
    if (opt.drain_time_ms > opt.parent_shutdown_ms)
        log_warn("--drain-time-s %u exceeds --parent-shutdown-time-s %u: after a hot restart the "
                 "old generation is cut off before its drain time is up",
                 opt.drain_time_ms / 1000, opt.parent_shutdown_ms / 1000);
    if (decide_sandbox(user, group, chroot_dir, &opt.sandbox) != 0) {
        config_free(&cfg);
        return 1;
    }
    char exe[PATH_MAX];
    if (find_own_path(argv[0], exe, sizeof(exe)) != 0) {
        fprintf(stderr, "legate: cannot find my own binary (%s): hot restart by signal needs it\n",
                argv[0]);
        config_free(&cfg);
        return 1;
    }
    opt.exe_path = exe;
    opt.config_path = config_path;
    log_info("legate %s%s starting with %s, %u workers, epoch %u", LEGATE_VERSION, LEGATE_BUILD_TAG,
             config_path ? config_path : "the embedded default config", opt.concurrency,
             opt.restart_epoch);
    rc = supervisor_run(&cfg, &opt);
    config_free(&cfg);
    return rc;
}

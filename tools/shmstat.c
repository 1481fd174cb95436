/* shmstat: read a legate's statistics straight from shared memory, without
 * the admin port and without the proxy's help; after it has died, too.
 *
 * The segment is opened O_RDONLY and mapped PROT_READ: shmstat can never
 * change what it reads. Every offset is validated before use (stats_attach),
 * and every entry is copied and checked before it is trusted, so a truncated
 * or hostile segment gives an error, never a crash. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "shm/stats.h"
#include "shm/stats_export.h"

enum format { FMT_TEXT, FMT_JSON, FMT_PROMETHEUS };

struct options {
    unsigned base_id;
    enum format format;
    const char *filter;
    bool per_process;
    bool hosts;
    double watch; /* seconds; 0: print once */
    long count;   /* --watch rounds; 0: until interrupted */
};

static void usage(FILE *out)
{
    fprintf(out, "usage: shmstat [--base-id N] [--format text|json|prometheus] [--filter REGEX]\n"
                 "               [--per-process] [--hosts] [--watch SECONDS [--count N]]\n"
                 "Reads the statistics of the legate started with --base-id N (default 0)\n"
                 "from shared memory (/dev/shm/legate.N.stats), read-only.\n"
                 "  --format       text (Envoy's /stats), json, or prometheus\n"
                 "  --filter       only stats whose name matches the POSIX extended regex\n"
                 "  --per-process  each stat's value in every process slot\n"
                 "  --hosts        per-upstream-host stats (as /clusters shows them)\n"
                 "  --watch S      redraw every S seconds: value and rate per second for\n"
                 "                 counters, value for gauges, p50/p90/p99/p99.9 for histograms\n"
                 "  --count N      with --watch: stop after N redraws\n");
}

/* "base ids 0, 7" of the segments that exist, for an error message. */
static void list_segments(char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && o + 16 < cap) {
        unsigned id;
        char tail[8];
        if (sscanf(e->d_name, "legate.%u.%7s", &id, tail) == 2 && strcmp(tail, "stats") == 0)
            o += (size_t)snprintf(out + o, cap - o, "%s%u", o ? ", " : "", id);
    }
    closedir(d);
}

/* The layout version a segment claims, read without trusting anything else. */
static long segment_layout_version(const char *shm_name)
{
    int fd = shm_open(shm_name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct {
        uint64_t magic;
        uint32_t version;
    } head;
    ssize_t n = pread(fd, &head, sizeof(head), 0);
    close(fd);
    return n == (ssize_t)sizeof(head) && head.magic == STATS_MAGIC ? (long)head.version : -1;
}

static int open_segment(const struct options *o, struct stats *s)
{
    char shm_name[64];
    stats_shm_name(o->base_id, shm_name, sizeof(shm_name));
    const char *why = NULL;
    if (stats_attach(s, shm_name, true, &why) == 0)
        return 0;
    int e = errno;
    char present[256];
    list_segments(present, sizeof(present));
    if (e == ENOENT) {
        fprintf(stderr, "shmstat: no statistics segment for base id %u (/dev/shm%s)\n", o->base_id,
                shm_name);
        if (present[0])
            fprintf(stderr, "shmstat: segments exist for base ids: %s (use --base-id)\n", present);
        else
            fprintf(stderr, "shmstat: no legate statistics segment exists on this machine\n");
    } else if (e == EACCES)
        fprintf(stderr,
                "shmstat: /dev/shm%s: permission denied (the segment is mode 0600, owned by "
                "the user legate runs as)\n",
                shm_name);
    else {
        long v = segment_layout_version(shm_name);
        if (v >= 0 && v != STATS_LAYOUT_VERSION)
            fprintf(stderr,
                    "shmstat: /dev/shm%s: layout version %ld, this shmstat reads version %u "
                    "(use the shmstat of the same legate build)\n",
                    shm_name, v, STATS_LAYOUT_VERSION);
        else
            fprintf(stderr, "shmstat: /dev/shm%s: not a usable legate statistics segment: %s\n",
                    shm_name, why ? why : strerror(e));
    }
    return -1;
}

/* Whether the supervisor that made the segment still runs, and if not how
 * old the data is (its uptime gauge is the last second it wrote). */
static void describe_owner(const struct stats *s, char *out, size_t cap, bool *alive)
{
    const struct stats_header *h = s->hdr;
    pid_t pid = h->supervisor_pid;
    *alive = stats_owner_alive(s);
    if (*alive) {
        snprintf(out, cap, "supervisor pid %d, alive", (int)pid);
        return;
    }
    int id = stats_find(s, "server.uptime", strlen("server.uptime"));
    int64_t uptime = id >= 0 ? stats_gauge_value(s, id) : 0, last, age;
    /* numbers from shared memory: any of them may be absurd */
    if (__builtin_add_overflow((int64_t)h->created_unix, uptime, &last) ||
        __builtin_sub_overflow((int64_t)time(NULL), last, &age) || age < 0)
        snprintf(out, cap, "supervisor pid %d is gone; the age of the data is unknown", (int)pid);
    else
        snprintf(out, cap, "supervisor pid %d is gone; the data is %lld s old", (int)pid,
                 (long long)age);
}

static void print_per_process(const struct stats *s, const struct stats_view *v, bool json,
                              struct buf *out)
{
    if (json)
        buf_printf(out, "{\"per_process\":[");
    for (size_t i = 0; i < v->n; i++) {
        const struct stat_row *r = &v->rows[i];
        if (json) {
            buf_printf(out, "%s{\"name\":", i ? "," : "");
            json_append_string(out, r->name, strlen(r->name));
            buf_printf(out, ",\"slots\":[");
        } else {
            buf_printf(out, "%s: ", r->name);
            if (r->kind == STAT_GAUGE)
                buf_printf(out, "%lld |", (long long)(int64_t)r->value);
            else
                buf_printf(
                    out, "%llu |",
                    (unsigned long long)(r->kind == STAT_HISTOGRAM ? r->hist->count : r->value));
        }
        bool first = true;
        for (uint32_t slot = 0; slot < v->n_slots; slot++) {
            struct stats_slot_info si;
            if (r->per_slot[slot] == 0 || !stats_slot_info(s, slot, &si))
                continue;
            char val[24];
            if (r->kind == STAT_GAUGE)
                snprintf(val, sizeof(val), "%lld", (long long)(int64_t)r->per_slot[slot]);
            else
                snprintf(val, sizeof(val), "%llu", (unsigned long long)r->per_slot[slot]);
            if (json) {
                buf_printf(out, "%s{\"slot\":%u,\"process\":", first ? "" : ",", slot);
                json_append_string(out, si.title, strlen(si.title));
                buf_printf(out, ",\"pid\":%d,\"epoch\":%u,\"value\":%s}", (int)si.pid, si.epoch,
                           val);
            } else
                buf_printf(out, " %s@%u[%d]=%s", si.title[0] ? si.title : "?", si.epoch,
                           (int)si.pid, val);
            first = false;
        }
        buf_printf(out, json ? "]}" : "\n");
    }
    if (json)
        buf_printf(out, "]}\n");
}

static int print_once(const struct options *o, const struct stats *s, const regex_t *re)
{
    struct stats_view_opts vo = {.filter = re, .hosts = o->hosts, .per_slot = o->per_process};
    struct stats_view v;
    if (stats_view_take(s, &vo, &v) != 0) {
        fprintf(stderr, "shmstat: out of memory\n");
        return 1;
    }
    char owner[128];
    bool alive;
    describe_owner(s, owner, sizeof(owner), &alive);
    struct buf out = {0};
    if (o->format == FMT_JSON && !o->per_process) {
        /* Envoy's JSON, with what shmstat knows about the segment first. */
        buf_printf(&out,
                   "{\"segment\":{\"base_id\":%u,\"epoch\":%u,\"layout_version\":%u,"
                   "\"supervisor_pid\":%d,\"owner_alive\":%s,\"owner\":",
                   s->hdr->base_id, s->hdr->epoch, s->hdr->layout_version,
                   (int)s->hdr->supervisor_pid, alive ? "true" : "false");
        json_append_string(&out, owner, strlen(owner));
        buf_printf(&out, "},");
        struct buf body = {0};
        stats_render_json(&v, &body);
        buf_append(&out, buf_head(&body) + 1, buf_len(&body) - 1); /* after its '{' */
        buf_release(&body);
    } else if (o->per_process) {
        if (o->format != FMT_JSON)
            buf_printf(&out, "# legate base id %u, epoch %u: %s\n", s->hdr->base_id, s->hdr->epoch,
                       owner);
        print_per_process(s, &v, o->format == FMT_JSON, &out);
    } else {
        buf_printf(&out, "# legate base id %u, epoch %u: %s\n", s->hdr->base_id, s->hdr->epoch,
                   owner);
        if (o->format == FMT_PROMETHEUS)
            stats_render_prometheus(&v, &out);
        else
            stats_render_text(&v, &out);
    }
    fwrite(buf_head(&out), 1, buf_len(&out), stdout);
    buf_release(&out);
    stats_view_free(&v);
    return 0;
}

/* --- watch ---------------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

/* The segment shrank under our mapping (ftruncate by its owner, or a hostile
 * one): reading past its new end raises SIGBUS. Say so, never dump core. */
static void on_sigbus(int sig)
{
    (void)sig;
    static const char msg[] = "\nshmstat: the segment shrank while being read\n";
    ssize_t rc = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)rc;
    _exit(1);
}

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void draw(const struct stats *s, const struct stats_view *cur, const struct stats_view *prev,
                 double elapsed, struct buf *out)
{
    char owner[128];
    bool alive;
    describe_owner(s, owner, sizeof(owner), &alive);
    buf_printf(out, "\033[H\033[2Jlegate base id %u, epoch %u: %s\n%-60s %16s %12s\n",
               s->hdr->base_id, s->hdr->epoch, owner, "NAME", "VALUE", "RATE/s");
    size_t j = 0; /* both views are sorted by name: walk them together */
    for (size_t i = 0; i < cur->n; i++) {
        const struct stat_row *r = &cur->rows[i];
        while (prev != NULL && j < prev->n && strcmp(prev->rows[j].name, r->name) < 0)
            j++;
        const struct stat_row *p =
            prev != NULL && j < prev->n && strcmp(prev->rows[j].name, r->name) == 0 ? &prev->rows[j]
                                                                                    : NULL;
        if (r->kind == STAT_COUNTER) {
            buf_printf(out, "%-60s %16llu", r->name, (unsigned long long)r->value);
            if (p != NULL && elapsed > 0 && r->value >= p->value)
                buf_printf(out, " %12.1f", (double)(r->value - p->value) / elapsed);
            buf_printf(out, "\n");
        } else if (r->kind == STAT_GAUGE) {
            buf_printf(out, "%-60s %16lld\n", r->name, (long long)(int64_t)r->value);
        } else {
            buf_printf(out, "%-60s %16llu  p50 %llu p90 %llu p99 %llu p99.9 %llu\n", r->name,
                       (unsigned long long)r->hist->count,
                       (unsigned long long)stats_hist_quantile(r->hist, 0.5),
                       (unsigned long long)stats_hist_quantile(r->hist, 0.9),
                       (unsigned long long)stats_hist_quantile(r->hist, 0.99),
                       (unsigned long long)stats_hist_quantile(r->hist, 0.999));
        }
    }
}

static int watch(const struct options *o, const struct stats *s, const regex_t *re)
{
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct stats_view_opts vo = {.filter = re, .hosts = o->hosts};
    /* Two views, swapped each round and refreshed in place: with no new
     * stat, a round reads values only (no names copied, nothing sorted). */
    struct stats_view views[2] = {{0}};
    struct stats_view *cur = &views[0], *prev = &views[1];
    bool have_prev = false;
    double prev_t = 0;
    int rc = 0;
    for (long round = 0; !interrupted && (o->count == 0 || round < o->count); round++) {
        if ((cur->rows == NULL ? stats_view_take(s, &vo, cur) : stats_view_refresh(s, &vo, cur)) !=
            0) {
            fprintf(stderr, "shmstat: out of memory\n");
            rc = 1;
            break;
        }
        double t = now_seconds();
        struct buf out = {0};
        draw(s, cur, have_prev ? prev : NULL, t - prev_t, &out);
        fwrite(buf_head(&out), 1, buf_len(&out), stdout);
        fflush(stdout);
        buf_release(&out);
        struct stats_view *swap = prev;
        prev = cur;
        cur = swap;
        have_prev = true;
        prev_t = t;
        if (o->count != 0 && round + 1 >= o->count)
            break;
        struct timespec ts = {.tv_sec = (time_t)o->watch,
                              .tv_nsec = (long)((o->watch - (double)(time_t)o->watch) * 1e9)};
        while (!interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    stats_view_free(&views[0]);
    stats_view_free(&views[1]);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    enum {
        OPT_BASE_ID = 256,
        OPT_FORMAT,
        OPT_FILTER,
        OPT_PER_PROCESS,
        OPT_HOSTS,
        OPT_WATCH,
        OPT_COUNT
    };
    static const struct option longopts[] = {
        {"base-id", required_argument, NULL, OPT_BASE_ID},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"filter", required_argument, NULL, OPT_FILTER},
        {"per-process", no_argument, NULL, OPT_PER_PROCESS},
        {"hosts", no_argument, NULL, OPT_HOSTS},
        {"watch", required_argument, NULL, OPT_WATCH},
        {"count", required_argument, NULL, OPT_COUNT},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case OPT_BASE_ID: {
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || v > 0xffffffffUL) {
                fprintf(stderr, "shmstat: --base-id: '%s' is not a number\n", optarg);
                return 2;
            }
            o.base_id = (unsigned)v;
            break;
        }
        case OPT_FORMAT:
            if (strcmp(optarg, "text") == 0)
                o.format = FMT_TEXT;
            else if (strcmp(optarg, "json") == 0)
                o.format = FMT_JSON;
            else if (strcmp(optarg, "prometheus") == 0)
                o.format = FMT_PROMETHEUS;
            else {
                fprintf(stderr, "shmstat: --format: '%s': use text, json or prometheus\n", optarg);
                return 2;
            }
            break;
        case OPT_FILTER:
            o.filter = optarg;
            break;
        case OPT_PER_PROCESS:
            o.per_process = true;
            break;
        case OPT_HOSTS:
            o.hosts = true;
            break;
        case OPT_WATCH:
            o.watch = strtod(optarg, &end);
            if (end == optarg || *end || !(o.watch >= 0.05 && o.watch <= 86400)) {
                fprintf(stderr, "shmstat: --watch: '%s': seconds between 0.05 and 86400\n", optarg);
                return 2;
            }
            break;
        case OPT_COUNT:
            o.count = strtol(optarg, &end, 10);
            if (end == optarg || *end || o.count < 1) {
                fprintf(stderr, "shmstat: --count: '%s': a positive number\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "shmstat: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    regex_t re;
    char why[128];
    if (o.filter != NULL && stats_filter_compile(&re, o.filter, why, sizeof(why)) != 0) {
        fprintf(stderr, "shmstat: --filter '%s': %s\n", o.filter, why);
        return 2;
    }
    struct sigaction bus = {.sa_handler = on_sigbus};
    sigaction(SIGBUS, &bus, NULL);
    struct stats s;
    if (open_segment(&o, &s) != 0)
        return 1;
    int rc = o.watch > 0 ? watch(&o, &s, o.filter ? &re : NULL)
                         : print_once(&o, &s, o.filter ? &re : NULL);
    stats_detach(&s);
    if (o.filter != NULL)
        regfree(&re);
    return rc;
}

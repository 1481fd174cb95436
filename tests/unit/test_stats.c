/* Statistics in shared memory: registration, slots, histograms, writers in many processes, writers
 * killed at any instruction, and hostile segments handed to a read-only reader. Written against the
 * contract in shm/stats.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/stats.h"

/* A test that hangs fails after this long instead of wedging the run. */
#define TEST_TIMEOUT_S 8
/* How long a child may run before it is killed and the test fails. */
#define CHILD_TIMEOUT_MS 6000

#define MAX_NAMES 8
#define MAX_PIDS 32
#define MAX_VIEWS 8
#define MAX_BUFS 8

/* What a test leaves behind, undone in teardown even when the test fails. */
static struct {
    char names[MAX_NAMES][80];
    int n_names;
    pid_t pids[MAX_PIDS];
    int n_pids;
    struct stats views[MAX_VIEWS];
    int n_views;
    void *bufs[MAX_BUFS];
    int n_bufs;
} fx;

static unsigned name_seq;

/* ---- fixture ---- */

static void on_alarm(int sig)
{
    (void)sig;
    fail_msg("test ran past %d s: a read, a write or a wait hung", TEST_TIMEOUT_S);
}

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof(fx));
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_NODEFER; /* we leave the handler by longjmp */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(TEST_TIMEOUT_S);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    alarm(0);
    for (int i = 0; i < fx.n_pids; i++) {
        if (fx.pids[i] > 0) {
            kill(fx.pids[i], SIGKILL);
            waitpid(fx.pids[i], NULL, 0);
        }
    }
    for (int i = 0; i < fx.n_views; i++) {
        if (fx.views[i].base != NULL)
            stats_detach(&fx.views[i]);
    }
    for (int i = 0; i < fx.n_names; i++)
        shm_unlink(fx.names[i]);
    for (int i = 0; i < fx.n_bufs; i++)
        free(fx.bufs[i]);
    memset(&fx, 0, sizeof(fx));
    return 0;
}

/* A fresh shm name, unlinked in teardown. */
static const char *new_name(void)
{
    assert_true(fx.n_names < MAX_NAMES);
    char *n = fx.names[fx.n_names++];
    snprintf(n, sizeof(fx.names[0]), "/legate-test-%d-%u.stats", (int)getpid(), name_seq++);
    shm_unlink(n);
    return n;
}

/* Memory freed in teardown. */
static void *new_buf(size_t size)
{
    assert_true(fx.n_bufs < MAX_BUFS);
    void *p = calloc(1, size ? size : 1);
    assert_non_null(p);
    fx.bufs[fx.n_bufs++] = p;
    return p;
}

/* A view detached in teardown. */
static struct stats *new_view(void)
{
    assert_true(fx.n_views < MAX_VIEWS);
    struct stats *s = &fx.views[fx.n_views++];
    memset(s, 0, sizeof(*s));
    return s;
}

static void drop_view(struct stats *s)
{
    stats_detach(s);
    memset(s, 0, sizeof(*s));
}

static struct stats *make(const char *name, uint32_t max_stats, uint32_t max_hists,
                          uint32_t n_slots, uint64_t arena)
{
    struct stats *s = new_view();
    struct stats_layout l = {
        .max_stats = max_stats,
        .max_histograms = max_hists,
        .n_slots = n_slots,
        .arena_size = arena,
    };
    if (stats_create(s, name, &l, 7, 3) != 0) {
        int e = errno;
        memset(s, 0, sizeof(*s));
        fail_msg("stats_create(%s): %s", name, strerror(e));
    }
    assert_non_null(s->base);
    stats_set_slot(s, 0);
    return s;
}

static struct stats *attach(const char *name, bool read_only)
{
    struct stats *s = new_view();
    const char *why = NULL;
    if (stats_attach(s, name, read_only, &why) != 0) {
        int e = errno;
        memset(s, 0, sizeof(*s));
        fail_msg("stats_attach(%s, ro=%d): %s (%s)", name, read_only, why ? why : "no reason",
                 strerror(e));
    }
    return s;
}

/* ---- children ---- */

/* Children must not run cmocka: a check that fails exits with a code. */
#define CHILD_CHECK(c)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "child %d: %s:%d: check failed: %s\n", (int)getpid(), __FILE__,        \
                    __LINE__, #c);                                                                 \
            _exit(10);                                                                             \
        }                                                                                          \
    } while (0)

static pid_t spawn(void)
{
    assert_true(fx.n_pids < MAX_PIDS);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A crash must kill the child, not resume the suite inside it. */
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT, SIGALRM};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            signal(sigs[i], SIG_DFL);
        alarm(TEST_TIMEOUT_S + 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the suite */
        return 0;
    }
    fx.pids[fx.n_pids++] = pid;
    return pid;
}

static void forget_pid(pid_t pid)
{
    for (int i = 0; i < fx.n_pids; i++) {
        if (fx.pids[i] == pid) {
            fx.pids[i] = fx.pids[--fx.n_pids];
            return;
        }
    }
}

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void sleep_us(uint64_t us)
{
    struct timespec t = {.tv_sec = (time_t)(us / 1000000u),
                         .tv_nsec = (long)(us % 1000000u) * 1000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* The child's wait status, or -1 if it ran past timeout_ms (it is then killed). */
static int wait_child(pid_t pid, int timeout_ms)
{
    uint64_t deadline = now_us() + (uint64_t)timeout_ms * 1000u;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            forget_pid(pid);
            return st;
        }
        if (r < 0 && errno != EINTR)
            fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
        if (now_us() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            forget_pid(pid);
            return -1;
        }
        sleep_us(500);
    }
}

static void expect_child_ok(pid_t pid, const char *what)
{
    int st = wait_child(pid, CHILD_TIMEOUT_MS);
    if (st == -1)
        fail_msg("%s: child %d did not finish in %d ms", what, (int)pid, CHILD_TIMEOUT_MS);
    if (WIFSIGNALED(st))
        fail_msg("%s: child %d died of signal %d (%s)", what, (int)pid, WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    if (WEXITSTATUS(st) != 0)
        fail_msg("%s: child %d exited %d (its reason is on stderr)", what, (int)pid,
                 WEXITSTATUS(st));
}

/* ---- small helpers ---- */

static bool name_is(const struct stats *s, int id, const char *want, size_t want_len)
{
    const struct stats_entry *e = stats_entry_at(s, (uint32_t)id);
    if (e == NULL)
        return false;
    size_t len = 0;
    const char *n = stats_name(s, e, &len);
    return n != NULL && len == want_len && memcmp(n, want, len) == 0;
}

static void assert_name(const struct stats *s, int id, const char *want)
{
    if (!name_is(s, id, want, strlen(want)))
        fail_msg("id %d does not read back as \"%.60s\" (%zu bytes)", id, want, strlen(want));
}

/* n bytes that differ from position to position, so a shifted or truncated copy shows. */
static char *long_name(size_t n, char tag)
{
    char *p = new_buf(n + 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + (size_t)tag) % 26);
    p[0] = tag;
    if (n > 10)
        memcpy(p + n - 5, ".tail", 5);
    p[n] = '\0';
    return p;
}

static uint32_t published(const struct stats *s)
{
    uint32_t n = stats_count(s), k = 0;
    for (uint32_t id = 0; id < n; id++)
        k += stats_entry_at(s, id) != NULL;
    return k;
}

/* ---- 8. the name ---- */

static void test_shm_name_format(void **state)
{
    (void)state;
    char buf[64];
    stats_shm_name(0, buf, sizeof(buf));
    assert_string_equal(buf, "/legate.0.stats");
    stats_shm_name(42, buf, sizeof(buf));
    assert_string_equal(buf, "/legate.42.stats");
    stats_shm_name(4294967295u, buf, sizeof(buf));
    assert_string_equal(buf, "/legate.4294967295.stats");
    /* Exactly enough room. */
    stats_shm_name(42, buf, strlen("/legate.42.stats") + 1);
    assert_string_equal(buf, "/legate.42.stats");
    /* Too little: nothing past cap is written, and what is there is terminated. */
    memset(buf, 'Z', sizeof(buf));
    stats_shm_name(123456, buf, 8);
    assert_true(memchr(buf, '\0', 8) != NULL);
    for (size_t i = 8; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 'Z');
}

/* ---- 1. create, register, write, read ---- */

static void test_create_writes_a_valid_header(void **state)
{
    (void)state;
    const char *nm = new_name();
    time_t before = time(NULL);
    struct stats *s = make(nm, 64, 8, 4, 64 * 1024);
    const struct stats_header *h = s->hdr;
    assert_ptr_equal(h, s->base);
    assert_false(s->read_only);
    assert_true(h->magic == STATS_MAGIC);
    assert_int_equal(h->layout_version, STATS_LAYOUT_VERSION);
    assert_int_equal(h->header_size, sizeof(struct stats_header));
    assert_int_equal(h->base_id, 7);
    assert_int_equal(h->epoch, 3);
    assert_int_equal(h->supervisor_pid, getpid());
    assert_true(h->created_unix >= before - 1 && h->created_unix <= time(NULL) + 1);
    assert_int_equal(h->n_slots, 4);
    assert_true(h->max_stats >= 64);
    assert_true(h->max_histograms >= 8);
    assert_true(h->arena_size >= 64 * 1024);
    assert_true(h->total_size <= s->size);
    assert_int_equal(atomic_load(&h->n_reserved), 0);
    assert_int_equal(atomic_load(&h->n_hists), 0);
    assert_int_equal(atomic_load(&h->arena_used), 0);
    assert_true(atomic_load(&h->owner_alive) != 0);
    assert_int_equal(stats_count(s), 0);
    assert_null(stats_entry_at(s, 0));

    /* Regions: inside the segment, apart from each other, aligned for atomics. */
    const struct {
        uint64_t off, len;
    } r[] = {
        {0, h->header_size},
        {h->table_off, (uint64_t)h->max_stats * sizeof(struct stats_entry)},
        {h->arena_off, h->arena_size},
        {h->cells_off, (uint64_t)h->n_slots * h->max_stats * 8u},
        {h->hists_off, (uint64_t)h->n_slots * h->max_histograms * sizeof(struct stats_hist_cells)},
    };
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        assert_true(r[i].off + r[i].len <= h->total_size);
        for (size_t j = 0; j < i; j++)
            assert_true(r[i].off + r[i].len <= r[j].off || r[j].off + r[j].len <= r[i].off);
    }
    assert_int_equal(h->table_off % 8, 0);
    assert_int_equal(h->cells_off % 8, 0);
    assert_int_equal(h->hists_off % 8, 0);

    const char *why = "untouched";
    assert_int_equal(stats_validate(s->base, h->total_size, &why), 0);
    assert_int_equal(stats_validate(s->base, s->size, &why), 0);

    /* 0600, and as large as the header says. */
    int fd = shm_open(nm, O_RDONLY, 0);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    close(fd);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true((uint64_t)st.st_size >= h->total_size);
}

static void test_create_replaces_a_stale_segment(void **state)
{
    (void)state;
    const char *nm = new_name();
    int fd = shm_open(nm, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    char junk[300];
    memset(junk, 0xA5, sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);

    struct stats *s = make(nm, 16, 2, 2, 4096);
    assert_true(s->hdr->magic == STATS_MAGIC);
    int c = stats_register(s, "old.generation", STAT_COUNTER);
    assert_true(c >= 0);
    stats_inc(s, c, 99);
    drop_view(s);

    /* A second create starts from zero: nothing of the first survives. */
    s = make(nm, 16, 2, 2, 4096);
    assert_int_equal(stats_count(s), 0);
    assert_int_equal(stats_find(s, "old.generation", 14), -1);
    const char *why = NULL;
    assert_int_equal(stats_validate(s->base, s->hdr->total_size, &why), 0);
}

static void test_register_write_read(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 64, 8, 4, 64 * 1024);
    const char *cn = "http.ingress.downstream_rq_total";
    const char *gn = "listener.0.0.0.0_8080.downstream_cx_active";
    const char *hn = "cluster.backend.upstream_rq_time";

    int c = stats_register(s, cn, STAT_COUNTER);
    int g = stats_register(s, gn, STAT_GAUGE);
    int h = stats_register(s, hn, STAT_HISTOGRAM);
    assert_true(c >= 0 && g >= 0 && h >= 0);
    assert_true(c != g && g != h && c != h);

    /* The same name again: the same id. */
    assert_int_equal(stats_register(s, cn, STAT_COUNTER), c);
    assert_int_equal(stats_register(s, gn, STAT_GAUGE), g);
    assert_int_equal(stats_register(s, hn, STAT_HISTOGRAM), h);
    /* The same name as another kind: refused, and the original untouched. */
    assert_int_equal(stats_register(s, cn, STAT_GAUGE), -1);
    assert_int_equal(stats_register(s, cn, STAT_HISTOGRAM), -1);
    assert_int_equal(stats_register(s, gn, STAT_COUNTER), -1);
    assert_int_equal(stats_register(s, hn, STAT_COUNTER), -1);
    assert_int_equal(stats_register(s, hn, STAT_GAUGE), -1);
    assert_int_equal(stats_find(s, cn, strlen(cn)), c);
    assert_int_equal(stats_entry_at(s, (uint32_t)c)->kind, STAT_COUNTER);

    stats_inc(s, c, 1);
    stats_inc(s, c, 41);
    assert_int_equal(stats_counter_value(s, c), 42);
    stats_inc(s, c, 0);
    assert_int_equal(stats_counter_value(s, c), 42);

    stats_gauge_add(s, g, 5);
    stats_gauge_add(s, g, -2);
    assert_true(stats_gauge_value(s, g) == 3);
    stats_gauge_set(s, g, 10);
    assert_true(stats_gauge_value(s, g) == 10);
    stats_gauge_add(s, g, -15);
    assert_true(stats_gauge_value(s, g) == -5);

    stats_hist_record(s, h, 3);
    stats_hist_record(s, h, 100);
    stats_hist_record(s, h, 1000);
    struct stats_hist_snapshot snap;
    stats_hist_read(s, h, &snap);
    assert_int_equal(snap.count, 3);
    assert_int_equal(snap.sum, 1103);
    uint64_t total = 0;
    for (int b = 0; b < STATS_HIST_BUCKETS; b++)
        total += snap.buckets[b];
    assert_int_equal(total, 3);
    assert_int_equal(snap.buckets[stats_hist_bucket(3)], 1);
    assert_int_equal(snap.buckets[stats_hist_bucket(100)], 1);
    assert_int_equal(snap.buckets[stats_hist_bucket(1000)], 1);

    /* Writes of one kind never leak into another. */
    assert_int_equal(stats_counter_value(s, c), 42);
    assert_true(stats_gauge_value(s, g) == -5);

    /* Find, count, entries, names. */
    assert_int_equal(stats_find(s, gn, strlen(gn)), g);
    assert_int_equal(stats_find(s, hn, strlen(hn)), h);
    assert_int_equal(stats_find(s, "nope", 4), -1);
    assert_int_equal(stats_find(s, cn, strlen(cn) - 1), -1); /* a prefix is another name */
    assert_int_equal(stats_count(s), 3);
    assert_int_equal(published(s), 3);
    assert_name(s, c, cn);
    assert_name(s, g, gn);
    assert_name(s, h, hn);
    assert_int_equal(stats_entry_at(s, (uint32_t)g)->kind, STAT_GAUGE);
    assert_int_equal(stats_entry_at(s, (uint32_t)h)->kind, STAT_HISTOGRAM);
    assert_true(stats_entry_at(s, (uint32_t)c)->index < s->hdr->max_stats);
    assert_true(stats_entry_at(s, (uint32_t)g)->index < s->hdr->max_stats);
    assert_true(stats_entry_at(s, (uint32_t)c)->index != stats_entry_at(s, (uint32_t)g)->index);
    assert_true(stats_entry_at(s, (uint32_t)h)->index < s->hdr->max_histograms);
    assert_null(stats_entry_at(s, 3));
    assert_null(stats_entry_at(s, s->hdr->max_stats));
    assert_null(stats_entry_at(s, UINT32_MAX));

    /* Lengths, not terminators, delimit names: "ab" and "abc" are both found in "abcdef". */
    int ab = stats_register(s, "ab", STAT_COUNTER);
    int abc = stats_register(s, "abc", STAT_COUNTER);
    assert_true(ab >= 0 && abc >= 0 && ab != abc);
    assert_int_equal(stats_find(s, "abcdef", 2), ab);
    assert_int_equal(stats_find(s, "abcdef", 3), abc);
    assert_int_equal(stats_find(s, "abcdef", 4), -1);
    assert_name(s, ab, "ab");
    assert_name(s, abc, "abc");
    assert_int_equal(stats_count(s), 5);

    /* A read-only view of another mapping sees the same. */
    struct stats *r = attach(nm, true);
    assert_true(r->read_only);
    assert_int_equal(stats_find(r, cn, strlen(cn)), c);
    assert_int_equal(stats_counter_value(r, c), 42);
    assert_true(stats_gauge_value(r, g) == -5);
    stats_hist_read(r, h, &snap);
    assert_int_equal(snap.count, 3);
    assert_int_equal(stats_count(r), 5);
    assert_name(r, abc, "abc");
}

static void test_names_of_any_length(void **state)
{
    (void)state;
    struct stats *s = make(new_name(), 64, 4, 2, 64 * 1024);
    char *n1000 = long_name(1000, 'k');
    char *n10000 = long_name(10000, 'm');
    char *n1001 = long_name(1001, 'k'); /* shares the first 995 bytes with n1000 */
    int a = stats_register(s, n1000, STAT_COUNTER);
    int b = stats_register(s, n10000, STAT_GAUGE);
    int c = stats_register(s, n1001, STAT_HISTOGRAM);
    int d = stats_register(s, "short", STAT_COUNTER);
    assert_true(a >= 0 && b >= 0 && c >= 0 && d >= 0);
    assert_true(a != b && a != c && b != c);
    assert_int_equal(stats_register(s, n1000, STAT_COUNTER), a);
    assert_int_equal(stats_register(s, n10000, STAT_GAUGE), b);
    assert_int_equal(stats_find(s, n1000, 1000), a);
    assert_int_equal(stats_find(s, n10000, 10000), b);
    assert_int_equal(stats_find(s, n1001, 1001), c);
    assert_int_equal(stats_find(s, n10000, 9999), -1);

    size_t len = 0;
    const char *p = stats_name(s, stats_entry_at(s, (uint32_t)a), &len);
    assert_int_equal(len, 1000);
    assert_memory_equal(p, n1000, 1000);
    p = stats_name(s, stats_entry_at(s, (uint32_t)b), &len);
    assert_int_equal(len, 10000);
    assert_memory_equal(p, n10000, 10000);
    p = stats_name(s, stats_entry_at(s, (uint32_t)c), &len);
    assert_int_equal(len, 1001);
    assert_memory_equal(p, n1001, 1001);
    assert_name(s, d, "short");

    stats_inc(s, a, 5);
    stats_gauge_add(s, b, -7);
    assert_int_equal(stats_counter_value(s, a), 5);
    assert_true(stats_gauge_value(s, b) == -7);
}

/* ---- 2. capacity ---- */

static void test_table_full(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 16, 4, 2, 8192);
    uint32_t max = s->hdr->max_stats;
    assert_true(max >= 16 && max < 4096);
    int *ids = new_buf(max * sizeof(int));
    char name[32];
    for (uint32_t i = 0; i < max; i++) {
        snprintf(name, sizeof(name), "c.%u", i);
        ids[i] = stats_register(s, name, i % 2 ? STAT_GAUGE : STAT_COUNTER);
        assert_true(ids[i] >= 0);
        if (i % 2)
            stats_gauge_set(s, ids[i], -(int64_t)i);
        else
            stats_inc(s, ids[i], i + 1);
    }
    for (int k = 0; k < 3; k++) {
        assert_int_equal(stats_register(s, "overflow.counter", STAT_COUNTER), -1);
        assert_int_equal(stats_register(s, "overflow.gauge", STAT_GAUGE), -1);
        assert_int_equal(stats_register(s, "overflow.histogram", STAT_HISTOGRAM), -1);
    }
    assert_int_equal(stats_find(s, "overflow.counter", 16), -1);
    /* Existing ones are still found when the table is full. */
    assert_int_equal(stats_register(s, "c.0", STAT_COUNTER), ids[0]);
    assert_int_equal(stats_register(s, "c.1", STAT_GAUGE), ids[1]);
    /* Nothing overwritten. */
    assert_int_equal(stats_count(s), max);
    assert_int_equal(published(s), max);
    for (uint32_t i = 0; i < max; i++) {
        snprintf(name, sizeof(name), "c.%u", i);
        assert_name(s, ids[i], name);
        assert_int_equal(stats_find(s, name, strlen(name)), ids[i]);
        if (i % 2)
            assert_true(stats_gauge_value(s, ids[i]) == -(int64_t)i);
        else
            assert_int_equal(stats_counter_value(s, ids[i]), i + 1);
    }
    /* A full table is a normal state, not a corrupt segment. */
    const char *why = NULL;
    if (stats_validate(s->base, s->hdr->total_size, &why) != 0)
        fail_msg("a full table no longer validates: %s", why ? why : "?");
    struct stats *r = attach(nm, true);
    assert_int_equal(stats_count(r), max);
    assert_int_equal(stats_counter_value(r, ids[0]), 1);
}

static void test_histograms_full(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 64, 4, 2, 8192);
    uint32_t maxh = s->hdr->max_histograms;
    assert_true(maxh >= 4 && maxh < 64);
    int ids[64];
    char name[32];
    for (uint32_t i = 0; i < maxh; i++) {
        snprintf(name, sizeof(name), "h.%u", i);
        ids[i] = stats_register(s, name, STAT_HISTOGRAM);
        assert_true(ids[i] >= 0);
        stats_hist_record(s, ids[i], 100 + i);
        stats_hist_record(s, ids[i], 100 + i);
    }
    assert_int_equal(stats_register(s, "h.overflow", STAT_HISTOGRAM), -1);
    assert_int_equal(stats_register(s, "h.overflow2", STAT_HISTOGRAM), -1);
    assert_int_equal(stats_find(s, "h.overflow", 10), -1);
    assert_int_equal(stats_register(s, "h.0", STAT_HISTOGRAM), ids[0]);
    /* Counters still have room in the table. */
    int c = stats_register(s, "after.hists.full", STAT_COUNTER);
    assert_true(c >= 0);
    stats_inc(s, c, 3);
    assert_int_equal(stats_counter_value(s, c), 3);
    for (uint32_t i = 0; i < maxh; i++) {
        struct stats_hist_snapshot snap;
        stats_hist_read(s, ids[i], &snap);
        assert_int_equal(snap.count, 2);
        assert_int_equal(snap.sum, 2 * (100 + i));
        assert_int_equal(snap.buckets[stats_hist_bucket(100 + i)], 2);
        snprintf(name, sizeof(name), "h.%u", i);
        assert_name(s, ids[i], name);
    }
    uint32_t n = stats_count(s);
    for (uint32_t id = 0; id < n; id++) {
        const struct stats_entry *e = stats_entry_at(s, id);
        if (e != NULL && (int)id != c)
            assert_int_equal(e->kind, STAT_HISTOGRAM);
    }
    const char *why = NULL;
    if (stats_validate(s->base, s->hdr->total_size, &why) != 0)
        fail_msg("full histogram blocks no longer validate: %s", why ? why : "?");
}

static void test_arena_full(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 64, 4, 2, 4096);
    uint64_t arena = s->hdr->arena_size;
    assert_true(arena >= 4096 && arena < (1u << 20));
    size_t half = (size_t)arena / 2;
    char *n1 = long_name(half - 16, '1');
    char *n2 = long_name(half - 16, '2');
    char *n3 = long_name(half, '3');
    char *huge = long_name((size_t)arena + 1, '4');
    int a = stats_register(s, n1, STAT_COUNTER);
    int b = stats_register(s, n2, STAT_GAUGE);
    assert_true(a >= 0 && b >= 0);
    stats_inc(s, a, 11);
    stats_gauge_set(s, b, -11);
    assert_int_equal(stats_register(s, n3, STAT_COUNTER), -1);
    assert_int_equal(stats_register(s, huge, STAT_COUNTER), -1);
    assert_int_equal(stats_register(s, n3, STAT_HISTOGRAM), -1);
    assert_int_equal(stats_find(s, n3, strlen(n3)), -1);
    assert_int_equal(stats_register(s, n1, STAT_COUNTER), a);

    assert_name(s, a, n1);
    assert_name(s, b, n2);
    assert_int_equal(stats_counter_value(s, a), 11);
    assert_true(stats_gauge_value(s, b) == -11);
    /* What little room is left may or may not take a short name; if it does, it is intact. */
    int z = stats_register(s, "z", STAT_COUNTER);
    if (z >= 0) {
        assert_name(s, z, "z");
        assert_true(z != a && z != b);
    }
    assert_name(s, a, n1);
    assert_name(s, b, n2);
    const char *why = NULL;
    if (stats_validate(s->base, s->hdr->total_size, &why) != 0)
        fail_msg("a full arena no longer validates: %s", why ? why : "?");
    struct stats *r = attach(nm, true);
    assert_name(r, a, n1);
}

/* ---- 3. slots ---- */

static void test_slots_sum(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 32, 4, 4, 4096);
    struct stats *w = attach(nm, false);
    assert_false(w->read_only);
    stats_set_slot(s, 0);
    stats_set_slot(w, 1);

    int c = stats_register(s, "x.counter", STAT_COUNTER);
    int g1 = stats_register(s, "x.gauge1", STAT_GAUGE);
    int g2 = stats_register(w, "x.gauge2", STAT_GAUGE);
    int h = stats_register(w, "x.hist", STAT_HISTOGRAM);
    assert_true(c >= 0 && g1 >= 0 && g2 >= 0 && h >= 0);
    assert_int_equal(stats_register(w, "x.counter", STAT_COUNTER), c);
    assert_int_equal(stats_register(s, "x.hist", STAT_HISTOGRAM), h);

    stats_inc(s, c, 5);
    stats_inc(w, c, 7);
    assert_int_equal(stats_counter_value(s, c), 12);
    assert_int_equal(stats_counter_value(w, c), 12);
    assert_int_equal(stats_slot_value(s, c, 0), 5);
    assert_int_equal(stats_slot_value(s, c, 1), 7);
    assert_int_equal(stats_slot_value(s, c, 2), 0);
    assert_int_equal(stats_slot_value(s, c, 3), 0);

    stats_gauge_add(s, g1, 10);
    stats_gauge_add(s, g1, -4);
    stats_gauge_set(w, g1, -20);
    stats_gauge_add(w, g1, 5);
    stats_gauge_add(s, g2, 1);
    stats_gauge_add(w, g2, 2);
    assert_true(stats_gauge_value(s, g1) == -9);
    assert_true((int64_t)stats_slot_value(s, g1, 0) == 6);
    assert_true((int64_t)stats_slot_value(s, g1, 1) == -15);
    assert_true(stats_gauge_value(s, g2) == 3);

    stats_hist_record(s, h, 10);
    stats_hist_record(s, h, 10);
    stats_hist_record(w, h, 1000);
    struct stats_hist_snapshot snap;
    stats_hist_read(s, h, &snap);
    assert_int_equal(snap.count, 3);
    assert_int_equal(snap.sum, 1020);
    assert_int_equal(snap.buckets[stats_hist_bucket(10)], 2);
    assert_int_equal(snap.buckets[stats_hist_bucket(1000)], 1);

    /* One view may change slot. */
    stats_set_slot(s, 2);
    stats_inc(s, c, 100);
    assert_int_equal(stats_slot_value(s, c, 2), 100);
    assert_int_equal(stats_counter_value(s, c), 112);
    stats_set_slot(s, 0);

    /* The process in slot 1 died: its gauges go, nothing else. */
    stats_slot_reset_gauges(s, 1);
    assert_true(stats_gauge_value(s, g1) == 6);
    assert_true(stats_gauge_value(s, g2) == 1);
    assert_int_equal(stats_slot_value(s, g1, 1), 0);
    assert_int_equal(stats_slot_value(s, g2, 1), 0);
    assert_true((int64_t)stats_slot_value(s, g1, 0) == 6);
    assert_int_equal(stats_counter_value(s, c), 112);
    assert_int_equal(stats_slot_value(s, c, 1), 7);
    stats_hist_read(s, h, &snap);
    assert_int_equal(snap.count, 3);
    assert_int_equal(snap.sum, 1020);
    assert_int_equal(snap.buckets[stats_hist_bucket(1000)], 1);

    /* The slot is reused by its next process. */
    stats_gauge_add(w, g1, 3);
    assert_true(stats_gauge_value(s, g1) == 9);
    stats_slot_reset_gauges(s, 0);
    assert_true(stats_gauge_value(s, g1) == 3);
    assert_int_equal(stats_counter_value(s, c), 112);
}

/* The bytes sit where the header says, for readers that are not this library. */
static void test_layout_matches_header(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 24, 3, 3, 4096);
    struct stats *w = attach(nm, false);
    stats_set_slot(w, 2);
    int c = stats_register(s, "layout.counter", STAT_COUNTER);
    int g = stats_register(s, "layout.gauge", STAT_GAUGE);
    int h = stats_register(s, "layout.hist", STAT_HISTOGRAM);
    stats_inc(s, c, 3);
    stats_inc(w, c, 4);
    stats_gauge_add(w, g, -2);
    stats_hist_record(w, h, 77);
    const struct stats_header *hd = s->hdr;
    const unsigned char *base = s->base;
    const struct stats_entry *tab = (const void *)(base + hd->table_off);
    assert_ptr_equal(stats_entry_at(s, (uint32_t)c), &tab[c]);
    assert_ptr_equal(stats_entry_at(s, (uint32_t)h), &tab[h]);
    size_t len;
    const char *n = stats_name(s, &tab[c], &len);
    assert_ptr_equal(n, base + hd->arena_off + tab[c].name_off);
    assert_int_equal(tab[c].name_len, strlen("layout.counter"));
    const uint64_t *cells = (const void *)(base + hd->cells_off);
    for (uint32_t slot = 0; slot < 3; slot++) {
        assert_int_equal(cells[(uint64_t)slot * hd->max_stats + tab[c].index],
                         stats_slot_value(s, c, slot));
    }
    assert_int_equal(cells[0 * hd->max_stats + tab[c].index], 3);
    assert_int_equal(cells[2 * hd->max_stats + tab[c].index], 4);
    assert_true((int64_t)cells[2 * hd->max_stats + tab[g].index] == -2);
    const struct stats_hist_cells *hc = (const void *)(base + hd->hists_off);
    const struct stats_hist_cells *mine = &hc[2 * hd->max_histograms + tab[h].index];
    assert_int_equal(mine->count, 1);
    assert_int_equal(mine->sum, 77);
    assert_int_equal(mine->buckets[stats_hist_bucket(77)], 1);
    assert_int_equal(hc[0 * hd->max_histograms + tab[h].index].count, 0);
}

/* ---- 4. histograms ---- */

static void check_bucket(uint64_t v, uint32_t *last)
{
    uint32_t b = stats_hist_bucket(v);
    if (b >= STATS_HIST_BUCKETS)
        fail_msg("bucket(%llu) = %u, past the last bucket", (unsigned long long)v, b);
    if (b < *last)
        fail_msg("bucket(%llu) = %u after %u: not monotonic", (unsigned long long)v, b, *last);
    *last = b;
    uint64_t up = stats_hist_bucket_upper(b);
    if (up < v)
        fail_msg("upper(bucket(%llu)) = %llu < value", (unsigned long long)v,
                 (unsigned long long)up);
    if (v < 16 && up != v)
        fail_msg("value %llu should be exact, upper is %llu", (unsigned long long)v,
                 (unsigned long long)up);
    if (v >= 16 && v < (1ull << 40) && (up - v) > v / 8)
        fail_msg("upper(bucket(%llu)) = %llu: more than 12.5%% off", (unsigned long long)v,
                 (unsigned long long)up);
    if (v >= (1ull << 40) && b != STATS_HIST_BUCKETS - 1)
        fail_msg("bucket(%llu) = %u, should be the last", (unsigned long long)v, b);
}

static void test_hist_bucket_arithmetic(void **state)
{
    (void)state;
    uint32_t last = 0;
    for (uint64_t v = 0; v <= (1u << 20); v++)
        check_bucket(v, &last);
    for (int e = 21; e < 64; e++) {
        uint64_t p = 1ull << e;
        check_bucket(p - 1, &last);
        check_bucket(p, &last);
        check_bucket(p + 1, &last);
        check_bucket(p + p / 3, &last);
        check_bucket(p + p / 2, &last);
    }
    check_bucket(UINT64_MAX - 1, &last);
    check_bucket(UINT64_MAX, &last);
    assert_int_equal(last, STATS_HIST_BUCKETS - 1);
    assert_true(stats_hist_bucket_upper(STATS_HIST_BUCKETS - 1) == UINT64_MAX);
    assert_int_equal(stats_hist_bucket((1ull << 40) - 1), STATS_HIST_BUCKETS - 2);
    /* Every bucket is reached, and upper bounds strictly increase and map back. */
    for (uint32_t b = 0; b < STATS_HIST_BUCKETS; b++) {
        uint64_t up = stats_hist_bucket_upper(b);
        if (b > 0 && up <= stats_hist_bucket_upper(b - 1))
            fail_msg("upper(%u) = %llu not above upper(%u)", b, (unsigned long long)up, b - 1);
        uint32_t back = stats_hist_bucket(up);
        if (back != b && back != b + 1)
            fail_msg("bucket(upper(%u)) = %u", b, back);
        if (b > 0 && stats_hist_bucket(stats_hist_bucket_upper(b - 1) + 1) != b)
            fail_msg("the value after upper(%u) does not land in bucket %u", b - 1, b);
    }
}

static void assert_within_a_bucket(uint64_t got, uint64_t exact, const char *what)
{
    long gb = (long)stats_hist_bucket(got), eb = (long)stats_hist_bucket(exact);
    if (labs(gb - eb) > 1)
        fail_msg("%s = %llu (bucket %ld), exact %llu (bucket %ld)", what, (unsigned long long)got,
                 gb, (unsigned long long)exact, eb);
    if (got != stats_hist_bucket_upper((uint32_t)gb))
        fail_msg("%s = %llu is not a bucket's upper bound", what, (unsigned long long)got);
}

static void test_hist_distribution_and_quantiles(void **state)
{
    (void)state;
    struct stats *s = make(new_name(), 16, 4, 2, 4096);
    int h = stats_register(s, "lat.one.slot", STAT_HISTOGRAM);
    int h2 = stats_register(s, "lat.two.slots", STAT_HISTOGRAM);
    int e = stats_register(s, "lat.empty", STAT_HISTOGRAM);
    int one = stats_register(s, "lat.single", STAT_HISTOGRAM);
    assert_true(h >= 0 && h2 >= 0 && e >= 0 && one >= 0);
    for (uint64_t v = 1; v <= 1000; v++) {
        stats_hist_record(s, h, v);
        stats_set_slot(s, (uint32_t)(v & 1));
        stats_hist_record(s, h2, v);
        stats_set_slot(s, 0);
    }
    for (int i = 0; i < 10; i++)
        stats_hist_record(s, one, 12345);

    struct stats_hist_snapshot a, b;
    stats_hist_read(s, h, &a);
    stats_hist_read(s, h2, &b);
    assert_int_equal(a.count, 1000);
    assert_int_equal(a.sum, 500500);
    uint64_t total = 0;
    for (int i = 0; i < STATS_HIST_BUCKETS; i++)
        total += a.buckets[i];
    assert_int_equal(total, 1000);
    for (uint64_t v = 0; v < 16; v++)
        assert_int_equal(a.buckets[stats_hist_bucket(v)], v == 0 ? 0 : 1);
    /* Two slots read as one. */
    assert_int_equal(b.count, a.count);
    assert_int_equal(b.sum, a.sum);
    assert_memory_equal(b.buckets, a.buckets, sizeof(a.buckets));

    assert_within_a_bucket(stats_hist_quantile(&a, 0.0), 1, "p0");
    assert_within_a_bucket(stats_hist_quantile(&a, 0.5), 500, "p50");
    assert_within_a_bucket(stats_hist_quantile(&a, 0.99), 990, "p99");
    assert_within_a_bucket(stats_hist_quantile(&a, 1.0), 1000, "p100");
    assert_true(stats_hist_quantile(&a, 1.0) >= 1000);
    uint64_t prev = 0;
    for (int i = 0; i <= 100; i++) {
        uint64_t q = stats_hist_quantile(&a, i / 100.0);
        if (q < prev)
            fail_msg("quantile %d%% = %llu below the previous %llu", i, (unsigned long long)q,
                     (unsigned long long)prev);
        prev = q;
    }

    struct stats_hist_snapshot z;
    stats_hist_read(s, e, &z);
    assert_int_equal(z.count, 0);
    assert_int_equal(z.sum, 0);
    assert_int_equal(stats_hist_quantile(&z, 0.0), 0);
    assert_int_equal(stats_hist_quantile(&z, 0.5), 0);
    assert_int_equal(stats_hist_quantile(&z, 1.0), 0);

    struct stats_hist_snapshot o;
    stats_hist_read(s, one, &o);
    uint64_t up = stats_hist_bucket_upper(stats_hist_bucket(12345));
    assert_int_equal(stats_hist_quantile(&o, 0.0), up);
    assert_int_equal(stats_hist_quantile(&o, 0.5), up);
    assert_int_equal(stats_hist_quantile(&o, 1.0), up);

    /* Past 2^40: the last bucket, still counted and summed. */
    stats_hist_record(s, e, 1ull << 50);
    stats_hist_record(s, e, UINT64_MAX / 4);
    stats_hist_read(s, e, &z);
    assert_int_equal(z.count, 2);
    assert_true(z.sum == (1ull << 50) + UINT64_MAX / 4);
    assert_int_equal(z.buckets[STATS_HIST_BUCKETS - 1], 2);
}

/* ---- 5. many processes ---- */

#define XP_PROCS 4
#define XP_M 200000
#define XP_RACE 40

struct xp_ids {
    int a, b, c, lat;
};

static void xp_child(const char *nm, uint32_t slot, struct xp_ids ids, int gate)
{
    char ch;
    CHILD_CHECK(read(gate, &ch, 1) == 0); /* all start together when the parent closes it */
    struct stats w;
    memset(&w, 0, sizeof(w));
    const char *why = NULL;
    CHILD_CHECK(stats_attach(&w, nm, false, &why) == 0);
    stats_set_slot(&w, slot);
    /* Racing registrations of one name: each process keeps the id it got. */
    char name[32];
    for (int j = 0; j < XP_RACE; j++) {
        snprintf(name, sizeof(name), "race.%d", j);
        int id = stats_register(&w, name, STAT_COUNTER);
        CHILD_CHECK(id >= 0);
        stats_inc(&w, id, 1);
    }
    CHILD_CHECK(stats_register(&w, "xp.a", STAT_COUNTER) == ids.a);
    CHILD_CHECK(stats_register(&w, "xp.b", STAT_COUNTER) == ids.b);
    CHILD_CHECK(stats_register(&w, "xp.c", STAT_COUNTER) == ids.c);
    CHILD_CHECK(stats_register(&w, "xp.lat", STAT_HISTOGRAM) == ids.lat);
    for (uint32_t i = 0; i < XP_M; i++) {
        stats_inc(&w, ids.a, 1);
        stats_inc(&w, ids.b, 1);
        stats_inc(&w, ids.c, 3);
        stats_hist_record(&w, ids.lat, (i % 1000) + 1);
    }
    _exit(0);
}

static void test_many_processes_add_up(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 256, 4, XP_PROCS + 1, 16384);
    struct xp_ids ids = {
        .a = stats_register(s, "xp.a", STAT_COUNTER),
        .b = stats_register(s, "xp.b", STAT_COUNTER),
        .c = stats_register(s, "xp.c", STAT_COUNTER),
        .lat = stats_register(s, "xp.lat", STAT_HISTOGRAM),
    };
    assert_true(ids.a >= 0 && ids.b >= 0 && ids.c >= 0 && ids.lat >= 0);
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t pids[XP_PROCS];
    for (int p = 0; p < XP_PROCS; p++) {
        pids[p] = spawn();
        if (pids[p] == 0) {
            close(gate[1]);
            xp_child(nm, (uint32_t)p + 1, ids, gate[0]);
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (int p = 0; p < XP_PROCS; p++)
        expect_child_ok(pids[p], "counting child");

    const uint64_t total = (uint64_t)XP_PROCS * XP_M;
    assert_int_equal(stats_counter_value(s, ids.a), total);
    assert_int_equal(stats_counter_value(s, ids.b), total);
    assert_int_equal(stats_counter_value(s, ids.c), 3 * total);
    assert_int_equal(stats_slot_value(s, ids.a, 0), 0);
    for (uint32_t p = 1; p <= XP_PROCS; p++) {
        assert_int_equal(stats_slot_value(s, ids.a, p), XP_M);
        assert_int_equal(stats_slot_value(s, ids.c, p), 3 * XP_M);
    }
    struct stats_hist_snapshot snap;
    stats_hist_read(s, ids.lat, &snap);
    assert_int_equal(snap.count, total);
    assert_int_equal(snap.sum, (uint64_t)XP_PROCS * (XP_M / 1000) * 500500u);
    uint64_t in_buckets = 0;
    for (int i = 0; i < STATS_HIST_BUCKETS; i++)
        in_buckets += snap.buckets[i];
    assert_int_equal(in_buckets, total);

    /* Names registered at once by several processes: merged by name, nothing lost. */
    uint32_t n = stats_count(s);
    for (int j = 0; j < XP_RACE; j++) {
        char name[32];
        snprintf(name, sizeof(name), "race.%d", j);
        uint64_t sum = 0;
        int entries = 0;
        for (uint32_t id = 0; id < n; id++) {
            if (name_is(s, (int)id, name, strlen(name))) {
                assert_int_equal(stats_entry_at(s, id)->kind, STAT_COUNTER);
                sum += stats_counter_value(s, (int)id);
                entries++;
            }
        }
        assert_true(entries >= 1 && entries <= XP_PROCS);
        assert_int_equal(stats_find(s, name, strlen(name)) >= 0, 1);
        if (sum != XP_PROCS)
            fail_msg("%s: %llu increments over %d entries, want %d", name, (unsigned long long)sum,
                     entries, XP_PROCS);
    }
}

/* ---- 6. writers killed at any instruction ---- */

#define CR_ROUNDS 8
#define CR_WRITERS 3
#define CR_DYN_MAX 400

struct cr_view {
    uint64_t total;
    uint64_t hist_count;
    uint32_t published;
};

static void crash_writer(const char *nm, uint32_t slot, int total_id, int lat_id)
{
    struct stats w;
    memset(&w, 0, sizeof(w));
    const char *why = NULL;
    if (stats_attach(&w, nm, false, &why) != 0)
        _exit(11);
    stats_set_slot(&w, slot);
    if (stats_register(&w, "crash.total", STAT_COUNTER) != total_id)
        _exit(12);
    char name[64];
    unsigned dyn = 0;
    for (uint64_t i = 0;; i++) {
        stats_inc(&w, total_id, 1);
        stats_hist_record(&w, lat_id, i & 1023);
        if ((i & 31) == 0 && dyn < CR_DYN_MAX) {
            enum stat_kind k = dyn % 3 == 0   ? STAT_COUNTER
                               : dyn % 3 == 1 ? STAT_GAUGE
                                              : STAT_HISTOGRAM;
            snprintf(name, sizeof(name), "dyn.%d.%u", (int)getpid(), dyn++);
            int id = stats_register(&w, name, k);
            if (id >= 0 && k == STAT_COUNTER)
                stats_inc(&w, id, 1);
            else if (id >= 0 && k == STAT_GAUGE)
                stats_gauge_add(&w, id, 1);
            else if (id >= 0)
                stats_hist_record(&w, id, i);
        }
    }
}

static bool digits(const char **p, const char *end)
{
    const char *q = *p;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    bool ok = q > *p;
    *p = q;
    return ok;
}

/* "dyn.<pid>.<n>", "crash.total", "crash.lat" or "fresh.*": nothing else was ever written. */
static bool plausible_name(const char *n, size_t len)
{
    const char *end = n + len;
    if (len > 4 && memcmp(n, "dyn.", 4) == 0) {
        const char *p = n + 4;
        if (!digits(&p, end) || p == end || *p++ != '.')
            return false;
        return digits(&p, end) && p == end;
    }
    return (len == 11 && memcmp(n, "crash.total", 11) == 0) ||
           (len == 9 && memcmp(n, "crash.lat", 9) == 0) || (len > 6 && memcmp(n, "fresh.", 6) == 0);
}

static void crash_read(const struct stats *s, int total_id, int lat_id, struct cr_view *last)
{
    const struct stats_header *h = s->hdr;
    const char *arena = (const char *)s->base + h->arena_off;
    uint64_t v = stats_counter_value(s, total_id);
    if (v < last->total)
        fail_msg("crash.total went back from %llu to %llu", (unsigned long long)last->total,
                 (unsigned long long)v);
    last->total = v;
    struct stats_hist_snapshot snap;
    stats_hist_read(s, lat_id, &snap);
    if (snap.count < last->hist_count)
        fail_msg("crash.lat count went back from %llu to %llu",
                 (unsigned long long)last->hist_count, (unsigned long long)snap.count);
    last->hist_count = snap.count;

    uint32_t n = stats_count(s), seen = 0;
    if (n > h->max_stats)
        fail_msg("stats_count() = %u past max_stats %u", n, h->max_stats);
    for (uint32_t id = 0; id < n; id++) {
        const struct stats_entry *e = stats_entry_at(s, id);
        if (e == NULL)
            continue;
        seen++;
        if (e->kind < STAT_COUNTER || e->kind > STAT_HISTOGRAM)
            fail_msg("published entry %u has kind %u", id, e->kind);
        size_t len = 0;
        const char *name = stats_name(s, e, &len);
        if (name == NULL || len == 0)
            fail_msg("published entry %u has no name", id);
        if (name < arena || len > h->arena_size || (uint64_t)(name - arena) > h->arena_size - len)
            fail_msg("published entry %u: name outside the arena", id);
        if (!plausible_name(name, len))
            fail_msg("published entry %u: torn name \"%.*s\"", id, (int)(len > 80 ? 80 : len),
                     name);
        if (id % 97 == 0) {
            int found = stats_find(s, name, len);
            if (found < 0 || !name_is(s, found, name, len))
                fail_msg("stats_find of published \"%.*s\" gave %d", (int)len, name, found);
        }
    }
    if (seen < last->published)
        fail_msg("published entries went from %u down to %u", last->published, seen);
    last->published = seen;
}

static void fresh_writer(const char *nm, uint32_t slot, int total_id)
{
    struct stats w;
    memset(&w, 0, sizeof(w));
    const char *why = NULL;
    CHILD_CHECK(stats_attach(&w, nm, false, &why) == 0);
    stats_set_slot(&w, slot);
    CHILD_CHECK(stats_register(&w, "crash.total", STAT_COUNTER) == total_id);
    int c = stats_register(&w, "fresh.after.kills", STAT_COUNTER);
    int g = stats_register(&w, "fresh.gauge", STAT_GAUGE);
    CHILD_CHECK(c >= 0 && g >= 0);
    for (int i = 0; i < 1000; i++) {
        stats_inc(&w, c, 1);
        stats_inc(&w, total_id, 1);
    }
    stats_gauge_set(&w, g, -3);
    _exit(0);
}

static void test_writers_killed_at_random(void **state)
{
    (void)state;
    const char *nm = new_name();
    const uint32_t n_slots = 1 + CR_ROUNDS * CR_WRITERS + 1;
    struct stats *s = make(nm, 16384, 64, n_slots, 512 * 1024);
    int total_id = stats_register(s, "crash.total", STAT_COUNTER);
    int lat_id = stats_register(s, "crash.lat", STAT_HISTOGRAM);
    assert_true(total_id >= 0 && lat_id >= 0);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    print_message("crash test seed %u\n", seed);

    struct cr_view last = {0};
    uint32_t slot = 1;
    for (int round = 0; round < CR_ROUNDS; round++) {
        pid_t pids[CR_WRITERS];
        uint64_t kill_at[CR_WRITERS];
        uint64_t t0 = now_us();
        for (int k = 0; k < CR_WRITERS; k++) {
            pids[k] = spawn();
            if (pids[k] == 0)
                crash_writer(nm, slot, total_id, lat_id);
            slot++;
            kill_at[k] = t0 + (uint64_t)(rand() % 50001);
        }
        int alive = CR_WRITERS;
        while (alive > 0) {
            crash_read(s, total_id, lat_id, &last);
            for (int k = 0; k < CR_WRITERS; k++) {
                if (pids[k] != 0 && now_us() >= kill_at[k]) {
                    kill(pids[k], SIGKILL);
                    int st = wait_child(pids[k], 2000);
                    if (st == -1 || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
                        fail_msg("writer %d ended on its own (status %d): it failed to "
                                 "attach or "
                                 "register",
                                 (int)pids[k], st);
                    pids[k] = 0;
                    alive--;
                }
            }
        }
        crash_read(s, total_id, lat_id, &last);
    }

    /* The segment survived: it validates, and a fresh writer registers and counts. */
    const char *why = NULL;
    if (stats_validate(s->base, s->hdr->total_size, &why) != 0)
        fail_msg("after the kills the segment no longer validates: %s", why ? why : "?");
    uint64_t before = stats_counter_value(s, total_id);
    pid_t f = spawn();
    if (f == 0)
        fresh_writer(nm, slot, total_id);
    expect_child_ok(f, "fresh writer");
    crash_read(s, total_id, lat_id, &last);
    int c = stats_find(s, "fresh.after.kills", 17);
    assert_true(c >= 0);
    assert_int_equal(stats_counter_value(s, c), 1000);
    assert_int_equal(stats_counter_value(s, total_id), before + 1000);
    int g = stats_find(s, "fresh.gauge", 11);
    assert_true(g >= 0);
    assert_true(stats_gauge_value(s, g) == -3);
    struct stats *r = attach(nm, true);
    assert_int_equal(stats_counter_value(r, total_id), before + 1000);
    uint32_t reserved = atomic_load(&s->hdr->n_reserved);
    print_message("%u entries published, %u reservations abandoned by killed writers\n",
                  last.published, reserved - published(s));
}

/* An entry is published only once its name is complete: a reader that races a writer registering
 * long names never sees a short or half-copied one. */
#define PUB_NAMES 1000

static size_t pub_len(unsigned i)
{
    return 1000 + (i * 37u) % 3000;
}

static char pub_char(unsigned i, size_t k)
{
    return (char)('a' + (i + k) % 26);
}

static void pub_make(unsigned i, char *buf)
{
    size_t len = pub_len(i);
    int head = snprintf(buf, 32, "pub.%u.", i);
    for (size_t k = (size_t)head; k < len; k++)
        buf[k] = pub_char(i, k);
    buf[len] = '\0';
}

static void pub_writer(const char *nm)
{
    struct stats w;
    memset(&w, 0, sizeof(w));
    const char *why = NULL;
    CHILD_CHECK(stats_attach(&w, nm, false, &why) == 0);
    stats_set_slot(&w, 1);
    static char buf[4096];
    for (unsigned i = 0; i < PUB_NAMES; i++) {
        pub_make(i, buf);
        CHILD_CHECK(stats_register(&w, buf, STAT_COUNTER) >= 0);
    }
    _exit(0);
}

/* The number of complete names among the newest `depth`; fails on any other. Newest first: that is
 * the one a writer may still be filling. */
static uint32_t pub_check(const struct stats *s, uint32_t depth)
{
    uint32_t n = stats_count(s), seen = 0;
    for (uint32_t id = n; id-- > 0 && n - id <= depth;) {
        const struct stats_entry *e = stats_entry_at(s, id);
        if (e == NULL)
            continue;
        size_t len = 0;
        const char *name = stats_name(s, e, &len);
        unsigned i = 0;
        size_t k = 4;
        if (name == NULL || len < 8 || memcmp(name, "pub.", 4) != 0)
            fail_msg("entry %u published with a name that is not one written", id);
        while (k < len && name[k] >= '0' && name[k] <= '9')
            i = i * 10 + (unsigned)(name[k++] - '0');
        if (k >= len || name[k] != '.' || i >= PUB_NAMES || len != pub_len(i))
            fail_msg("entry %u published as a %zu-byte name that is not one written", id, len);
        for (k++; k < len; k++) {
            if (name[k] != pub_char(i, k))
                fail_msg("entry %u (pub.%u) published before byte %zu of its name was written", id,
                         i, k);
        }
        seen++;
    }
    return seen;
}

static void test_names_are_complete_when_published(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 2048, 2, 2, 4u << 20);
    pid_t pid = spawn();
    if (pid == 0)
        pub_writer(nm);
    uint64_t deadline = now_us() + (uint64_t)CHILD_TIMEOUT_MS * 1000u;
    int st = 0;
    for (uint64_t round = 0;; round++) {
        pub_check(s, round % 64 == 0 ? UINT32_MAX : 4);
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            forget_pid(pid);
            break;
        }
        if (now_us() > deadline)
            fail_msg("the writer of long names did not finish in %d ms", CHILD_TIMEOUT_MS);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("the writer of long names failed (status %d)", st);
    assert_int_equal(pub_check(s, UINT32_MAX), PUB_NAMES);
}

/* A writer that died between reserving an entry and publishing it, made by hand. */
static void test_abandoned_reservation_wedges_no_one(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 32, 4, 2, 4096);
    int a = stats_register(s, "before.ghost", STAT_COUNTER);
    assert_true(a >= 0);
    struct stats_header *h = s->hdr;
    unsigned char *base = s->base;
    uint32_t ghost = atomic_fetch_add(&h->n_reserved, 1);
    uint64_t off = atomic_fetch_add(&h->arena_used, 8);
    memcpy(base + h->arena_off + off, "gho", 3); /* killed mid-copy */
    struct stats_entry *tab = (void *)(base + h->table_off);
    tab[ghost].kind = STAT_COUNTER;
    tab[ghost].name_off = (uint32_t)off;

    assert_null(stats_entry_at(s, ghost));
    assert_int_equal(stats_find(s, "ghost", 5), -1);
    assert_int_equal(stats_find(s, "gho", 3), -1);
    assert_int_equal(published(s), 1);
    int b = stats_register(s, "after.ghost", STAT_COUNTER);
    int g = stats_register(s, "ghost", STAT_COUNTER);
    assert_true(b >= 0 && g >= 0);
    assert_true(b != a && g != a && b != g);
    assert_true((uint32_t)b != ghost && (uint32_t)g != ghost);
    assert_name(s, g, "ghost");
    assert_name(s, b, "after.ghost");
    stats_inc(s, b, 2);
    stats_inc(s, g, 3);
    assert_int_equal(stats_counter_value(s, b), 2);
    assert_int_equal(stats_counter_value(s, g), 3);
    assert_int_equal(stats_counter_value(s, a), 0);
    assert_int_equal(published(s), 3);
    const char *why = NULL;
    if (stats_validate(s->base, h->total_size, &why) != 0)
        fail_msg("an abandoned reservation makes the segment invalid: %s", why ? why : "?");
    struct stats *r = attach(nm, true);
    assert_int_equal(stats_find(r, "after.ghost", 11), b);
    assert_null(stats_entry_at(r, ghost));
}

/* ---- ids that are not stats ---- */

/* -1 is what stats_register returns when full, and callers pass it on: writes through it land
 * nowhere. Readers (the admin API, shmstat) take ids from outside: any id reads as 0. */
static void invalid_ids_child(const char *nm, uint32_t n_slots)
{
    struct stats w;
    memset(&w, 0, sizeof(w));
    const char *why = NULL;
    CHILD_CHECK(stats_attach(&w, nm, false, &why) == 0);
    stats_set_slot(&w, 1);
    size_t size = w.hdr->total_size;
    unsigned char *before = malloc(size);
    CHILD_CHECK(before != NULL);
    memcpy(before, w.base, size);
    stats_inc(&w, -1, 1);
    stats_gauge_add(&w, -1, 1);
    stats_gauge_set(&w, -1, 5);
    stats_hist_record(&w, -1, 5);
    const int bad[] = {-1, -2, INT_MIN, (int)stats_count(&w), (int)w.hdr->max_stats, INT_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHILD_CHECK(stats_counter_value(&w, bad[i]) == 0);
        CHILD_CHECK(stats_gauge_value(&w, bad[i]) == 0);
        CHILD_CHECK(stats_slot_value(&w, bad[i], 0) == 0);
        struct stats_hist_snapshot snap;
        memset(&snap, 0xff, sizeof(snap));
        stats_hist_read(&w, bad[i], &snap);
        CHILD_CHECK(snap.count == 0 && snap.sum == 0 && snap.buckets[0] == 0);
    }
    CHILD_CHECK(stats_slot_value(&w, 0, n_slots) == 0);
    CHILD_CHECK(stats_slot_value(&w, 0, UINT32_MAX) == 0);
    if (memcmp(before, w.base, size) != 0) {
        for (size_t i = 0; i < size; i++) {
            if (before[i] != ((unsigned char *)w.base)[i]) {
                fprintf(stderr, "child: a write through id -1 changed byte %zu\n", i);
                break;
            }
        }
        _exit(20);
    }
    _exit(0);
}

static void test_invalid_ids_are_harmless(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 8, 2, 2, 1024);
    int c = stats_register(s, "only", STAT_COUNTER);
    int h = stats_register(s, "only.h", STAT_HISTOGRAM);
    assert_true(c >= 0 && h >= 0);
    stats_inc(s, c, 4);
    pid_t pid = spawn();
    if (pid == 0)
        invalid_ids_child(nm, s->hdr->n_slots);
    expect_child_ok(pid, "writes and reads through invalid ids");
    assert_int_equal(stats_counter_value(s, c), 4);
}

/* ---- 7. hostile segments ---- */

enum hostile_op {
    H_NONE,
    H_LARGER_OBJECT,
    H_MAGIC,
    H_MAGIC_SWAPPED,
    H_VERSION_NEXT,
    H_VERSION_ZERO,
    H_HEADER_SIZE_SMALL,
    H_HEADER_SIZE_LARGE,
    H_HEADER_SIZE_HUGE,
    H_SIZE_ZERO,
    H_SIZE_UNDER_HEADER,
    H_SIZE_HALF,
    H_SIZE_ONE_SHORT,
    H_TOTAL_LARGER,
    H_TOTAL_HUGE,
    H_TABLE_AT_END,
    H_TABLE_WRAPS,
    H_TABLE_PAST_END,
    H_ARENA_PAST_END,
    H_ARENA_OFF_HUGE,
    H_ARENA_SIZE_WRAPS,
    H_ARENA_SIZE_PAST,
    H_CELLS_PAST_END,
    H_CELLS_WRAPS,
    H_HISTS_PAST_END,
    H_HISTS_WRAPS,
    H_SLOTS_TIMES_64,
    H_SLOTS_MAX,
    H_SLOTS_2_31,
    H_STATS_TIMES_64,
    H_STATS_MAX,
    H_HISTS_MAX,
    H_CELLS_PRODUCT_WRAPS,
    /* Entry-level: may validate, but the readers must stay inside the segment. */
    E_FIRST,
    E_NAME_PAST_ARENA = E_FIRST,
    E_NAME_OFF_WRAPS,
    E_NAME_LEN_HUGE,
    E_NAME_SUM_WRAPS,
    E_NAME_OFF_OUTSIDE,
    E_RESERVED_HUGE,
    E_RESERVED_PAST,
    E_HISTS_HUGE,
    E_ARENA_USED_HUGE,
    E_KIND_BAD,
    E_KIND_ZERO,
    E_INDEX_HUGE,
    E_INDEX_PAST,
    E_GAUGE_INDEX_PAST,
    E_HIST_INDEX_HUGE,
    E_HIST_INDEX_PAST,
    E_COUNTER_AS_HIST,
    H_END,
};

static const char *const hostile_what[H_END] = {
    [H_NONE] = "the good segment",
    [H_LARGER_OBJECT] = "an object larger than total_size",
    [H_MAGIC] = "wrong magic",
    [H_MAGIC_SWAPPED] = "byte-swapped magic",
    [H_VERSION_NEXT] = "next layout version",
    [H_VERSION_ZERO] = "layout version 0",
    [H_HEADER_SIZE_SMALL] = "header_size 8 short",
    [H_HEADER_SIZE_LARGE] = "header_size 8 long",
    [H_HEADER_SIZE_HUGE] = "header_size UINT32_MAX",
    [H_SIZE_ZERO] = "size 0",
    [H_SIZE_UNDER_HEADER] = "size below the header",
    [H_SIZE_HALF] = "half the segment",
    [H_SIZE_ONE_SHORT] = "one byte short of total_size",
    [H_TOTAL_LARGER] = "total_size past the size",
    [H_TOTAL_HUGE] = "total_size UINT64_MAX",
    [H_TABLE_AT_END] = "table_off at the end",
    [H_TABLE_WRAPS] = "table_off that wraps",
    [H_TABLE_PAST_END] = "table running past the end",
    [H_ARENA_PAST_END] = "arena running past the end",
    [H_ARENA_OFF_HUGE] = "arena_off UINT64_MAX",
    [H_ARENA_SIZE_WRAPS] = "arena_off + arena_size wrapping to 0",
    [H_ARENA_SIZE_PAST] = "arena_size the whole segment",
    [H_CELLS_PAST_END] = "cells running past the end",
    [H_CELLS_WRAPS] = "cells_off that wraps",
    [H_HISTS_PAST_END] = "histogram blocks running past the end",
    [H_HISTS_WRAPS] = "hists_off + blocks wrapping to 0",
    [H_SLOTS_TIMES_64] = "n_slots x 64",
    [H_SLOTS_MAX] = "n_slots UINT32_MAX",
    [H_SLOTS_2_31] = "n_slots 2^31 (32-bit products wrap to 0)",
    [H_STATS_TIMES_64] = "max_stats x 64",
    [H_STATS_MAX] = "max_stats UINT32_MAX",
    [H_HISTS_MAX] = "max_histograms UINT32_MAX",
    [H_CELLS_PRODUCT_WRAPS] = "n_slots = max_stats = 2^31 (64-bit cells product wraps to 0)",
    [E_NAME_PAST_ARENA] = "a name running past the arena",
    [E_NAME_OFF_WRAPS] = "name_off UINT32_MAX, name_len 2",
    [E_NAME_LEN_HUGE] = "name_len UINT32_MAX",
    [E_NAME_SUM_WRAPS] = "name_off + name_len wrapping to 0 in 32 bits",
    [E_NAME_OFF_OUTSIDE] = "name_off past the arena",
    [E_RESERVED_HUGE] = "n_reserved UINT32_MAX",
    [E_RESERVED_PAST] = "n_reserved past max_stats",
    [E_HISTS_HUGE] = "n_hists UINT32_MAX",
    [E_ARENA_USED_HUGE] = "arena_used UINT64_MAX",
    [E_KIND_BAD] = "kind 99",
    [E_KIND_ZERO] = "kind 0",
    [E_INDEX_HUGE] = "counter index UINT32_MAX",
    [E_INDEX_PAST] = "counter index max_stats",
    [E_GAUGE_INDEX_PAST] = "gauge index max_stats",
    [E_HIST_INDEX_HUGE] = "histogram index UINT32_MAX",
    [E_HIST_INDEX_PAST] = "histogram index max_histograms",
    [E_COUNTER_AS_HIST] = "a counter relabelled histogram, index past max_histograms",
};

struct good {
    struct stats_header h; /* the header as created */
    size_t size;           /* total_size */
    int c, g, hist;        /* ids of one stat of each kind */
};

/* Mutates img (room for at least g->size + 4096 bytes); returns the size to present. */
static size_t apply_hostile(enum hostile_op op, unsigned char *img, const struct good *g)
{
    struct stats_header *h = (void *)img;
    struct stats_entry *tab = (void *)(img + g->h.table_off);
    const uint64_t T = g->size;
    const uint64_t hist_block =
        (uint64_t)g->h.n_slots * g->h.max_histograms * sizeof(struct stats_hist_cells);
    switch (op) {
    case H_NONE:
    case H_END:
        break;
    case H_LARGER_OBJECT:
        memset(img + T, 0, 4096);
        return T + 4096;
    case H_MAGIC:
        h->magic ^= 0xff;
        break;
    case H_MAGIC_SWAPPED:
        h->magic = __builtin_bswap64(STATS_MAGIC);
        break;
    case H_VERSION_NEXT:
        h->layout_version = STATS_LAYOUT_VERSION + 1;
        break;
    case H_VERSION_ZERO:
        h->layout_version = 0;
        break;
    case H_HEADER_SIZE_SMALL:
        h->header_size = sizeof(struct stats_header) - 8;
        break;
    case H_HEADER_SIZE_LARGE:
        h->header_size = sizeof(struct stats_header) + 8;
        break;
    case H_HEADER_SIZE_HUGE:
        h->header_size = UINT32_MAX;
        break;
    case H_SIZE_ZERO:
        return 0;
    case H_SIZE_UNDER_HEADER:
        return sizeof(struct stats_header) - 1;
    case H_SIZE_HALF:
        return T / 2;
    case H_SIZE_ONE_SHORT:
        return T - 1;
    case H_TOTAL_LARGER:
        h->total_size = T + 4096;
        break;
    case H_TOTAL_HUGE:
        h->total_size = UINT64_MAX;
        break;
    case H_TABLE_AT_END:
        h->table_off = T;
        break;
    case H_TABLE_WRAPS:
        h->table_off = UINT64_MAX - 7;
        break;
    case H_TABLE_PAST_END:
        h->table_off = T - sizeof(struct stats_entry);
        break;
    case H_ARENA_PAST_END:
        h->arena_off = T - 1;
        break;
    case H_ARENA_OFF_HUGE:
        h->arena_off = UINT64_MAX;
        break;
    case H_ARENA_SIZE_WRAPS:
        h->arena_size = 0 - g->h.arena_off;
        break;
    case H_ARENA_SIZE_PAST:
        h->arena_size = T;
        break;
    case H_CELLS_PAST_END:
        h->cells_off = T - 8;
        break;
    case H_CELLS_WRAPS:
        h->cells_off = UINT64_MAX - 7;
        break;
    case H_HISTS_PAST_END:
        h->hists_off = T - 8;
        break;
    case H_HISTS_WRAPS:
        h->hists_off = 0 - hist_block;
        break;
    case H_SLOTS_TIMES_64:
        h->n_slots = g->h.n_slots * 64;
        break;
    case H_SLOTS_MAX:
        h->n_slots = UINT32_MAX;
        break;
    case H_SLOTS_2_31:
        h->n_slots = 1u << 31;
        break;
    case H_STATS_TIMES_64:
        h->max_stats = g->h.max_stats * 64;
        break;
    case H_STATS_MAX:
        h->max_stats = UINT32_MAX;
        break;
    case H_HISTS_MAX:
        h->max_histograms = UINT32_MAX;
        break;
    case H_CELLS_PRODUCT_WRAPS:
        h->n_slots = 1u << 31;
        h->max_stats = 1u << 31;
        break;
    case E_NAME_PAST_ARENA:
        tab[g->c].name_off = (uint32_t)g->h.arena_size - 4;
        tab[g->c].name_len = 64;
        break;
    case E_NAME_OFF_WRAPS:
        tab[g->c].name_off = UINT32_MAX;
        tab[g->c].name_len = 2;
        break;
    case E_NAME_LEN_HUGE:
        tab[g->c].name_off = 0;
        tab[g->c].name_len = UINT32_MAX;
        break;
    case E_NAME_SUM_WRAPS:
        tab[g->c].name_off = 64;
        tab[g->c].name_len = UINT32_MAX - 63;
        break;
    case E_NAME_OFF_OUTSIDE:
        tab[g->c].name_off = (uint32_t)g->h.arena_size + 16;
        tab[g->c].name_len = 4;
        break;
    case E_RESERVED_HUGE:
        h->n_reserved = UINT32_MAX;
        break;
    case E_RESERVED_PAST:
        h->n_reserved = g->h.max_stats + 7;
        break;
    case E_HISTS_HUGE:
        h->n_hists = UINT32_MAX;
        break;
    case E_ARENA_USED_HUGE:
        h->arena_used = UINT64_MAX;
        break;
    case E_KIND_BAD:
        tab[g->c].kind = 99;
        break;
    case E_KIND_ZERO:
        tab[g->c].kind = 0;
        break;
    case E_INDEX_HUGE:
        tab[g->c].index = UINT32_MAX;
        break;
    case E_INDEX_PAST:
        tab[g->c].index = g->h.max_stats;
        break;
    case E_GAUGE_INDEX_PAST:
        tab[g->g].index = g->h.max_stats;
        break;
    case E_HIST_INDEX_HUGE:
        tab[g->hist].index = UINT32_MAX;
        break;
    case E_HIST_INDEX_PAST:
        tab[g->hist].index = g->h.max_histograms;
        break;
    case E_COUNTER_AS_HIST:
        tab[g->c].kind = STAT_HISTOGRAM;
        tab[g->c].index = g->h.max_histograms + 3;
        break;
    }
    return T;
}

/* Every read a reader (shmstat) does, each checked to stay inside the segment. */
static void exercise_readers(const struct stats *v, const struct good *g)
{
    const unsigned char *base = v->base;
    const char *arena = (const char *)base + g->h.arena_off;
    const struct stats_entry *tab = (const void *)(base + g->h.table_off);
    uint32_t n = stats_count(v);
    CHILD_CHECK(n <= g->h.max_stats);
    CHILD_CHECK(stats_entry_at(v, g->h.max_stats) == NULL);
    CHILD_CHECK(stats_entry_at(v, g->h.max_stats + 7) == NULL);
    CHILD_CHECK(stats_entry_at(v, UINT32_MAX) == NULL);
    volatile uint64_t sink = 0;
    for (uint32_t id = 0; id < g->h.max_stats; id++) {
        const struct stats_entry *e = stats_entry_at(v, id);
        if (e == NULL)
            continue;
        CHILD_CHECK(e >= tab && e < tab + g->h.max_stats);
        size_t len = 0;
        const char *name = stats_name(v, e, &len);
        if (name != NULL) {
            if (name < arena || len > g->h.arena_size ||
                (uint64_t)(name - arena) > g->h.arena_size - len) {
                fprintf(stderr,
                        "child: entry %u (name_off %u, name_len %u): stats_name gave "
                        "offset %lld "
                        "length %zu, outside the arena of %llu bytes\n",
                        id, e->name_off, e->name_len, (long long)(name - arena), len,
                        (unsigned long long)g->h.arena_size);
                _exit(21);
            }
            for (size_t i = 0; i < len; i++)
                sink += (unsigned char)name[i];
            sink += (uint64_t)stats_find(v, name, len);
        }
        int iid = (int)id;
        switch (e->kind) {
        case STAT_COUNTER:
        case STAT_GAUGE:
            sink += stats_counter_value(v, iid);
            sink += (uint64_t)stats_gauge_value(v, iid);
            for (uint32_t slot = 0; slot < g->h.n_slots; slot++)
                sink += stats_slot_value(v, iid, slot);
            break;
        case STAT_HISTOGRAM: {
            struct stats_hist_snapshot snap;
            stats_hist_read(v, iid, &snap);
            sink += snap.count + stats_hist_quantile(&snap, 0.5);
            break;
        }
        default:
            break;
        }
    }
    /* Finding by name compares against every entry, hostile ones included. */
    char probe[70];
    memset(probe, 'x', sizeof(probe));
    sink += (uint64_t)stats_find(v, "good.counter", 12);
    sink += (uint64_t)stats_find(v, probe, 64);
    sink += (uint64_t)stats_find(v, probe, 2);
    sink += (uint64_t)stats_find(v, probe, 4);
    (void)sink;
}

static bool hostile_must_reject(enum hostile_op op)
{
    return op != H_NONE && op != H_LARGER_OBJECT && op < E_FIRST;
}

static void write_object(const char *nm, const unsigned char *img, size_t size)
{
    int fd = shm_open(nm, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, img + done, size - done, (off_t)done);
        assert_true(w > 0);
        done += (size_t)w;
    }
    close(fd);
}

/* Validate and attach read-only to a segment made hostile before the reader came. */
static void hostile_before_child(enum hostile_op op, const char *nm, const unsigned char *img,
                                 size_t size, const struct good *g)
{
    /* An exact-size heap copy: a read past `size` is caught by AddressSanitizer. */
    unsigned char *exact = malloc(size ? size : 1);
    CHILD_CHECK(exact != NULL);
    memcpy(exact, img, size);
    const char *why_v = NULL, *why_a = NULL;
    int rv = stats_validate(exact, size, &why_v);
    struct stats v;
    memset(&v, 0, sizeof(v));
    int ra = stats_attach(&v, nm, true, &why_a);
    if (hostile_must_reject(op)) {
        if (rv != -1 || why_v == NULL || why_v[0] == '\0') {
            fprintf(stderr, "child: %s: stats_validate returned %d (why %s)\n", hostile_what[op],
                    rv, why_v ? why_v : "NULL");
            _exit(22);
        }
        if (ra != -1 || why_a == NULL || why_a[0] == '\0') {
            fprintf(stderr, "child: %s: read-only stats_attach returned %d (why %s)\n",
                    hostile_what[op], ra, why_a ? why_a : "NULL");
            _exit(23);
        }
        _exit(0);
    }
    if (op == H_NONE || op == H_LARGER_OBJECT) {
        if (rv != 0 || ra != 0) {
            fprintf(stderr, "child: %s: validate %d (%s), attach %d (%s)\n", hostile_what[op], rv,
                    why_v ? why_v : "NULL", ra, why_a ? why_a : "NULL");
            _exit(24);
        }
        CHILD_CHECK(v.read_only);
        CHILD_CHECK(stats_counter_value(&v, g->c) == 5);
    }
    if (rv != ra) {
        fprintf(stderr, "child: %s: validate says %d (%s) but attach says %d (%s)\n",
                hostile_what[op], rv, why_v ? why_v : "NULL", ra, why_a ? why_a : "NULL");
        _exit(25);
    }
    CHILD_CHECK(rv == 0 || (why_v != NULL && why_v[0] != '\0'));
    CHILD_CHECK(ra == 0 || (why_a != NULL && why_a[0] != '\0'));
    if (ra == 0)
        exercise_readers(&v, g);
    free(exact);
    _exit(0);
}

/* Attach read-only to a good segment, then a hostile writer changes what writers may change. */
static void hostile_after_child(enum hostile_op op, const char *nm, const struct good *g)
{
    struct stats v;
    memset(&v, 0, sizeof(v));
    const char *why = NULL;
    CHILD_CHECK(stats_attach(&v, nm, true, &why) == 0);
    int fd = shm_open(nm, O_RDWR, 0);
    CHILD_CHECK(fd >= 0);
    unsigned char *rw = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHILD_CHECK(rw != MAP_FAILED);
    apply_hostile(op, rw, g);
    exercise_readers(&v, g);
    _exit(0);
}

static void test_hostile_segments(void **state)
{
    (void)state;
    const char *src = new_name();
    const char *nm = new_name();
    struct stats *s = make(src, 16, 2, 2, 1024);
    struct good g;
    memset(&g, 0, sizeof(g));
    g.c = stats_register(s, "good.counter", STAT_COUNTER);
    g.g = stats_register(s, "good.gauge", STAT_GAUGE);
    g.hist = stats_register(s, "good.hist", STAT_HISTOGRAM);
    assert_true(g.c >= 0 && g.g >= 0 && g.hist >= 0);
    stats_inc(s, g.c, 5);
    stats_gauge_add(s, g.g, -5);
    stats_hist_record(s, g.hist, 7);
    memcpy(&g.h, s->hdr, sizeof(g.h));
    g.size = (size_t)g.h.total_size;
    assert_true(g.size > sizeof(struct stats_header) && g.size <= s->size);

    unsigned char *good = new_buf(g.size);
    unsigned char *img = new_buf(g.size + 4096);
    memcpy(good, s->base, g.size);
    drop_view(s);

    int failures = 0;
    for (int op = H_NONE; op < H_END; op++) {
        memcpy(img, good, g.size);
        size_t size = apply_hostile((enum hostile_op)op, img, &g);
        write_object(nm, img, size);
        pid_t pid = spawn();
        if (pid == 0)
            hostile_before_child((enum hostile_op)op, nm, img, size, &g);
        int st = wait_child(pid, 3000);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            print_error("hostile segment, %s: child %s %d\n", hostile_what[op],
                        st == -1          ? "timed out"
                        : WIFSIGNALED(st) ? "died of signal"
                                          : "exited",
                        st == -1          ? 0
                        : WIFSIGNALED(st) ? WTERMSIG(st)
                                          : WEXITSTATUS(st));
            failures++;
        }
        if (op < E_FIRST)
            continue;
        write_object(nm, good, g.size);
        pid = spawn();
        if (pid == 0)
            hostile_after_child((enum hostile_op)op, nm, &g);
        st = wait_child(pid, 3000);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            print_error("hostile entries after attach, %s: child %s %d\n", hostile_what[op],
                        st == -1          ? "timed out"
                        : WIFSIGNALED(st) ? "died of signal"
                                          : "exited",
                        st == -1          ? 0
                        : WIFSIGNALED(st) ? WTERMSIG(st)
                                          : WEXITSTATUS(st));
            failures++;
        }
    }
    if (failures)
        fail_msg("%d hostile segment cases were not handled (see above)", failures);
}

/* The header documents the cells as n_slots x row_stride x 8 bytes, slot-major: a reader that is
 * not this library finds (slot, index) at cells_off + (slot * row_stride + index) * 8, row_stride
 * being max_stats rounded up to 8 (a cache line). Checked with a max_stats that is not a
 * multiple of 8. */
static void test_cell_rows_follow_the_header_for_any_max_stats(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 10, 2, 3, 1024);
    const struct stats_header *hd = s->hdr;
    assert_int_equal(hd->max_stats, 10);
    int c = stats_register(s, "row.counter", STAT_COUNTER);
    assert_true(c >= 0);
    stats_set_slot(s, 1);
    stats_inc(s, c, 1111);
    stats_set_slot(s, 2);
    stats_inc(s, c, 2222);
    const struct stats_entry *e = stats_entry_at(s, (uint32_t)c);
    const uint64_t *cells = (const void *)((const unsigned char *)s->base + hd->cells_off);
    assert_int_equal(hd->row_stride, 16);
    uint64_t at1 = cells[1 * (uint64_t)hd->row_stride + e->index];
    uint64_t at2 = cells[2 * (uint64_t)hd->row_stride + e->index];
    if (at1 != 1111 || at2 != 2222)
        fail_msg("slot 1 and 2 cells at the documented places hold %llu and %llu, not 1111 and "
                 "2222: the row stride is not the header's (%u)",
                 (unsigned long long)at1, (unsigned long long)at2, hd->row_stride);
    /* And the regions the header implies leave the histogram blocks where it says. */
    assert_true(hd->cells_off + (uint64_t)hd->n_slots * hd->row_stride * 8u <= hd->hists_off);
}

/* -1 means the table, the arena or the histogram blocks are full; a refused registration must not
 * use up room that a later one could have had. */
static void test_too_long_a_name_leaves_the_arena(void **state)
{
    (void)state;
    struct stats *s = make(new_name(), 64, 2, 2, 4096);
    uint64_t arena = s->hdr->arena_size;
    /* A name longer than the whole arena is refused; short names still fit afterwards. */
    char *huge = long_name((size_t)arena + 1, 'h');
    assert_int_equal(stats_register(s, huge, STAT_COUNTER), -1);
    int a = stats_register(s, "after.a.long.name", STAT_COUNTER);
    if (a < 0)
        fail_msg("a %llu-byte name was refused, and now a 17-byte name is too (arena_used %llu of "
                 "%llu, nothing stored)",
                 (unsigned long long)arena + 1,
                 (unsigned long long)atomic_load(&s->hdr->arena_used), (unsigned long long)arena);
    assert_name(s, a, "after.a.long.name");
}

static void test_refused_histograms_leave_the_arena(void **state)
{
    (void)state;
    struct stats *s = make(new_name(), 64, 2, 2, 4096);
    uint64_t arena = s->hdr->arena_size;
    /* With the histogram blocks full, retried histogram registrations must not eat the arena. */
    uint32_t maxh = s->hdr->max_histograms;
    char name[48];
    for (uint32_t i = 0; i < maxh; i++) {
        snprintf(name, sizeof(name), "h.%u", i);
        assert_true(stats_register(s, name, STAT_HISTOGRAM) >= 0);
    }
    int refused = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "cluster.c%d.upstream_rq_time", i % 10);
        refused += stats_register(s, name, STAT_HISTOGRAM) == -1;
    }
    assert_int_equal(refused, 1000);
    int b = stats_register(s, "after.histograms.full", STAT_COUNTER);
    if (b < 0)
        fail_msg("after 1000 refused histogram registrations a counter is refused too: arena_used "
                 "%llu of %llu, %u of %u entries",
                 (unsigned long long)atomic_load(&s->hdr->arena_used), (unsigned long long)arena,
                 stats_count(s), s->hdr->max_stats);
    assert_name(s, b, "after.histograms.full");
}

/* A writer (buggy or hostile) changes a published entry while a read-only reader reads it: the
 * reader's answers must still point inside the segment, whatever it read a moment before. Each
 * reader is raced on its own, so each one that fails is named. */
#define RACE_MS 300

enum race_target { RACE_NAME, RACE_COUNTER, RACE_HIST, RACE_FIND, RACE_END };

static const char *const race_what[RACE_END] = {
    [RACE_NAME] = "stats_entry_at + stats_name",
    [RACE_COUNTER] = "stats_counter_value / stats_slot_value",
    [RACE_HIST] = "stats_hist_read",
    [RACE_FIND] = "stats_find",
};

static void race_writer(const char *nm, const struct good *g)
{
    int fd = shm_open(nm, O_RDWR, 0);
    CHILD_CHECK(fd >= 0);
    unsigned char *rw = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHILD_CHECK(rw != MAP_FAILED);
    struct stats_entry *tab = (void *)(rw + g->h.table_off);
    volatile uint32_t *c_off = &tab[g->c].name_off, *c_len = &tab[g->c].name_len;
    volatile uint32_t *c_idx = &tab[g->c].index, *h_idx = &tab[g->hist].index;
    uint32_t off0 = *c_off, len0 = *c_len, idx0 = *c_idx, hidx0 = *h_idx;
    uint64_t end = now_us() + RACE_MS * 1000u;
    while (now_us() < end) {
        for (int i = 0; i < 1000; i++) {
            *c_off = 0xfffffff0u;
            *c_len = 0x7fffffffu;
            *c_idx = 0x0fffffffu;
            *h_idx = 0x00ffffffu;
            *c_len = len0;
            *c_idx = idx0;
            *h_idx = hidx0;
            *c_off = off0;
        }
    }
    _exit(0);
}

static void race_reader(const char *nm, const struct good *g, enum race_target what)
{
    struct stats v;
    memset(&v, 0, sizeof(v));
    const char *why = NULL;
    CHILD_CHECK(stats_attach(&v, nm, true, &why) == 0);
    const char *arena = (const char *)v.base + g->h.arena_off;
    volatile uint64_t sink = 0;
    uint64_t end = now_us() + RACE_MS * 1000u;
    while (now_us() < end) {
        for (int i = 0; i < 1000; i++) {
            const struct stats_entry *e;
            struct stats_hist_snapshot snap;
            switch (what) {
            case RACE_NAME:
                e = stats_entry_at(&v, (uint32_t)g->c);
                if (e != NULL) {
                    size_t len = 0;
                    const char *n = stats_name(&v, e, &len);
                    if (n != NULL && (n < arena || len > g->h.arena_size ||
                                      (uint64_t)(n - arena) > g->h.arena_size - len)) {
                        fprintf(stderr,
                                "child: stats_name after a successful stats_entry_at gave %zu "
                                "bytes at arena offset %lld, outside the %llu-byte arena\n",
                                len, (long long)(n - arena), (unsigned long long)g->h.arena_size);
                        _exit(21);
                    }
                }
                break;
            case RACE_COUNTER:
                sink += stats_counter_value(&v, g->c);
                break;
            case RACE_HIST:
                stats_hist_read(&v, g->hist, &snap);
                sink += snap.count;
                break;
            case RACE_FIND:
            case RACE_END:
                sink += (uint64_t)stats_find(&v, "good.counter", 12);
                break;
            }
        }
    }
    (void)sink;
    _exit(0);
}

static void test_entries_changing_under_a_reader(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 16, 2, 2, 1024);
    struct good g;
    memset(&g, 0, sizeof(g));
    g.c = stats_register(s, "good.counter", STAT_COUNTER);
    g.hist = stats_register(s, "good.hist", STAT_HISTOGRAM);
    assert_true(g.c >= 0 && g.hist >= 0);
    memcpy(&g.h, s->hdr, sizeof(g.h));
    g.size = (size_t)g.h.total_size;
    int failures = 0;
    for (int what = 0; what < RACE_END; what++) {
        pid_t r = spawn();
        if (r == 0)
            race_reader(nm, &g, (enum race_target)what);
        pid_t w = spawn();
        if (w == 0)
            race_writer(nm, &g);
        expect_child_ok(w, "racing writer");
        int st = wait_child(r, 3000);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            print_error("%s with the entry changing under it: child %s %d\n", race_what[what],
                        st == -1          ? "timed out"
                        : WIFSIGNALED(st) ? "died of signal"
                                          : "exited",
                        st == -1          ? 0
                        : WIFSIGNALED(st) ? WTERMSIG(st)
                                          : WEXITSTATUS(st));
            failures++;
        }
    }
    if (failures)
        fail_msg("%d readers left the segment when an entry changed after they checked it",
                 failures);
}

/* Two processes registering one name at once make two entries, each counting
 * part of the gauge: a limit reads them all. (The race is staged here by
 * renaming a second entry in place.) */
static void test_gauge_over_twin_entries(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats *s = make(nm, 16, 2, 2, 4096);
    int a = stats_register(s, "dup.gauge", STAT_GAUGE);
    int b = stats_register(s, "dup.gaugf", STAT_GAUGE);
    assert_true(a >= 0 && b >= 0);
    size_t len;
    char *name = (char *)stats_name(s, stats_entry_at(s, (uint32_t)b), &len);
    name[len - 1] = 'e'; /* now both are "dup.gauge" */
    stats_gauge_add(s, a, 3);
    stats_gauge_add(s, b, 4);
    struct stats_same_name sn;
    stats_same_name_init(&sn, a);
    assert_int_equal(stats_gauge_value(s, a), 3);
    assert_int_equal(stats_gauge_value_all(s, &sn), 7);
    /* A later registration makes it look again; the sum stays. */
    assert_true(stats_register(s, "other", STAT_COUNTER) >= 0);
    stats_gauge_add(s, b, 1);
    assert_int_equal(stats_gauge_value_all(s, &sn), 8);
    struct stats_same_name none;
    stats_same_name_init(&none, -1);
    assert_int_equal(stats_gauge_value_all(s, &none), 0);
}

/* Found by fuzz_shm_reader: counts from a hostile segment near 2^64 made the
 * quantile's rank a double no uint64_t holds (undefined behaviour). */
static void test_quantile_of_absurd_counts(void **state)
{
    (void)state;
    struct stats_hist_snapshot h;
    memset(&h, 0, sizeof(h));
    h.buckets[3] = UINT64_MAX - 5;
    h.buckets[STATS_HIST_BUCKETS - 1] = 5;
    h.count = UINT64_MAX;
    assert_true(stats_hist_quantile(&h, 1.0) == stats_hist_bucket_upper(STATS_HIST_BUCKETS - 1));
    assert_true(stats_hist_quantile(&h, 0.5) == stats_hist_bucket_upper(3));
    assert_true(stats_hist_quantile(&h, 0.0) == stats_hist_bucket_upper(3));
}

static void test_attach_nonexistent(void **state)
{
    (void)state;
    const char *nm = new_name();
    struct stats v;
    memset(&v, 0, sizeof(v));
    const char *why = NULL;
    errno = 0;
    assert_int_equal(stats_attach(&v, nm, true, &why), -1);
    assert_int_equal(errno, ENOENT);
    errno = 0;
    assert_int_equal(stats_attach(&v, nm, false, &why), -1);
    assert_int_equal(errno, ENOENT);

    /* A segment that exists but is empty (its creator died before ftruncate) is not ENOENT, even
     * when errno held ENOENT before the call: ENOENT is how a caller learns there is none. */
    int fd = shm_open(nm, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    why = NULL;
    errno = ENOENT;
    assert_int_equal(stats_attach(&v, nm, true, &why), -1);
    assert_non_null(why);
    if (errno == ENOENT || errno == 0)
        fail_msg("attach to an existing empty segment left errno %d (%s): reads as no segment",
                 errno, strerror(errno));
    assert_int_equal(shm_unlink(nm), 0);

    /* Unlinked: gone for the next attacher, still there for a mapping that has it. */
    struct stats *s = make(nm, 8, 1, 1, 512);
    int c = stats_register(s, "kept", STAT_COUNTER);
    stats_inc(s, c, 1);
    assert_int_equal(stats_unlink(nm), 0);
    errno = 0;
    assert_int_equal(stats_attach(&v, nm, true, &why), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(stats_counter_value(s, c), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shm_name_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_writes_a_valid_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_replaces_a_stale_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_write_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_of_any_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histograms_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_sum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_matches_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hist_bucket_arithmetic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hist_distribution_and_quantiles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_processes_add_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writers_killed_at_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_are_complete_when_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abandoned_reservation_wedges_no_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_ids_are_harmless, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entries_changing_under_a_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cell_rows_follow_the_header_for_any_max_stats, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_too_long_a_name_leaves_the_arena, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_histograms_leave_the_arena, setup, teardown),
        cmocka_unit_test(test_quantile_of_absurd_counts),
        cmocka_unit_test_setup_teardown(test_gauge_over_twin_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_nonexistent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

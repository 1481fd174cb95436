#include "shm/hosts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOSTS_MAGIC 0x3154534f48474c00ull /* "\0LGHOST1" */
#define RING_RESERVE_MAX (1u << 18)       /* ring entries reserved per level (sparse) */

enum table_kind {
    TABLE_NONE,
    TABLE_RING,
    TABLE_MAGLEV,
};

struct hosts_header {
    uint64_t magic;
    uint64_t size;
    uint32_t n_clusters;
    uint32_t pad;
    uint64_t cluster_off[]; /* from the segment start */
};

struct bank_header {
    uint32_t n_hosts;
    uint32_t pad;
    struct hosts_plan plan;
    uint64_t table_len[HOSTS_MAX_LEVELS];
};

struct hosts_cluster {
    _Atomic uint64_t gen;
    _Atomic uint32_t bank;
    _Atomic uint32_t had_traffic; /* a worker routed a request here (sticky) */
    uint32_t cap_hosts;
    uint32_t n_levels;
    uint32_t kind;
    uint64_t table_cap;    /* entries per level */
    uint64_t bank_off[2];  /* bank header, then cap_hosts entries; from the cluster's start */
    uint64_t table_off[2]; /* n_levels tables of table_cap entries */
    uint64_t live_off;
    uint64_t size;
};

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static uint32_t cluster_capacity(const struct cfg_cluster *cl)
{
    if (cl->type != CLUSTER_STATIC)
        return HOSTS_DYNAMIC_CAP;
    return cl->n_endpoints > 0 ? (uint32_t)cl->n_endpoints : 1;
}

static void cluster_shape(const struct cfg_cluster *cl, uint32_t *kind, uint64_t *table_cap,
                          size_t *entry_size)
{
    *kind = TABLE_NONE;
    *table_cap = 0;
    *entry_size = 0;
    if (cl->lb_policy == LB_RING_HASH) {
        *kind = TABLE_RING;
        *table_cap = cl->ring_max_size < RING_RESERVE_MAX ? cl->ring_max_size : RING_RESERVE_MAX;
        *entry_size = sizeof(uint64_t) + sizeof(uint32_t);
    } else if (cl->lb_policy == LB_MAGLEV) {
        *kind = TABLE_MAGLEV;
        *table_cap = cl->maglev_table_size;
        *entry_size = sizeof(uint32_t);
    }
}

/* The bytes a cluster takes, and (when `c` is given) its header filled in. */
static size_t cluster_layout(const struct cfg_cluster *cl, struct hosts_cluster *c)
{
    uint32_t cap = cluster_capacity(cl), kind;
    /* A discovered cluster's priorities are known only when its hosts are. */
    uint32_t levels = cl->type == CLUSTER_EDS ? HOSTS_MAX_LEVELS : cl->max_priority + 1;
    uint64_t table_cap;
    size_t entry_size;
    cluster_shape(cl, &kind, &table_cap, &entry_size);
    size_t off = align64(sizeof(struct hosts_cluster));
    size_t bank_size = align64(sizeof(struct bank_header) + cap * sizeof(struct hosts_entry));
    size_t table_size = align64((size_t)table_cap * entry_size * levels);
    uint64_t bank_off[2], table_off[2];
    for (int b = 0; b < 2; b++) {
        bank_off[b] = off;
        off += bank_size;
    }
    for (int b = 0; b < 2; b++) {
        table_off[b] = off;
        off += table_size;
    }
    uint64_t live_off = off;
    off += align64(cap * sizeof(struct hosts_live));
    if (c != NULL) {
        c->cap_hosts = cap;
        c->n_levels = levels;
        c->kind = kind;
        c->table_cap = table_cap;
        memcpy(c->bank_off, bank_off, sizeof(bank_off));
        memcpy(c->table_off, table_off, sizeof(table_off));
        c->live_off = live_off;
        c->size = off;
    }
    return off;
}

int hosts_segment_create(const struct config *cfg)
{
    size_t off = align64(sizeof(struct hosts_header) + cfg->n_clusters * sizeof(uint64_t));
    size_t total = off;
    for (size_t i = 0; i < cfg->n_clusters; i++)
        total += cluster_layout(&cfg->clusters[i], NULL);
    int fd = memfd_create("legate-hosts", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    /* Sparse: table space nobody fills costs nothing. */
    if (ftruncate(fd, (off_t)total) != 0)
        goto fail;
    uint8_t *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        goto fail;
    struct hosts_header *h = (struct hosts_header *)base;
    h->size = total;
    h->n_clusters = (uint32_t)cfg->n_clusters;
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        h->cluster_off[i] = off;
        off += cluster_layout(&cfg->clusters[i], (struct hosts_cluster *)(base + off));
    }
    atomic_thread_fence(memory_order_release);
    h->magic = HOSTS_MAGIC;
    munmap(base, total);
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int hosts_attach(struct hosts_seg *s, int fd, char *err, size_t cap)
{
    struct stat st;
    memset(s, 0, sizeof(*s));
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct hosts_header)) {
        snprintf(err, cap, "host table descriptor %d is not a host table", fd);
        return -1;
    }
    uint8_t *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        snprintf(err, cap, "mapping the host table: %s", strerror(errno));
        return -1;
    }
    const struct hosts_header *h = (const struct hosts_header *)base;
    if (h->magic != HOSTS_MAGIC || h->size != (uint64_t)st.st_size) {
        munmap(base, (size_t)st.st_size);
        snprintf(err, cap, "host table descriptor %d has a bad header", fd);
        return -1;
    }
    s->base = base;
    s->size = (size_t)st.st_size;
    s->n_clusters = h->n_clusters;
    return 0;
}

void hosts_detach(struct hosts_seg *s)
{
    if (s->base != NULL)
        munmap(s->base, s->size);
    memset(s, 0, sizeof(*s));
}

struct hosts_cluster *hosts_cluster(const struct hosts_seg *s, size_t index)
{
    if (s->base == NULL || index >= s->n_clusters)
        return NULL;
    const struct hosts_header *h = (const struct hosts_header *)s->base;
    return (struct hosts_cluster *)(s->base + h->cluster_off[index]);
}

uint32_t hosts_capacity(const struct hosts_cluster *c)
{
    return c->cap_hosts;
}

size_t hosts_table_capacity(const struct hosts_cluster *c)
{
    return (size_t)c->table_cap;
}

uint64_t hosts_generation(const struct hosts_cluster *c)
{
    return atomic_load_explicit(&c->gen, memory_order_acquire);
}

struct hosts_live *hosts_live(struct hosts_cluster *c, uint32_t live)
{
    if (live >= c->cap_hosts)
        return NULL;
    return (struct hosts_live *)((uint8_t *)c + c->live_off) + live;
}

static struct bank_header *bank(const struct hosts_cluster *c, uint32_t b)
{
    return (struct bank_header *)((uint8_t *)c + c->bank_off[b & 1]);
}

static struct hosts_entry *bank_entries(const struct hosts_cluster *c, uint32_t b)
{
    return (struct hosts_entry *)(bank(c, b) + 1);
}

/* Level `level`'s table in bank `b`: a ring is table_cap hashes then
 * table_cap owners; a Maglev table is table_cap owners. */
static uint8_t *table(const struct hosts_cluster *c, uint32_t b, uint32_t level)
{
    size_t entry = c->kind == TABLE_RING ? sizeof(uint64_t) + sizeof(uint32_t) : sizeof(uint32_t);
    return (uint8_t *)c + c->table_off[b & 1] + (size_t)level * c->table_cap * entry;
}

void hosts_read(const struct hosts_cluster *c, struct hosts_view *v)
{
    for (;;) {
        uint64_t g = atomic_load_explicit(&c->gen, memory_order_acquire);
        uint32_t b = atomic_load_explicit(&c->bank, memory_order_acquire);
        const struct bank_header *bh = bank(c, b);
        uint32_t n = bh->n_hosts;
        if (n > c->cap_hosts)
            n = c->cap_hosts; /* torn: the check below throws it away */
        v->plan = bh->plan;
        memcpy(v->hosts, bank_entries(c, b), n * sizeof(struct hosts_entry));
        v->n_hosts = n;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&c->gen, memory_order_relaxed) == g) {
            v->gen = g;
            v->bank = b & 1;
            return;
        }
    }
}

static uint32_t ring_lookup(const uint8_t *t, uint64_t cap, uint64_t len, uint64_t hash)
{
    const uint64_t *hashes = (const uint64_t *)t;
    const uint32_t *owners = (const uint32_t *)(t + cap * sizeof(uint64_t));
    /* The first entry at or after the hash, wrapping to the first. */
    uint64_t lo = 0, hi = len;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (__atomic_load_n(&hashes[mid], __ATOMIC_RELAXED) < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == len)
        lo = 0;
    return __atomic_load_n(&owners[lo], __ATOMIC_RELAXED);
}

uint32_t hosts_table_pick(const struct hosts_cluster *c, uint64_t gen, uint32_t b, uint32_t level,
                          uint64_t hash)
{
    if (atomic_load_explicit(&c->gen, memory_order_acquire) != gen)
        return HOSTS_PICK_STALE;
    if (level >= c->n_levels || c->kind == TABLE_NONE)
        return HOSTS_PICK_NONE;
    uint64_t len = __atomic_load_n(&bank(c, b)->table_len[level], __ATOMIC_RELAXED);
    uint32_t pick = HOSTS_PICK_NONE;
    if (len > 0 && len <= c->table_cap) {
        const uint8_t *t = table(c, b, level);
        if (c->kind == TABLE_RING)
            pick = ring_lookup(t, c->table_cap, len, hash);
        else
            pick = __atomic_load_n(&((const uint32_t *)t)[hash % len], __ATOMIC_RELAXED);
    }
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&c->gen, memory_order_relaxed) != gen)
        return HOSTS_PICK_STALE;
    return pick;
}

static uint32_t hidden_bank(const struct hosts_cluster *c)
{
    return atomic_load_explicit(&c->bank, memory_order_relaxed) ^ 1u;
}

struct hosts_entry *hosts_write_begin(struct hosts_cluster *c)
{
    /* The previous publication's generation bump is visible before any of
     * this one's writes: a reader that sees them sees the bump, and retries. */
    atomic_thread_fence(memory_order_release);
    struct bank_header *bh = bank(c, hidden_bank(c));
    memset(bh->table_len, 0, sizeof(bh->table_len));
    return bank_entries(c, hidden_bank(c));
}

size_t hosts_write_ring(struct hosts_cluster *c, uint32_t level, const uint64_t *hashes,
                        const uint32_t *hosts, size_t n)
{
    if (c->kind != TABLE_RING || level >= c->n_levels)
        return 0;
    if (n > c->table_cap)
        n = (size_t)c->table_cap;
    uint32_t b = hidden_bank(c);
    uint8_t *t = table(c, b, level);
    memcpy(t, hashes, n * sizeof(uint64_t));
    memcpy(t + c->table_cap * sizeof(uint64_t), hosts, n * sizeof(uint32_t));
    bank(c, b)->table_len[level] = n;
    return n;
}

size_t hosts_write_maglev(struct hosts_cluster *c, uint32_t level, const uint32_t *entries,
                          size_t n)
{
    if (c->kind != TABLE_MAGLEV || level >= c->n_levels)
        return 0;
    if (n > c->table_cap)
        n = (size_t)c->table_cap;
    uint32_t b = hidden_bank(c);
    memcpy(table(c, b, level), entries, n * sizeof(uint32_t));
    bank(c, b)->table_len[level] = n;
    return n;
}

void hosts_write_publish(struct hosts_cluster *c, uint32_t n_hosts, const struct hosts_plan *plan)
{
    uint32_t b = hidden_bank(c);
    struct bank_header *bh = bank(c, b);
    bh->n_hosts = n_hosts <= c->cap_hosts ? n_hosts : c->cap_hosts;
    bh->plan = *plan;
    atomic_store_explicit(&c->bank, b, memory_order_release);
    atomic_fetch_add_explicit(&c->gen, 1, memory_order_release);
}

void host_flags_text(uint32_t flags, char *out, size_t cap)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {
        {HOST_FAILED_ACTIVE_HC, "/failed_active_hc"},
        {HOST_FAILED_OUTLIER_CHECK, "/failed_outlier_check"},
        {HOST_FAILED_EDS_HEALTH, "/failed_eds_health"},
        {HOST_DEGRADED_EDS_HEALTH, "/degraded_eds_health"},
        {HOST_PENDING_DYNAMIC_REMOVAL, "/pending_dynamic_removal"},
    };
    size_t off = 0;
    if (cap == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if ((flags & names[i].bit) && off < cap)
            off += (size_t)snprintf(out + off, cap - off, "%s", names[i].name);
    if (off == 0)
        snprintf(out, cap, "healthy");
}

uint16_t hosts_addr_format(const struct sockaddr_storage *ss, char *ip, size_t ip_cap, char *name,
                           size_t name_cap)
{
    char own[INET6_ADDRSTRLEN];
    if (ip == NULL) {
        ip = own;
        ip_cap = sizeof(own);
    }
    bool v6 = ss->ss_family == AF_INET6;
    uint16_t port;
    if (v6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, (socklen_t)ip_cap);
        port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, (socklen_t)ip_cap);
        port = ntohs(a->sin_port);
    }
    if (name != NULL)
        snprintf(name, name_cap, v6 ? "[%s]:%u" : "%s:%u", ip, port);
    return port;
}

void hosts_mark_traffic(struct hosts_cluster *c)
{
    /* A load first: after the first request the line stays shared, unwritten. */
    if (atomic_load_explicit(&c->had_traffic, memory_order_relaxed) == 0)
        atomic_store_explicit(&c->had_traffic, 1, memory_order_relaxed);
}

bool hosts_had_traffic(const struct hosts_cluster *c)
{
    return atomic_load_explicit(&c->had_traffic, memory_order_relaxed) != 0;
}

/* loadgen: an open-loop HTTP/1.1 load generator for latency at a fixed rate.
 *
 * wrk is closed-loop: a slow response delays the next request, so the delay
 * is never measured (coordinated omission). Here every request has a
 * scheduled send time, fixed in advance from the rate. When its connection
 * was still waiting for the previous response at that time, its latency runs
 * from the scheduled time, not from when it could finally be sent; otherwise
 * from when it was written, so that this process's own wake-up delay is not
 * charged to the proxy. Between sends it sleeps (to the microsecond) rather
 * than spins: it shares a CPU with the upstream. Keep-alive connections, one
 * request in flight on each; responses framed by Content-Length.
 *
 *   loadgen --port P [--host 127.0.0.1] [--path /] --rate R --duration S
 *           [--connections C] [--warmup S] [--json]
 *
 * Prints achieved rate, errors and latency quantiles (microseconds). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    bool busy;         /* a request is in flight */
    uint64_t sched_ns; /* when the request in flight was due */
    uint64_t start_ns; /* where its latency runs from (see the send loop) */
    uint64_t free_ns;  /* when the previous response was complete */
    uint64_t next_ns;  /* when this connection's next request is due */
    char in[16384];    /* a response head must fit; body bytes are counted, not kept */
    size_t in_len;
    long need; /* bytes of body still to come; -1 while reading the head */
};

struct run {
    struct sockaddr_in addr;
    char request[512];
    size_t request_len;
    double rate;
    double duration, warmup;
    int n_conns;
    struct conn *conns;
    uint64_t *lat_us;
    size_t n_lat, cap_lat;
    uint64_t errors, sent, done;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int conn_open(struct run *r, struct conn *c, int ep)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&r->addr, sizeof(r->addr)) != 0) {
        perror("loadgen: connect");
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->busy = false;
    c->in_len = 0;
    c->need = -1;
    return 0;
}

static void record(struct run *r, uint64_t us)
{
    if (r->n_lat == r->cap_lat) {
        r->cap_lat = r->cap_lat ? r->cap_lat * 2 : 65536;
        r->lat_us = realloc(r->lat_us, r->cap_lat * sizeof(uint64_t));
        if (r->lat_us == NULL) {
            fprintf(stderr, "loadgen: out of memory\n");
            exit(1);
        }
    }
    r->lat_us[r->n_lat++] = us;
}

/* Parse what is buffered; returns 1 when a whole response is in, 0 for more,
 * -1 for a response this tool does not understand. */
static int parse_response(struct conn *c)
{
    if (c->need < 0) {
        c->in[c->in_len] = '\0';
        char *end = strstr(c->in, "\r\n\r\n");
        if (end == NULL)
            return c->in_len >= sizeof(c->in) - 1 ? -1 : 0;
        size_t head = (size_t)(end + 4 - c->in);
        char *cl = strcasestr(c->in, "\ncontent-length:");
        if (cl == NULL || cl > end || strncmp(c->in, "HTTP/1.1 2", 10) != 0)
            return -1;
        c->need = strtol(cl + 16, NULL, 10);
        memmove(c->in, c->in + head, c->in_len - head);
        c->in_len -= head;
    }
    if ((long)c->in_len < c->need) {
        c->need -= (long)c->in_len; /* body bytes are not kept */
        c->in_len = 0;
        return 0;
    }
    size_t extra = c->in_len - (size_t)c->need;
    memmove(c->in, c->in + c->need, extra);
    c->in_len = extra;
    c->need = -1;
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t quantile(const uint64_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv)
{
    struct run r = {.rate = 0, .duration = 10, .warmup = 1, .n_conns = 50};
    const char *host = "127.0.0.1", *path = "/";
    int port = 0;
    bool json = false;
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"path", required_argument, NULL, 'P'},
        {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'},
        {"connections", required_argument, NULL, 'c'},
        {"warmup", required_argument, NULL, 'w'},
        {"json", no_argument, NULL, 'j'},
        {0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'H':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'P':
            path = optarg;
            break;
        case 'r':
            r.rate = atof(optarg);
            break;
        case 'd':
            r.duration = atof(optarg);
            break;
        case 'c':
            r.n_conns = atoi(optarg);
            break;
        case 'w':
            r.warmup = atof(optarg);
            break;
        case 'j':
            json = true;
            break;
        default:
            fprintf(stderr, "usage: loadgen --port P --rate R [--duration S] [--connections C] "
                            "[--warmup S] [--path /] [--host IP] [--json]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || r.rate <= 0 || r.duration <= 0 || r.duration > 3600 ||
        r.n_conns < 1 || r.n_conns > 10000 || r.warmup < 0) {
        fprintf(stderr, "loadgen: need --port, a positive --rate, 0 < --duration <= 3600, "
                        "1 <= --connections <= 10000\n");
        return 2;
    }
    r.addr.sin_family = AF_INET;
    r.addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &r.addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
        return 2;
    }
    r.request_len = (size_t)snprintf(r.request, sizeof(r.request),
                                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, host, port);
    /* The default 50 us timer slack would delay every send by up to that. */
    prctl(PR_SET_TIMERSLACK, 1000UL);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    r.conns = calloc((size_t)r.n_conns, sizeof(*r.conns));
    if (ep < 0 || r.conns == NULL)
        return 1;
    /* Each connection sends every n_conns/rate seconds, the connections
     * staggered evenly: together, one request every 1/rate seconds. */
    uint64_t interval = (uint64_t)(1e9 * r.n_conns / r.rate);
    uint64_t start = now_ns() + 50000000u;
    uint64_t measure_from = start + (uint64_t)(r.warmup * 1e9);
    uint64_t stop = measure_from + (uint64_t)(r.duration * 1e9);
    for (int i = 0; i < r.n_conns; i++) {
        if (conn_open(&r, &r.conns[i], ep) != 0)
            return 1;
        r.conns[i].next_ns = start + interval * (uint64_t)i / (uint64_t)r.n_conns;
    }
    struct epoll_event evs[256];
    uint64_t t;
    while ((t = now_ns()) < stop + 2000000000u) {
        /* Send what is due, on every idle connection; a busy one sends its
         * late request as soon as the previous response is in. */
        uint64_t next = UINT64_MAX;
        for (int i = 0; i < r.n_conns; i++) {
            struct conn *c = &r.conns[i];
            if (!c->busy && c->next_ns < stop) {
                if (c->next_ns <= t) {
                    if (write(c->fd, r.request, r.request_len) != (ssize_t)r.request_len) {
                        r.errors++;
                        close(c->fd);
                        if (conn_open(&r, c, ep) != 0)
                            return 1;
                        continue;
                    }
                    c->busy = true;
                    c->sched_ns = c->next_ns;
                    /* A request that waited for its connection waited for
                     * the proxy: it counts from when it was due. One sent
                     * late only because this process woke late counts from
                     * when it was written; that delay is not the proxy's. */
                    c->start_ns = c->free_ns > c->sched_ns ? c->sched_ns : t;
                    c->next_ns += interval;
                    r.sent++;
                } else if (c->next_ns < next)
                    next = c->next_ns;
            }
        }
        if (t >= stop) {
            bool any = false;
            for (int i = 0; i < r.n_conns; i++)
                any |= r.conns[i].busy;
            if (!any)
                break;
        }
        /* Sleep until the next send is due, to the microsecond. A timeout in
         * whole milliseconds would round to 0 and spin: the spinning
         * generator then takes the CPU it shares with the upstream, and the
         * run measures the scheduler rather than the proxy. */
        uint64_t wait_ns = next == UINT64_MAX ? 10000000u : (next > t ? next - t : 0);
        struct timespec timeout = {.tv_sec = (time_t)(wait_ns / 1000000000u),
                                   .tv_nsec = (long)(wait_ns % 1000000000u)};
        int n = epoll_pwait2(ep, evs, 256, &timeout, NULL);
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            ssize_t got = read(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len);
            if (got <= 0) {
                r.errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                uint64_t due = c->next_ns;
                if (conn_open(&r, c, ep) != 0)
                    return 1;
                c->next_ns = due;
                continue;
            }
            c->in_len += (size_t)got;
            int rc;
            while (c->busy && (rc = parse_response(c)) != 0) {
                if (rc < 0) {
                    r.errors++;
                    c->in_len = 0;
                    c->need = -1;
                }
                c->busy = false;
                uint64_t done = now_ns();
                c->free_ns = done;
                if (rc > 0 && c->sched_ns >= measure_from && c->sched_ns < stop) {
                    record(&r, (done - c->start_ns) / 1000u);
                    r.done++;
                }
            }
        }
    }
    if (r.n_lat > 0)
        qsort(r.lat_us, r.n_lat, sizeof(uint64_t), cmp_u64);
    double achieved = (double)r.done / r.duration;
    uint64_t p50 = quantile(r.lat_us, r.n_lat, 0.5), p99 = quantile(r.lat_us, r.n_lat, 0.99),
             p999 = quantile(r.lat_us, r.n_lat, 0.999), max = r.n_lat ? r.lat_us[r.n_lat - 1] : 0;
    if (json)
        printf("{\"rate\":%.0f,\"achieved\":%.1f,\"requests\":%llu,\"errors\":%llu,"
               "\"p50_us\":%llu,\"p99_us\":%llu,\"p999_us\":%llu,\"max_us\":%llu}\n",
               r.rate, achieved, (unsigned long long)r.done, (unsigned long long)r.errors,
               (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)p999,
               (unsigned long long)max);
    else
        printf("rate %.0f/s achieved %.1f/s, %llu requests, %llu errors\n"
               "latency p50 %llu us, p99 %llu us, p99.9 %llu us, max %llu us\n",
               r.rate, achieved, (unsigned long long)r.done, (unsigned long long)r.errors,
               (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)p999,
               (unsigned long long)max);
    fflush(stdout);
    for (int i = 0; i < r.n_conns; i++)
        close(r.conns[i].fd);
    close(ep);
    free(r.conns);
    free(r.lat_us);
    return r.errors > 0 ? 1 : 0;
}

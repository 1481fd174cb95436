#include "upstream/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>

#include "common/evtimer.h"

#define DNS_MAX_SOCKETS 16

struct dns_socket {
    struct dns_resolver *r;
    ev_io io;
    bool used;
};

struct dns_resolver {
    ares_channel channel;
    struct ev_loop *loop;
    ev_timer timer;
    struct dns_socket socks[DNS_MAX_SOCKETS];
};

struct dns_query {
    struct dns_resolver *r;
    enum cfg_dns_family family;
    dns_done_fn done;
    void *arg;
};

/* The answer when there is no memory for one. */
static const struct dns_answer out_of_memory = {.status = ARES_ENOMEM, .error = "out of memory"};

int dns_library_init(void)
{
    return ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS ? 0 : -1;
}

static void arm_timer(struct dns_resolver *r)
{
    if (r->loop == NULL)
        return;
    struct timeval tv, *t = ares_timeout(r->channel, NULL, &tv);
    if (t == NULL)
        ev_timer_stop(r->loop, &r->timer);
    else
        timer_rearm(r->loop, &r->timer, (double)t->tv_sec + (double)t->tv_usec / 1e6);
}

static void on_socket(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct dns_socket *s = w->data;
    struct dns_resolver *r = s->r;
    ares_process_fd(r->channel, (revents & EV_READ) ? w->fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? w->fd : ARES_SOCKET_BAD);
    arm_timer(r);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct dns_resolver *r = t->data;
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer(r);
}

/* c-ares says which of its sockets want what. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_resolver *r = data;
    struct dns_socket *slot = NULL, *free_slot = NULL;
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++) {
        if (r->socks[i].used && r->socks[i].io.fd == fd)
            slot = &r->socks[i];
        else if (!r->socks[i].used && free_slot == NULL)
            free_slot = &r->socks[i];
    }
    if (slot != NULL && r->loop != NULL)
        ev_io_stop(r->loop, &slot->io);
    if (!readable && !writable) {
        if (slot != NULL)
            slot->used = false;
        return;
    }
    if (slot == NULL)
        slot = free_slot;
    if (slot == NULL)
        return; /* more sockets than we watch: the timer still drives them */
    slot->used = true;
    slot->r = r;
    ev_io_init(&slot->io, on_socket, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    slot->io.data = slot;
    if (r->loop != NULL)
        ev_io_start(r->loop, &slot->io);
}

struct dns_resolver *dns_resolver_new(const struct cfg_addr *servers, size_t n, char *err,
                                      size_t cap)
{
    struct dns_resolver *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = r;
    o.lookups = (char *)"b"; /* DNS only: no /etc/hosts after the chroot */
    int rc = ares_init_options(&r->channel, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS);
    if (rc != ARES_SUCCESS) {
        snprintf(err, cap, "c-ares: %s", ares_strerror(rc));
        free(r);
        return NULL;
    }
    if (n > 0) {
        struct ares_addr_port_node *nodes = calloc(n, sizeof(*nodes));
        if (nodes == NULL) {
            ares_destroy(r->channel);
            free(r);
            snprintf(err, cap, "out of memory");
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
            nodes[i].family = servers[i].ss.ss_family;
            if (servers[i].ss.ss_family == AF_INET6)
                memcpy(&nodes[i].addr.addr6,
                       &((const struct sockaddr_in6 *)&servers[i].ss)->sin6_addr,
                       sizeof(struct in6_addr));
            else
                memcpy(&nodes[i].addr.addr4,
                       &((const struct sockaddr_in *)&servers[i].ss)->sin_addr,
                       sizeof(struct in_addr));
            nodes[i].udp_port = servers[i].port;
            nodes[i].tcp_port = servers[i].port;
        }
        rc = ares_set_servers_ports(r->channel, nodes);
        free(nodes);
        if (rc != ARES_SUCCESS) {
            snprintf(err, cap, "c-ares servers: %s", ares_strerror(rc));
            ares_destroy(r->channel);
            free(r);
            return NULL;
        }
    }
    ev_timer_init(&r->timer, on_timer, 0., 0.);
    r->timer.data = r;
    return r;
}

void dns_resolver_attach(struct dns_resolver *r, struct ev_loop *loop)
{
    r->loop = loop;
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++)
        if (r->socks[i].used)
            ev_io_start(loop, &r->socks[i].io);
    arm_timer(r);
}

/* Keep the family Envoy's dns_lookup_family asks for. */
static bool wanted(int family, enum cfg_dns_family f, bool have4, bool have6)
{
    switch (f) {
    case DNS_V4_ONLY:
        return family == AF_INET;
    case DNS_V6_ONLY:
        return family == AF_INET6;
    case DNS_V4_PREFERRED:
        return have4 ? family == AF_INET : family == AF_INET6;
    case DNS_ALL:
        return true;
    case DNS_AUTO:
    default:
        return have6 ? family == AF_INET6 : family == AF_INET;
    }
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct dns_query *q = arg;
    struct dns_answer *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        if (status != ARES_EDESTRUCTION) /* the resolver is going: tell no one */
            q->done(q->arg, &out_of_memory);
        goto out;
    }
    a->status = status;
    a->cancelled = status == ARES_EDESTRUCTION;
    a->min_ttl = UINT32_MAX;
    if (status != ARES_SUCCESS) {
        a->error = ares_strerror(status);
    } else {
        bool have4 = false, have6 = false;
        for (struct ares_addrinfo_node *n = res->nodes; n != NULL; n = n->ai_next) {
            have4 |= n->ai_family == AF_INET;
            have6 |= n->ai_family == AF_INET6;
        }
        for (struct ares_addrinfo_node *n = res->nodes; n != NULL && a->n < DNS_MAX_ADDRS;
             n = n->ai_next) {
            if (!wanted(n->ai_family, q->family, have4, have6) ||
                n->ai_addrlen > sizeof(struct sockaddr_storage))
                continue;
            bool dup = false;
            for (size_t k = 0; k < a->n && !dup; k++)
                dup = a->lens[k] == n->ai_addrlen &&
                      memcmp(&a->addrs[k], n->ai_addr, n->ai_addrlen) == 0;
            if (dup)
                continue;
            memcpy(&a->addrs[a->n], n->ai_addr, n->ai_addrlen);
            a->lens[a->n] = n->ai_addrlen;
            a->n++;
            if (n->ai_ttl >= 0 && (uint32_t)n->ai_ttl < a->min_ttl)
                a->min_ttl = (uint32_t)n->ai_ttl;
        }
        if (a->n == 0) {
            a->status = ARES_ENODATA;
            a->error = "no address of the family asked for";
        }
    }
    if (a->min_ttl == UINT32_MAX)
        a->min_ttl = 0;
    q->done(q->arg, a);
    free(a);
out:
    if (res != NULL)
        ares_freeaddrinfo(res);
    free(q);
}

void dns_resolve(struct dns_resolver *r, const char *name, enum cfg_dns_family family,
                 dns_done_fn done, void *arg)
{
    struct dns_query *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        done(arg, &out_of_memory);
        return;
    }
    *q = (struct dns_query){.r = r, .family = family, .done = done, .arg = arg};
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family == DNS_V4_ONLY   ? AF_INET
                      : family == DNS_V6_ONLY ? AF_INET6
                                              : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NOSORT;
    ares_getaddrinfo(r->channel, name, NULL, &hints, on_answer, q);
    arm_timer(r);
}

void dns_resolver_free(struct dns_resolver *r)
{
    if (r == NULL)
        return;
    if (r->loop != NULL) {
        ev_timer_stop(r->loop, &r->timer);
        for (size_t i = 0; i < DNS_MAX_SOCKETS; i++)
            if (r->socks[i].used)
                ev_io_stop(r->loop, &r->socks[i].io);
    }
    ares_destroy(r->channel); /* pending queries' callbacks run with ARES_EDESTRUCTION */
    free(r);
}

/* Asynchronous DNS for the upstream manager: Debian's c-ares driven by the
 * manager's libev loop. One resolver per DNS cluster (each may name its own
 * servers). Made before the sandbox, while /etc/resolv.conf is in reach;
 * it never reads /etc/hosts (after the chroot there is none, and the
 * seccomp filter forbids opening files): names go to DNS servers only. */
#ifndef LEGATE_UPSTREAM_DNS_H
#define LEGATE_UPSTREAM_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "common/config.h"

#define DNS_MAX_ADDRS 64 /* addresses kept from one answer */

struct dns_answer {
    int status;        /* 0, or the c-ares status */
    int cancelled;     /* the resolver is being freed: do nothing */
    const char *error; /* its text, when status != 0 */
    size_t n;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS]; /* port 0 */
    socklen_t lens[DNS_MAX_ADDRS];
    uint32_t min_ttl; /* seconds, the smallest TTL of the kept records */
};

typedef void (*dns_done_fn)(void *arg, const struct dns_answer *a);

struct dns_resolver;

/* Before the sandbox. `servers` (n may be 0: the system's) are numeric
 * addresses with ports. NULL with `err` filled on failure. */
struct dns_resolver *dns_resolver_new(const struct cfg_addr *servers, size_t n, char *err,
                                      size_t cap);
/* Once the loop exists (after the sandbox is fine). */
void dns_resolver_attach(struct dns_resolver *r, struct ev_loop *loop);
/* Look `name` up; `done` is called once, from the loop. The addresses are
 * filtered by `family` as Envoy's dns_lookup_family says. */
void dns_resolve(struct dns_resolver *r, const char *name, enum cfg_dns_family family,
                 dns_done_fn done, void *arg);
void dns_resolver_free(struct dns_resolver *r); /* pending lookups end with an error */

/* Once per process, before any resolver. */
int dns_library_init(void);

#endif

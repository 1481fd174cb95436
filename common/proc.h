/* Process helpers shared by every role: titles in ps, descriptor hygiene after fork. */
#ifndef LEGATE_COMMON_PROC_H
#define LEGATE_COMMON_PROC_H

#include <stddef.h>
#include <stdint.h>

/* Remember argv's memory so proc_set_title can reuse it. Call first in main(). */
void proc_title_init(int argc, char **argv);
/* Show `title` as the process's command line in ps (e.g. "legate: worker 0"). */
void proc_set_title(const char *title);

/* Close every descriptor >= 3 except those in keep[]. */
void proc_close_fds_except(const int *keep, size_t n_keep);

/* Monotonic clock in milliseconds and nanoseconds. */
uint64_t proc_now_ms(void);
uint64_t proc_now_ns(void);

#endif

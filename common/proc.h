/* Process helpers shared by every role: titles in ps, clocks. */
#ifndef LEGATE_COMMON_PROC_H
#define LEGATE_COMMON_PROC_H

#include <stddef.h>
#include <stdint.h>

/* Remember argv's memory so proc_set_title can reuse it. Call first in main(). */
void proc_title_init(int argc, char **argv);
/* Show `title` as the process's command line in ps (e.g. "legate: worker 0"). */
void proc_set_title(const char *title);

/* Monotonic clock in milliseconds and nanoseconds. */
uint64_t proc_now_ms(void);
uint64_t proc_now_ns(void);

#endif

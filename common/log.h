/* Logging to stderr, one line per call, prefixed with time, level and role.
 * The supervisor and every child write to the same inherited stderr. */
#ifndef LEGATE_COMMON_LOG_H
#define LEGATE_COMMON_LOG_H

#include <stdarg.h>
#include <stdnoreturn.h>

enum log_level { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Parse "trace".."error"; -1 if unknown. */
int log_level_parse(const char *s);
const char *log_level_name(void); /* the current level, e.g. "info" */
void log_set_level(enum log_level level);
/* The role shown in every line, e.g. "worker 1". The string must outlive its use. */
void log_set_role(const char *role);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
noreturn void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_trace(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_TRACE))                                                                \
            log_msg(LOG_TRACE, __VA_ARGS__);                                                       \
    } while (0)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif

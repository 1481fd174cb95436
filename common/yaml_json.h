/* YAML to compact JSON, for the admin endpoint /config_dump.
 *
 * Mappings become objects (keys are always strings), sequences arrays. Quoted
 * and block scalars are strings; plain scalars follow the YAML 1.2 core schema
 * (null, booleans, integers, floats), with numbers rewritten into valid JSON
 * (`+5` -> 5, `01` -> 1, `.5` -> 0.5, `0x1f` -> 31) and .inf/.nan as strings.
 * Aliases are expanded; depth and output size are capped so that a hostile
 * document ("billion laughs") fails fast instead of exhausting memory. */
#ifndef LEGATE_COMMON_YAML_JSON_H
#define LEGATE_COMMON_YAML_JSON_H

#include <stddef.h>

#include "common/buf.h"

#define YAML_JSON_MAX_DEPTH 64                   /* nested mappings and sequences */
#define YAML_JSON_MAX_OUTPUT (16u * 1024 * 1024) /* bytes of JSON one call may append */

/* Append the JSON form of the first YAML document in `yaml` (len bytes) to `out`.
 * Returns 0, or -1 with a short reason in `err` (cap bytes) on a YAML error or
 * when a limit above is hit (then `out` may hold a partial result the caller
 * discards). `err` may be NULL. */
int yaml_to_json(const char *yaml, size_t len, struct buf *out, char *err, size_t cap);

#endif

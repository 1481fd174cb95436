/* libFuzzer: the YAML configuration loader, every error path included (each
 * error names file, line, column and field), and the access-log formats of a
 * configuration that loads. */
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"
#include "worker/access_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    struct config_errors errs = {0};
    if (config_load_string("fuzz.yaml", (const char *)data, size, &cfg, &errs) == 0) {
        char err[512];
        access_log_check_config(&cfg, err, sizeof(err));
        config_free(&cfg);
    }
    config_errors_free(&errs);
    return 0;
}

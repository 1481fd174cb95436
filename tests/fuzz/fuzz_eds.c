/* libFuzzer: an EDS file (a ClusterLoadAssignment, or a DiscoveryResponse
 * holding one), as the supervisor validates it and the upstream manager
 * parses it again. The first byte picks the service asked for. */
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const services[] = {"svc", "other", ""};
    const char *service = services[size > 0 ? data[0] % 3 : 0];
    if (size > 0) {
        data++;
        size--;
    }
    struct cfg_eds eds;
    struct config_errors errs = {0};
    if (config_load_assignment("fuzz.yaml", (const char *)data, size, service, &eds, &errs) == 0)
        config_eds_free(&eds);
    config_errors_free(&errs);
    return 0;
}

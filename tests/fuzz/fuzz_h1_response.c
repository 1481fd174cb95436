/* libFuzzer: the HTTP/1.1 response path, as a worker reads an upstream:
 * 1xx then final responses, HEAD or not, close-delimited bodies finished by
 * the peer's close, in splits the input chooses. */
#include <stdint.h>

#include "tests/fuzz/h1_feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    /* Two bytes choose the splits, one whether the request was HEAD. */
    struct fuzz_h1 f = {0};
    f.p = h1_parser_new(H1_RESPONSE, &fuzz_h1_callbacks, &f);
    if (f.p == NULL)
        return 0;
    h1_parser_expect_head_response(f.p, data[2] & 1);
    fuzz_h1_feed(&f, (uint32_t)data[0] << 8 | data[1], data + 3, size - 3);
    h1_parser_error_reason(f.p);
    h1_parser_free(f.p);
    return 0;
}

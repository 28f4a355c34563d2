/* pwr_test_util.h: what the CUDA self-tests share (pwr_cuda_test.cu: the plain model; pwr_cuda_fused_test.cu:
 * the fused model): PASS/FAIL reporting with counters, printf-style formatting, a CUDA call check that exits.
 * Not part of the library. Letters: none.
 */
#ifndef PWR_TEST_UTIL_H
#define PWR_TEST_UTIL_H

#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

#define CHECK_CUDA(call)                                                                                    \
    do {                                                                                                    \
        const cudaError_t e_ = (call);                                                                      \
        if (e_ != cudaSuccess) {                                                                            \
            std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            std::exit(1);                                                                                   \
        }                                                                                                   \
    } while (0)

namespace pwr_test {

inline int g_failed = 0, g_passed = 0;

inline void report(bool ok, const std::string &what, const std::string &detail) {
    std::printf("%s  %-46s %s\n", ok ? "PASS" : "FAIL", what.c_str(), detail.c_str());
    std::fflush(stdout);
    (ok ? g_passed : g_failed)++;
}

inline std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char *f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

}  // namespace pwr_test

#endif /* PWR_TEST_UTIL_H */

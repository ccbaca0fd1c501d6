// The checks of the C++ test programs (tests/cpp): CHECK(condition) counts every check and
// prints each failure with its file, line and the case being run (current_case); a program's
// main returns finish(its name): 0 when every check held, 1 otherwise.
#pragma once

#include <cstdio>
#include <string>

namespace fastembed_tests {

inline int failures = 0;
inline int checks = 0;
inline std::string current_case;  // printed with every failure

inline int finish(const char* program) {
    if (failures != 0) {
        std::fprintf(stderr, "%s: %d of %d checks failed\n", program, failures, checks);
        return 1;
    }
    std::printf("%s: all %d checks passed\n", program, checks);
    return 0;
}

}  // namespace fastembed_tests

#define CHECK(condition)                                                                       \
    do {                                                                                       \
        ++fastembed_tests::checks;                                                             \
        if (!(condition)) {                                                                    \
            ++fastembed_tests::failures;                                                       \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed in case [%s]\n", __FILE__, __LINE__, \
                         #condition, fastembed_tests::current_case.c_str());                   \
        }                                                                                      \
    } while (0)

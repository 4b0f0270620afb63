// One exception type for every failure a user can cause or fix (a bad file, a
// bad flag, a pipeline error): the program's main prints "hlnet: <what>" and
// exits 1. Internal invariants abort instead.
#pragma once

#include <stdexcept>
#include <string>

namespace hlnet {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// printf-style message, thrown as hlnet::Error.
[[noreturn]] void fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

// printf into a std::string (for messages; never inside the step loop).
std::string strprintf(const char *format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace hlnet

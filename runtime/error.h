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

// An error that every rank of a data-parallel run raises together, from what
// they all share (a NaN loss they all see): rank 0 reports it, and every rank
// exits 1. Any other Error is one rank's own and ends the job from that rank.
struct JobError : Error {
    using Error::Error;
};

// printf-style message, thrown as hlnet::Error.
[[noreturn]] void fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

// printf into a std::string (for messages; never inside the step loop).
std::string strprintf(const char *format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace hlnet

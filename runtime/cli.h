// Command-line flags: one table per program, parsed by one function.
// Flags take "--name VALUE" or "--name=VALUE"; numbers must be whole and in
// range. Anything else is a UsageError, which main reports with the usage text
// and exit status 2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "error.h"

namespace hlnet {

struct UsageError : Error {
    using Error::Error;
};

struct Flag {
    const char *name;  // "--epochs"
    // Where the value goes: a switch (bool), a count or seed (a non-negative
    // integer), a real number, or a string. Unset numbers stay empty.
    std::variant<bool *, std::optional<int64_t> *, std::optional<double> *, std::string *> target;
    const char *value_name;  // "N", "FILE", ...; unused for a switch
    const char *help;
};

// Parses argv[1..] into the flags' targets; throws UsageError.
void parse_flags(int argc, const char *const *argv, const std::vector<Flag> &flags);

// "usage: PROGRAM [flags]", the summary, then one aligned line per flag.
std::string usage_text(const char *program, const char *summary, const std::vector<Flag> &flags);

// ---- the trainer's flags -----------------------------------------------------

struct TrainOptions {
    std::optional<int64_t> epochs;     // default: the spec's
    std::optional<double> lr;          // default: the spec's
    std::optional<int64_t> seed;       // default: the spec's (--resume: the checkpoint's)
    std::optional<int64_t> max_steps;  // stop after this many steps in all (counting resumed ones)
    std::optional<int64_t> log_every;  // steps between progress lines and --log records
    bool no_shuffle = false;
    bool sync_bn = false;              // batch norm over the global batch (a build for several ranks)
    bool eval_only = false;
    bool help = false;
    std::string data = "/usr/share/datasets/fashion-mnist";
    std::string save, load, resume, log;
    std::string schedule;              // empty: manual (Graph::select_schedule)
};

std::vector<Flag> train_flags(TrainOptions *options);

// Parses and checks the trainer's flags (ranges, conflicts); throws UsageError.
TrainOptions parse_train_args(int argc, const char *const *argv);

}  // namespace hlnet

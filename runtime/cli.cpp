#include "cli.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace hlnet {

namespace {

[[noreturn]] void usage_error(const std::string &message) { throw UsageError(message); }

int64_t parse_count(const char *flag, const std::string &text) {
    char *end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end || errno || v < 0)
        usage_error(strprintf("%s: '%s' is not a non-negative integer", flag, text.c_str()));
    return v;
}

double parse_real(const char *flag, const std::string &text) {
    char *end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end || errno || !std::isfinite(v))
        usage_error(strprintf("%s: '%s' is not a finite number", flag, text.c_str()));
    return v;
}

// Stores `text` into whatever the flag points at.
struct Store {
    const char *flag;
    const std::string &text;
    void operator()(bool *) const {}
    void operator()(std::optional<int64_t> *t) const { *t = parse_count(flag, text); }
    void operator()(std::optional<double> *t) const { *t = parse_real(flag, text); }
    void operator()(std::string *t) const {
        if (text.empty()) usage_error(strprintf("%s: the value is empty", flag));
        *t = text;
    }
};

}  // namespace

void parse_flags(int argc, const char *const *argv, const std::vector<Flag> &flags) {
    for (int i = 1; i < argc; i++) {
        const std::string arg = argv[i];
        if (arg.rfind("--", 0) != 0) usage_error(strprintf("unexpected argument '%s'", argv[i]));
        const size_t eq = arg.find('=');
        const std::string name = arg.substr(0, eq);

        const Flag *flag = nullptr;
        for (const Flag &f : flags)
            if (name == f.name) flag = &f;
        if (!flag) usage_error(strprintf("unknown flag '%s'", name.c_str()));

        if (auto *on = std::get_if<bool *>(&flag->target)) {
            if (eq != std::string::npos) usage_error(strprintf("%s takes no value", flag->name));
            **on = true;
            continue;
        }
        std::string value;
        if (eq != std::string::npos) {
            value = arg.substr(eq + 1);
        } else {
            if (i + 1 >= argc) usage_error(strprintf("%s needs a value (%s)", flag->name, flag->value_name));
            value = argv[++i];
        }
        std::visit(Store{flag->name, value}, flag->target);
    }
}

std::string usage_text(const char *program, const char *summary, const std::vector<Flag> &flags) {
    std::string text = strprintf("usage: %s [flags]\n%s\n\nflags:\n", program, summary);
    for (const Flag &f : flags) {
        const bool is_switch = std::holds_alternative<bool *>(f.target);
        const std::string left = is_switch ? f.name : strprintf("%s %s", f.name, f.value_name);
        text += strprintf("  %-20s %s\n", left.c_str(), f.help);
    }
    return text;
}

std::vector<Flag> train_flags(TrainOptions *o) {
    return {
        {"--epochs", &o->epochs, "N", "epochs to train (default: the spec's)"},
        {"--lr", &o->lr, "RATE", "learning rate (default: the spec's)"},
        {"--seed", &o->seed, "N", "seed of the initialisation and the shuffle (default: the spec's)"},
        {"--max-steps", &o->max_steps, "N", "stop after N training steps in all, then evaluate"},
        {"--log-every", &o->log_every, "N", "steps between plain progress lines and --log records (50)"},
        {"--no-shuffle", &o->no_shuffle, "", "train in file order"},
        {"--sync-bn", &o->sync_bn, "", "under mpirun: batch norm over every rank's images together (default: each rank's own)"},
        {"--eval-only", &o->eval_only, "", "evaluate on the test split and stop"},
        {"--data", &o->data, "DIR", "IDX files, raw or .gz (/usr/share/datasets/fashion-mnist)"},
        {"--save", &o->save, "FILE", "write a safetensors checkpoint after every epoch and at the end"},
        {"--load", &o->load, "FILE", "start from the weights of a checkpoint"},
        {"--resume", &o->resume, "FILE", "continue the run a checkpoint (and its optimizer file) stopped"},
        {"--log", &o->log, "FILE", "append JSON lines: one per epoch and one every --log-every steps"},
        {"--schedule", &o->schedule, "NAME|FILE",
         "pipeline schedules: a variant built in (manual, Li2018, ...) or a best-of file of NAME_pipelines_bench"},
        {"--help", &o->help, "", "print this text"},
    };
}

TrainOptions parse_train_args(int argc, const char *const *argv) {
    TrainOptions o;
    parse_flags(argc, argv, train_flags(&o));
    if (o.epochs && *o.epochs == 0) usage_error("--epochs: must be at least 1");
    if (o.lr && *o.lr <= 0) usage_error("--lr: must be positive");
    if (o.log_every && *o.log_every == 0) usage_error("--log-every: must be at least 1");
    if (!o.load.empty() && !o.resume.empty()) usage_error("--load and --resume exclude each other");
    if (o.eval_only && !o.save.empty()) usage_error("--eval-only trains nothing to --save");
    return o;
}

}  // namespace hlnet

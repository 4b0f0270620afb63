// NAME_bench: times this build's whole training step (forward + backward +
// update) on real batches; prints the median of each phase over --steps
// steps after --warmup untimed ones, and images/s of the median step. Under
// mpirun, the data-parallel step of every rank together (rank 0 prints),
// with the time spent communicating.
// A benchmark, never a pass/fail test.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "cli.h"
#include "error.h"
#include "fma_peak.h"
#include "idx.h"
#include "scratch_pool.h"
#include "trainer.h"

namespace {

using Clock = std::chrono::steady_clock;

// What the process asked of the system: minor page faults and system CPU time
// (getrusage), and the scratch pool's allocations from the system.
struct Usage {
    int64_t page_faults = 0, allocations = 0;
    double system_ms = 0;
    static Usage now() {
        rusage r{};
        getrusage(RUSAGE_SELF, &r);
        return {r.ru_minflt + r.ru_majflt, hlnet::scratch_pool_stats().system_allocations,
                r.ru_stime.tv_sec * 1e3 + r.ru_stime.tv_usec / 1e3};
    }
    Usage operator-(const Usage &o) const {
        return {page_faults - o.page_faults, allocations - o.allocations, system_ms - o.system_ms};
    }
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run_bench(int64_t steps, int64_t warmup, const std::string &data, bool sync_bn, const hlnet::World &world) {
    hlnet::install_halide_error_handler();
    hlnet::install_scratch_pool();
    hlnet::Model model;
    const hlnet::ModelInfo &info = model.info;
    if (info.ranks != world.size())
        hlnet::fail("this benchmark is built for %d rank(s) (HLNET_RANKS) but runs as %d", info.ranks, world.size());
    model.initialize(info.seed);
    hlnet::Split train = hlnet::load_split(data, "train", info.classes);
    hlnet::BatchInput input(train, info.batch);
    hlnet::TrainingStep training(model, world, sync_bn);
    const int global_batch = info.batch * world.size();

    // Phase times in ms, one row per timed step. The device is synchronised
    // inside each timed region, so a GPU phase is timed to its end.
    enum { kForward, kBackward, kUpdate, kPhases };
    std::vector<double> ms[kPhases];
    std::vector<double> step_ms, comm_ms;
    for (auto &v : ms) v.reserve(size_t(steps));
    step_ms.reserve(size_t(steps));
    auto sync_and_lap = [&](Clock::time_point *t) {
        model.params.device_sync();
        const auto now = Clock::now();
        const double elapsed = std::chrono::duration<double, std::milli>(now - *t).count();
        *t = now;
        return elapsed;
    };

    Usage timed_start = Usage::now();
    for (int64_t s = 0; s < warmup + steps; s++) {
        const int first = world.rank() * info.batch;  // this rank's slice of the global batch
        for (int i = 0; i < info.batch; i++)
            input.indices(i) = int32_t((s * global_batch + first + i) % train.count());
        input.indices.set_host_dirty();
        const double comm_start = world.communication_seconds();
        auto t = Clock::now();
        const auto step_start = t;
        training.forward(input, s);
        const double f = sync_and_lap(&t);
        training.backward(s);
        const double b = sync_and_lap(&t);
        training.update(info.lr, info.momentum, info.weight_decay, s);
        const double u = sync_and_lap(&t);
        if (s + 1 == warmup) timed_start = Usage::now();  // the timed steps' system work, after the warm-up
        if (s < warmup) continue;
        ms[kForward].push_back(f);
        ms[kBackward].push_back(b);
        ms[kUpdate].push_back(u);
        step_ms.push_back(std::chrono::duration<double, std::milli>(t - step_start).count());
        comm_ms.push_back(1e3 * (world.communication_seconds() - comm_start));
    }
    if (!world.is_root()) return 0;

    const double step = median(step_ms);
#if defined(HLNET_TARGET_HOST)
    const char *threads_env = std::getenv("HL_NUM_THREADS");
    std::printf("%s\n", machine_line(threads_env ? std::atoi(threads_env) : int(std::thread::hardware_concurrency()))
                             .c_str());
#endif
    std::printf("%s training step, batch %d%s, input %dx%dx%d: median of %lld steps after %lld warm-up\n",
                info.name, global_batch,
                world.size() > 1 ? hlnet::strprintf(" (%d ranks x %d)", world.size(), info.batch).c_str() : "",
                info.channels, info.height, info.width, (long long)steps, (long long)warmup);
    std::printf("  forward   %10.2f ms\n", median(ms[kForward]));
    std::printf("  backward  %10.2f ms\n", median(ms[kBackward]));
    std::printf("  update    %10.2f ms\n", median(ms[kUpdate]));
    std::printf("  step      %10.2f ms  %10.1f images/s\n", step, global_batch * 1000.0 / step);
    if (world.size() > 1) {
        const double comm = median(comm_ms);
        std::printf("  communicating %6.2f ms of the step on rank 0 (%.1f%%): inside MPI calls, gradient buckets "
                    "of %d\n", comm, 100 * comm / step, training.buckets());
    }
    const Usage used = Usage::now() - timed_start;
    std::printf("  per step: %.0f page faults, %.1f ms system time", double(used.page_faults) / steps,
                used.system_ms / steps);
    const hlnet::ScratchPoolStats pool = hlnet::scratch_pool_stats();
    if (pool.system_allocations + pool.reuses > 0)
        std::printf("; scratch pool: %.1f new blocks per step, %.0f MiB held\n", double(used.allocations) / steps,
                    pool.bytes_held / 1048576.0);
    else
        std::printf("; scratch pool off (HLNET_SCRATCH_POOL=0) or unused (GPU builds)\n");
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    const char *summary = "Times the whole training step of this build's model (forward, backward, update).";
    std::optional<int64_t> steps, warmup;
    std::string data = "/usr/share/datasets/fashion-mnist";
    bool help = false, sync_bn = false;
    const std::vector<hlnet::Flag> flags = {
        {"--steps", &steps, "N", "timed steps (20)"},
        {"--warmup", &warmup, "N", "untimed steps first (3)"},
        {"--data", &data, "DIR", "IDX files the batches come from (/usr/share/datasets/fashion-mnist)"},
        {"--sync-bn", &sync_bn, "", "under mpirun: batch norm over the global batch (the trainer's --sync-bn)"},
        {"--help", &help, "", "print this text"},
    };
    try {
        hlnet::parse_flags(argc, argv, flags);
        if (steps && *steps == 0) throw hlnet::UsageError("--steps: must be at least 1");
    } catch (const hlnet::UsageError &e) {
        std::fprintf(stderr, "%s: %s\nusage: %s [flags] (--help lists them)\n", argv[0], e.what(), argv[0]);
        return 2;
    }
    if (help) {
        std::printf("%s", hlnet::usage_text(argv[0], summary, flags).c_str());
        return 0;
    }
    std::unique_ptr<hlnet::World> world;
    try {
        world = std::make_unique<hlnet::World>();
        return run_bench(steps.value_or(20), warmup.value_or(3), data, sync_bn, *world);
    } catch (const std::exception &e) {
        if (world) world->abort(e.what());
        std::fprintf(stderr, "hlnet: %s\n", e.what());
        return 1;
    }
}

// ops_bench: times every convolution pipeline of resnet18 (96x96 input) at
// batch 256 and 32, forward, backward-data and backward-weights, and prints
// median ms, GFLOP/s (2*N*CO*HO*WO*CI*K*K, every tap counted, padding too) and
// the share of the FMA peak measured here, on as many threads as Halide uses.
// The development machines are shared (other builds steal cycles), so each
// row also gives GFLOP per second of process CPU time, compared with the FMA
// peak per second of CPU time of one core: a share that other processes do
// not distort (Halide's idle workers spinning count against the pipeline).
//
// Usage: ops_bench [repetitions (default 7)] [filter substring]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "HalideBuffer.h"
#include "bench_cases.h"
#include "fma_peak.h"

using Halide::Runtime::Buffer;

namespace {

Buffer<float> random_buffer(std::vector<int> shape, uint32_t seed) {
    Buffer<float> b(shape);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    b.for_each_value([&](float &v) { v = dist(rng); });
    b.set_host_dirty();
    return b;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double cpu_seconds() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

struct Timing {
    double ms, cpu_ms;  // medians: wall time, process CPU time
};

Timing time_call(int reps, const std::function<int()> &call) {
    if (call() != 0) {
        std::fprintf(stderr, "pipeline failed\n");
        std::exit(1);
    }
    std::vector<double> ms, cpu_ms;
    for (int i = 0; i < reps; i++) {
        const double c0 = cpu_seconds();
        auto t0 = std::chrono::steady_clock::now();
        call();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        cpu_ms.push_back(1e3 * (cpu_seconds() - c0));
    }
    return {median(ms), median(cpu_ms)};
}

}  // namespace

int main(int argc, char **argv) {
    const int reps = argc > 1 ? std::atoi(argv[1]) : 7;
    const char *filter = argc > 2 ? argv[2] : "";
    const char *env = std::getenv("HL_NUM_THREADS");
    const int threads = env ? std::atoi(env) : int(std::thread::hardware_concurrency());
    const FmaPeak peak = measure_fma_peak(threads, 20'000'000);
    std::printf("FMA peak (%s): %.1f GFLOP/s on %d threads (wall), %.1f GFLOP per CPU-second of one core\n"
                "Each row: medians of %d runs. GF/s: per second of wall time; GF/cpu-s: per second of\n"
                "process CPU time; %%peak: GF/cpu-s over the per-core peak.\n\n",
                peak.isa, peak.gflops, threads, peak.gflops_per_core, reps);
    std::printf("%-58s %9s %9s %9s %7s\n", "pipeline", "ms", "GF/s", "GF/cpu-s", "%peak");

    auto report = [&](const char *name, double flops, const std::function<int()> &call) {
        if (!std::strstr(name, filter)) return;
        const Timing t = time_call(reps, call);
        const double per_cpu_second = flops / t.cpu_ms / 1e6;
        std::printf("%-58s %9.2f %9.1f %9.1f %6.1f%%\n", name, t.ms, flops / t.ms / 1e6, per_cpu_second,
                    100 * per_cpu_second / peak.gflops_per_core);
        std::fflush(stdout);
    };

#define HLNET_BENCH_CONV(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P)             \
    {                                                                                                  \
        const int HO = (H + 2 * P - K) / S + 1, WO = (W + 2 * P - K) / S + 1;                         \
        const double flops = 2.0 * N * CO * HO * WO * double(CI) * K * K;                              \
        if (std::strstr(#forward, filter) || std::strstr(#backward_data, filter) ||                     \
            std::strstr(#backward_weights, filter)) {                                                  \
            auto in = random_buffer({W, H, CI, N}, 1), w = random_buffer({K, K, CI, CO}, 2);            \
            auto b = random_buffer({CO}, 3), d_out = random_buffer({WO, HO, CO, N}, 4);                 \
            Buffer<float> out(WO, HO, CO, N), d_in(W, H, CI, N), d_w(K, K, CI, CO), d_b(CO);            \
            report(#forward, flops, [&] { return forward(in, w, b, out); });                           \
            report(#backward_data, flops, [&] { return backward_data(d_out, w, d_in); });              \
            report(#backward_weights, flops, [&] { return backward_weights(d_out, in, d_w, d_b); });   \
        }                                                                                              \
    }
    HLNET_CONV2D_CASES(HLNET_BENCH_CONV)
    return 0;
}

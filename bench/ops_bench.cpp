// ops_bench: times every convolution pipeline of resnet18 (96x96 input) at
// batch 256 and 32, forward, backward-data and backward-weights, and prints
// median ms, GFLOP/s (2*N*CO*HO*WO*CI*K*K, every tap counted, padding too) and
// the share of the FMA peak measured here, on as many threads as Halide uses.
// The development machines are shared, so the peak is sampled again right
// after every timed call and each row is compared with the median of its own
// samples: the share stays meaningful when other work steals cycles.
//
// Usage: ops_bench [repetitions (default 7)] [filter substring]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

struct Timing {
    double ms, peak_gflops;  // medians
};

// Median time of `call` and median FMA peak sampled right after each call.
Timing time_against_peak(int reps, int threads, const std::function<int()> &call) {
    if (call() != 0) {
        std::fprintf(stderr, "pipeline failed\n");
        std::exit(1);
    }
    std::vector<double> ms, peak;
    for (int i = 0; i < reps; i++) {
        auto t0 = std::chrono::steady_clock::now();
        call();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        peak.push_back(measure_fma_peak(threads).gflops);
    }
    return {median(ms), median(peak)};
}

}  // namespace

int main(int argc, char **argv) {
    const int reps = argc > 1 ? std::atoi(argv[1]) : 7;
    const char *filter = argc > 2 ? argv[2] : "";
    const char *env = std::getenv("HL_NUM_THREADS");
    const int threads = env ? std::atoi(env) : int(std::thread::hardware_concurrency());
    const FmaPeak peak = measure_fma_peak(threads, 20'000'000);
    std::printf("FMA peak (%s, %d threads): %.1f GFLOP/s at start; each row: median of %d runs, and the\n"
                "median of the peak sampled after each run\n\n",
                peak.isa, threads, peak.gflops, reps);
    std::printf("%-58s %9s %9s %9s %7s\n", "pipeline", "ms", "GFLOP/s", "peak", "% peak");

    auto report = [&](const char *name, double flops, const std::function<int()> &call) {
        if (!std::strstr(name, filter)) return;
        const Timing t = time_against_peak(reps, threads, call);
        const double gflops = flops / t.ms / 1e6;
        std::printf("%-58s %9.2f %9.1f %9.1f %6.1f%%\n", name, t.ms, gflops, t.peak_gflops,
                    100 * gflops / t.peak_gflops);
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

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
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "HalideBuffer.h"
#include "bench_cases.h"
#include "fma_peak.h"
#include "scratch_pool.h"

using Halide::Runtime::Buffer;

namespace {

// Random values in [-1, 1); an (x, y, c, n) activation laid out NHWC where `channels_last`.
Buffer<float> random_buffer(std::vector<int> shape, uint32_t seed, bool channels_last = false) {
    Buffer<float> b = channels_last ? Buffer<float>(shape, {2, 0, 1, 3}) : Buffer<float>(shape);
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
    double ms, cpu_ms;  // medians: wall time, process CPU time
};

Timing time_call(int reps, const std::function<int()> &call) {
    if (call() != 0) {
        std::fprintf(stderr, "pipeline failed\n");
        std::exit(1);
    }
    std::vector<double> ms, cpu_ms;
    for (int i = 0; i < reps; i++) {
        const double c0 = process_cpu_seconds();
        auto t0 = std::chrono::steady_clock::now();
        call();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        cpu_ms.push_back(1e3 * (process_cpu_seconds() - c0));
    }
    return {median(ms), median(cpu_ms)};
}

using ReportBytes = std::function<void(const char *, double, const std::function<int()> &)>;

// Batch norm calls differ by flag (docs/INTERNALS.md): the optional arguments
// are passed only when they exist.
template <bool Relu, bool Residual, typename Train, typename Backward>
void bench_batchnorm(const char *train_name, const char *backward_name, Train train, Backward backward, int N, int C,
                     int H, int W, const ReportBytes &report_bytes) {
    const std::vector<int> shape = {W, H, C, N}, vec = {C};
    const double plane_bytes = 4.0 * N * C * H * W;
    auto in = random_buffer(shape, 5), res = random_buffer(shape, 6), d_out = random_buffer(shape, 7);
    auto gamma = random_buffer(vec, 8), beta = random_buffer(vec, 9), rm = random_buffer(vec, 10);
    auto rv = random_buffer(vec, 11);
    rv.for_each_value([](float &v) { v = 1.0f + v * v; });
    Buffer<float> out(shape), mean(C), inv_std(C), d_in(shape), d_res(shape), d_gamma(C), d_beta(C);
    report_bytes(train_name, (2 + Residual) * plane_bytes, [&] {
        if constexpr (Residual) return train(in, gamma, beta, rm, rv, res, out, mean, inv_std, rm, rv);
        else return train(in, gamma, beta, rm, rv, out, mean, inv_std, rm, rv);
    });
    report_bytes(backward_name, (3 + (Relu && Residual) + Residual) * plane_bytes, [&] {
        if constexpr (Relu && Residual) return backward(in, out, d_out, gamma, mean, inv_std, d_in, d_gamma, d_beta, d_res);
        else if constexpr (Relu) return backward(in, d_out, gamma, beta, mean, inv_std, d_in, d_gamma, d_beta);
        else if constexpr (Residual) return backward(in, d_out, gamma, mean, inv_std, d_in, d_gamma, d_beta, d_res);
        else return backward(in, d_out, gamma, mean, inv_std, d_in, d_gamma, d_beta);
    });
}

}  // namespace

int main(int argc, char **argv) {
    // Intermediates from the trainer's pool (runtime/scratch_pool.h): the
    // step's conditions, and a row's time does not depend on the rows before
    // it (glibc's mmap threshold moves with the blocks freed so far).
    hlnet::install_scratch_pool();
    const int reps = argc > 1 ? std::atoi(argv[1]) : 7;
    const char *filter = argc > 2 ? argv[2] : "";
    const char *env = std::getenv("HL_NUM_THREADS");
    const int threads = env ? std::atoi(env) : int(std::thread::hardware_concurrency());
    const FmaPeak peak = measure_fma_peak(threads, 20'000'000);
    std::printf("FMA peak (%s): %.1f GFLOP/s on %d threads (wall), %.1f GFLOP per CPU-second of one core\n"
                "Each row: medians of %d runs. GF/s: per second of wall time; GF/cpu-s: per second of\n"
                "process CPU time; %%peak: GF/cpu-s over the per-core peak. FLOPs are the direct algorithm's:\n"
                "the Winograd pipelines (3x3 stride 1, auto) do fewer and read above 100%%; the rows\n"
                "ending in _algorithmdirect are the same convolutions forced direct, those in _layoutnhwc the\n"
                "same with NHWC activations.\n\n",
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

#define HLNET_BENCH_CONV_LAYOUT(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P, nhwc) \
    {                                                                                                  \
        const int HO = (H + 2 * P - K) / S + 1, WO = (W + 2 * P - K) / S + 1;                         \
        const double flops = 2.0 * N * CO * HO * WO * double(CI) * K * K;                              \
        if (std::strstr(#forward, filter) || std::strstr(#backward_data, filter) ||                     \
            std::strstr(#backward_weights, filter)) {                                                  \
            auto in = random_buffer({W, H, CI, N}, 1, nhwc), w = random_buffer({K, K, CI, CO}, 2);      \
            auto b = random_buffer({CO}, 3), d_out = random_buffer({WO, HO, CO, N}, 4, nhwc);           \
            auto out = random_buffer({WO, HO, CO, N}, 5, nhwc), d_in = random_buffer({W, H, CI, N}, 6, nhwc); \
            Buffer<float> d_w(K, K, CI, CO), d_b(CO);                                                  \
            report(#forward, flops, [&] { return forward(in, w, b, out); });                           \
            report(#backward_data, flops, [&] { return backward_data(d_out, w, d_in); });              \
            report(#backward_weights, flops, [&] { return backward_weights(d_out, in, d_w, d_b); });   \
        }                                                                                              \
    }
#define HLNET_BENCH_CONV(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P) \
    HLNET_BENCH_CONV_LAYOUT(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P, false)
    HLNET_CONV2D_CASES(HLNET_BENCH_CONV)
#define HLNET_BENCH_CONV_DIRECT(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P, algorithm) \
    HLNET_BENCH_CONV(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P)
    HLNET_CONV2D_DIRECT_CASES(HLNET_BENCH_CONV_DIRECT)
#define HLNET_BENCH_CONV_NHWC(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P, layout) \
    HLNET_BENCH_CONV_LAYOUT(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P, true)
    HLNET_CONV2D_NHWC_CASES(HLNET_BENCH_CONV_NHWC)

    // Memory-bound pipelines: GB/s of the fewest bytes they must move (each
    // input read once, each output written once).
    std::printf("\n%-58s %9s %9s\n", "pipeline", "ms", "GB/s");
    ReportBytes report_bytes = [&](const char *name, double bytes, const std::function<int()> &call) {
        if (!std::strstr(name, filter)) return;
        const Timing t = time_call(reps, call);
        std::printf("%-58s %9.2f %9.1f\n", name, t.ms, bytes / t.ms / 1e6);
        std::fflush(stdout);
    };
#define HLNET_BENCH_BN(train, backward, N, C, H, W, RELU, RESIDUAL) \
    bench_batchnorm<RELU, RESIDUAL>(#train, #backward, train, backward, N, C, H, W, report_bytes);
    HLNET_BATCHNORM_CASES(HLNET_BENCH_BN)
#define HLNET_BENCH_MAXPOOL(forward, backward, N, C, H, W, K, S, P)                                            \
    {                                                                                                         \
        const int HO = (H + 2 * P - K) / S + 1, WO = (W + 2 * P - K) / S + 1;                                \
        auto in = random_buffer({W, H, C, N}, 12), d_out = random_buffer({WO, HO, C, N}, 13);                \
        Buffer<float> out(WO, HO, C, N), d_in(W, H, C, N);                                                    \
        Buffer<int32_t> argmax(WO, HO, C, N);                                                                 \
        const double in_bytes = 4.0 * N * C * H * W, out_bytes = 4.0 * N * C * HO * WO;                      \
        report_bytes(#forward, in_bytes + 2 * out_bytes, [&] { return forward(in, out, argmax); });          \
        report_bytes(#backward, in_bytes + 2 * out_bytes, [&] { return backward(d_out, argmax, d_in); });    \
    }
    HLNET_MAXPOOL_CASES(HLNET_BENCH_MAXPOOL)
#define HLNET_BENCH_ADD(add, N, C, H, W)                                                                       \
    {                                                                                                         \
        auto a = random_buffer({W, H, C, N}, 14), b = random_buffer({W, H, C, N}, 15);                       \
        Buffer<float> out(W, H, C, N);                                                                        \
        report_bytes(#add, 12.0 * N * C * H * W, [&] { return add(a, b, out); });                            \
    }
    HLNET_ADD_CASES(HLNET_BENCH_ADD)
#define HLNET_BENCH_SGD(sgd, SIZE)                                                                             \
    {                                                                                                         \
        auto p = random_buffer({SIZE}, 16), g = random_buffer({SIZE}, 17), v = random_buffer({SIZE}, 18);    \
        report_bytes(#sgd, 20.0 * SIZE, [&] { return sgd(p, g, v, 0.05f, 0.9f, 0.0f, p, v); });              \
    }
    HLNET_SGD_CASES(HLNET_BENCH_SGD)
    return 0;
}

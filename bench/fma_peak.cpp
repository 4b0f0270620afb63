// Measured FMA peak of this machine: every hardware thread runs independent
// chains of vector FMAs in the widest ISA available. The chains must be enough
// to hide the FMA latency (4 cycles x 2 FMA ports: 8 or more) and few enough to
// stay in registers with the two constants: 24 of AVX-512's 32 zmm and NEON's
// 32 q registers, 10 of AVX2's 16 ymm (24 ymm chains spilled, halving the
// figure on an AVX2-only EPYC: 86 GFLOP/s for two cores where 10 chains
// measure 175). This is the ceiling the conv pipelines are compared against.
#include "fma_peak.h"

#include <cstdlib>
#include <ctime>
#include <string>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <chrono>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace {

#if defined(__x86_64__)
template <int Chains>
__attribute__((target("avx512f"))) float run_avx512(float seed, long iterations) {
    __m512 acc[Chains];
    for (int i = 0; i < Chains; i++) acc[i] = _mm512_set1_ps(seed + i);
    const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 32  // keeps every chain in a register
        for (int i = 0; i < Chains; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < Chains; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

template <int Chains>
__attribute__((target("avx2,fma"))) float run_avx2(float seed, long iterations) {
    __m256 acc[Chains];
    for (int i = 0; i < Chains; i++) acc[i] = _mm256_set1_ps(seed + i);
    const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 32
        for (int i = 0; i < Chains; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    float out[8];
    __m256 s = acc[0];
    for (int i = 1; i < Chains; i++) s = _mm256_add_ps(s, acc[i]);
    _mm256_storeu_ps(out, s);
    return out[0];
}
#elif defined(__aarch64__)
template <int Chains>
float run_neon(float seed, long iterations) {
    float32x4_t acc[Chains];
    for (int i = 0; i < Chains; i++) acc[i] = vdupq_n_f32(seed + i);
    const float32x4_t a = vdupq_n_f32(0.9999999f), b = vdupq_n_f32(1e-7f);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 32
        for (int i = 0; i < Chains; i++) acc[i] = vfmaq_f32(b, acc[i], a);
    }
    float32x4_t s = acc[0];
    for (int i = 1; i < Chains; i++) s = vaddq_f32(s, acc[i]);
    return vaddvq_f32(s);
}
#endif

// The ISA, its lanes and chains, and one thread's run.
struct Kernel {
    const char *isa;
    int lanes, chains;
    float (*run)(float, long);
};

Kernel widest_kernel() {
#if defined(__x86_64__)
    // The AVX2 peak on an AVX-512 machine, for pipelines built for AVX2: an
    // AVX2 build's benches (HLNET_FMA_PEAK_ISA, from CMake), or
    // HLNET_FMA_ISA=avx2 at run time.
    const char *isa = std::getenv("HLNET_FMA_ISA");
#ifdef HLNET_FMA_PEAK_ISA
    if (!isa) isa = HLNET_FMA_PEAK_ISA;
#endif
    const bool avx2_only = isa && std::string(isa) == "avx2";
    if (__builtin_cpu_supports("avx512f") && !avx2_only) return {"AVX-512", 16, 24, run_avx512<24>};
    return {"AVX2", 8, 10, run_avx2<10>};
#elif defined(__aarch64__)
    return {"NEON", 4, 24, run_neon<24>};
#else
#error "fma_peak: x86-64 or AArch64 only"
#endif
}

}  // namespace

double process_cpu_seconds() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

FmaPeak measure_fma_peak(int threads, long iterations) {
    const Kernel k = widest_kernel();
    std::atomic<float> sink{0};
    const double cpu0 = process_cpu_seconds();
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++) pool.emplace_back([&, t] { sink = sink + k.run(float(t), iterations); });
    for (auto &th : pool) th.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double cpu_seconds = process_cpu_seconds() - cpu0;
    const double flops = 2.0 * k.lanes * k.chains * double(iterations) * threads;
    return {flops / seconds / 1e9, flops / cpu_seconds / 1e9, k.isa};
}

namespace {

// The value of the first /proc/cpuinfo line that starts with one of `keys`.
std::string cpuinfo_field(std::initializer_list<const char *> keys) {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line))
        for (const char *key : keys)
            if (line.rfind(key, 0) == 0 && line.find(':') != std::string::npos) return line.substr(line.find(':') + 2);
    return "";
}

}  // namespace

std::string cpu_model() {
    std::string model = cpuinfo_field({"model name", "Model", "CPU part"});
    return model.empty() ? "unknown CPU" : model;
}

std::string vector_extensions() {
    std::istringstream flags(cpuinfo_field({"flags", "Features"}));
    std::string flag, out;
    for (std::string f; flags >> f;) {
        const bool vector = f == "avx" || f == "avx2" || f == "fma" || f.rfind("avx512", 0) == 0 || f == "asimd" ||
                            f == "sve" || f == "sve2" || f == "neon";
        if (vector) out += (out.empty() ? "" : " ") + f;
    }
    return out.empty() ? "none listed" : out;
}

std::string machine_line(int threads) {
    const FmaPeak peak = measure_fma_peak(threads, 20'000'000);
    char text[512];
    std::snprintf(text, sizeof text, "machine: %s; vector extensions: %s; FMA peak %.1f GFLOP/s on %d threads (%s), "
                  "%.1f per CPU-second of one core", cpu_model().c_str(), vector_extensions().c_str(), peak.gflops,
                  threads, peak.isa, peak.gflops_per_core);
    return text;
}

// Measured FMA peak of this machine: every hardware thread runs independent
// chains of vector FMAs (enough chains to hide the FMA latency), widest ISA
// available. This is the ceiling the conv pipelines are compared against.
#include "fma_peak.h"

#include <ctime>

#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 24;

__attribute__((target("avx512f"))) float run_avx512(float seed, long iterations) {
    __m512 acc[kChains];
    for (int i = 0; i < kChains; i++) acc[i] = _mm512_set1_ps(seed + i);
    const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 24  // keeps every chain in a register
        for (int i = 0; i < kChains; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < kChains; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) float run_avx2(float seed, long iterations) {
    __m256 acc[kChains];
    for (int i = 0; i < kChains; i++) acc[i] = _mm256_set1_ps(seed + i);
    const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 24  // keeps every chain in a register
        for (int i = 0; i < kChains; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    float out[8];
    __m256 s = acc[0];
    for (int i = 1; i < kChains; i++) s = _mm256_add_ps(s, acc[i]);
    _mm256_storeu_ps(out, s);
    return out[0];
}

}  // namespace

double process_cpu_seconds() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

FmaPeak measure_fma_peak(int threads, long iterations) {
    const bool avx512 = __builtin_cpu_supports("avx512f");
    const int lanes = avx512 ? 16 : 8;
    std::atomic<float> sink{0};
    const double cpu0 = process_cpu_seconds();
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++) {
        pool.emplace_back([&, t] { sink = sink + (avx512 ? run_avx512(float(t), iterations) : run_avx2(float(t), iterations)); });
    }
    for (auto &th : pool) th.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double cpu_seconds = process_cpu_seconds() - cpu0;
    const double flops = 2.0 * lanes * kChains * double(iterations) * threads;
    return {flops / seconds / 1e9, flops / cpu_seconds / 1e9, avx512 ? "AVX-512" : "AVX2"};
}

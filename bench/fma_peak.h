#pragma once

#include <string>

struct FmaPeak {
    double gflops;           // all threads together, per second of wall time
    double gflops_per_core;  // per second of CPU time (process CPU clock)
    const char *isa;         // the widest vector ISA used
};

// Runs `iterations` steps of independent FMA chains (as many as the ISA's
// register file holds: fma_peak.cpp) on each of `threads`
// threads at once and returns the rate reached (2M iterations: ~10 ms at 170
// GFLOP/s per core).
FmaPeak measure_fma_peak(int threads, long iterations = 2'000'000);

// The process CPU clock (all threads), in seconds: what the benches compare
// against the per-core peak.
double process_cpu_seconds();

// The CPU's model name (/proc/cpuinfo) and its vector extensions as the kernel
// lists them (AVX2, FMA, the AVX-512 subsets; NEON/ASIMD, SVE on ARM).
std::string cpu_model();
std::string vector_extensions();

// One line for every recorded figure: model, extensions and the FMA peak
// measured now on `threads` threads (wall and per CPU-second of one core).
std::string machine_line(int threads);

// The results of NAME_pipelines_bench and the four ways it writes them: a
// text table, CSV (one row per pipeline and schedule), JSON, and an SVG bar
// chart to open in a browser.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace hlnet_bench {

// One schedule variant of one pipeline (or of the whole step).
struct Measurement {
    bool valid = false;     // computed the manual variant's answer; timed only then
    std::string problem;    // why not valid: "error -3", "max rel. error 0.2"
    double error = 0;       // float outputs: max |x - manual| / max |manual|; int outputs: share of differing elements
    double ms = 0;          // median wall time per call (the baseline: GPU time, CUDA events)
    double cpu_ms = 0;      // median process CPU time per call (the baseline: not measured, 0)
};

struct PipelineRow {
    std::string library, generator, shape;  // shape: the library's parameters, "n32 ci1 co8 ..."
    int calls_per_step = 0;
    double flops = 0;                        // per call; 0: memory-bound
    double bytes = 0;                        // every argument read or written once: the least traffic
    std::vector<Measurement> variants;       // indexed as Report::schedules
    int best = -1;                           // fastest valid variant
    // The vendor library's time for the same shape (Report::baseline): timed,
    // not checked against manual, never a variant (not in best, best-of or the step).
    // Empty where it has no counterpart of the pipeline.
    std::optional<Measurement> baseline;
};

struct StepRow {
    std::string schedule;  // a variant name, or "best-of"
    double ms = 0;         // median training step (forward, backward, update)
    double predicted_ms = 0;  // sum over the table of calls_per_step x ms
};

struct Report {
    std::string model, machine, date, target;
    int batch = 0, threads = 0, reps = 0;
    bool flushed = true;              // caches flushed before each timed call (else back to back)
    double tolerance = 0;
    double peak_gflops = 0;           // all threads, wall time; 0: unknown (GPU builds)
    double peak_gflops_per_core = 0;  // per CPU-second of one core
    std::vector<std::string> schedules;
    std::string baseline;       // "cuDNN" (cuda build, bench/cudnn_baseline.h); empty: no baseline column
    std::string baseline_note;  // what the baseline column measures, printed under the table's header
    std::vector<PipelineRow> pipelines;
    std::vector<StepRow> steps;
};

// The timing rule every measurement follows: after one warm-up call that took
// first_seconds, `reps` timed calls, fewer (but at least 3) where they would
// take more than max_seconds; the median is reported.
int timed_calls(int reps, double first_seconds, double max_seconds);
double median(std::vector<double> v);

void print_table(const Report &report);
void write_csv(const Report &report, const std::string &path);
void write_json(const Report &report, const std::string &path);
void write_svg(const Report &report, const std::string &path);

}  // namespace hlnet_bench

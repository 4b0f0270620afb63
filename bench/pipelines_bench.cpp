// NAME_pipelines_bench: every pipeline of this build's model in every schedule
// variant built in (cmake -DHLNET_SCHEDULES), side by side.
//
// For each pipeline, on fresh random inputs: the manual variant computes the
// reference; every variant must match it (float outputs within --tolerance of
// max(max |reference|, 1), integer outputs exactly) before it is timed. Timing: one
// warm-up call, then the median of --reps calls (fewer, but at least 3, when
// they would take more than --max-seconds), the device synchronised
// inside the timed region and the caches flushed before each call. Then the
// whole training step in each variant and in the best-of mix (each pipeline in
// its fastest valid variant), which is also written as a file for the
// trainer's --schedule. In the cuda build with cuDNN (HLNET_CUDNN), a cuDNN
// column beside the variants: cuDNN's own convolution and batch norm at each
// such pipeline's shape (bench/cudnn_baseline.h), a baseline, never a variant.
// A benchmark, never a pass/fail test.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include <unistd.h>

#include "HalideBuffer.h"
#include "bench_report.h"
#include "cli.h"
#include "error.h"
#include "fma_peak.h"
#include "graph_api.h"
#include "idx.h"
#include "scratch_pool.h"
#include "tensor_view.h"
#include "trainer.h"
#if defined(HLNET_CUDNN)
#include "cudnn_baseline.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;
using Halide::Runtime::Buffer;
using hlnet_bench::Measurement;
using hlnet_bench::PipelineRow;
using hlnet_bench::Report;
using hlnet_bench::median;
using hlnet_bench::timed_calls;

struct Options {
    std::optional<int64_t> reps, steps, seed;
    std::optional<double> tolerance, peak, max_seconds;
    std::string filter, csv, json, svg, best_of, data = "/usr/share/datasets/fashion-mnist";
    bool warm = false;  // no cache flush between calls
    bool help = false;
};

// Evicts every cache level between timed calls: writes a buffer much larger
// than the last-level cache (outside the timed region).
void flush_caches() {
    static std::vector<float> sweep(64 << 20 >> 2);  // 64 MiB
    static float value = 0;
    value += 1;
    std::fill(sweep.begin(), sweep.end(), value);
}

Buffer<void> make_buffer(const hlnet::PipelineArg &arg) {
    std::vector<int> extents(arg.extents, arg.extents + arg.rank);
    if (!arg.channels_last) return Buffer<void>(arg.type, extents);
    int strides[4];
    hlnet::channels_last_strides(arg.extents, strides);
    std::vector<halide_dimension_t> dims;
    for (int i = 0; i < 4; i++) dims.push_back(halide_dimension_t(0, arg.extents[i], strides[i]));
    Buffer<void> b(arg.type, nullptr, 4, dims.data());
    b.allocate();
    return b;
}

// Uniform values in [low, high); integers in [low, high - 1].
void fill_random(Buffer<void> &buffer, const hlnet::PipelineArg &arg, std::mt19937_64 &rng) {
    if (arg.type.code == halide_type_float) {
        std::uniform_real_distribution<float> dist(float(arg.low), float(arg.high));
        buffer.as<float>().for_each_value([&](float &v) { v = dist(rng); });
    } else {
        std::uniform_int_distribution<int64_t> dist(int64_t(arg.low), int64_t(arg.high) - 1);
        if (arg.type.bits == 8) buffer.as<uint8_t>().for_each_value([&](uint8_t &v) { v = uint8_t(dist(rng)); });
        else buffer.as<int32_t>().for_each_value([&](int32_t &v) { v = int32_t(dist(rng)); });
    }
    buffer.set_host_dirty();
}

// Float outputs: max |x - ref| / max(max |ref|, 1) (normwise: an
// autoscheduler may sum in another order; and at least the inputs' scale, 1,
// because an output that is a cancelling sum, such as the mean of inputs drawn
// around 0, is near 0 whatever its rounding); integer outputs: the share of
// elements that differ.
double output_error(Buffer<void> &x, Buffer<void> &ref) {
    x.copy_to_host();
    ref.copy_to_host();
    const size_t n = x.number_of_elements();
    if (x.type().code == halide_type_float) {
        const float *a = x.as<float>().data(), *b = ref.as<float>().data();
        double diff = 0, scale = 1;
        for (size_t i = 0; i < n; i++) {
            if (!std::isfinite(a[i])) return INFINITY;
            diff = std::max(diff, double(std::fabs(a[i] - b[i])));
            scale = std::max(scale, double(std::fabs(b[i])));
        }
        return diff / scale;
    }
    const int32_t *a = x.as<int32_t>().data(), *b = ref.as<int32_t>().data();
    size_t differing = 0;
    for (size_t i = 0; i < n; i++) differing += a[i] != b[i];
    return double(differing) / double(n);
}

// One pipeline's buffers: the shared random inputs, and outputs per call.
struct Call {
    const hlnet::PipelineInfo &info;
    std::vector<Buffer<void>> buffers;  // in argument order

    Call(const hlnet::PipelineInfo &info, uint64_t seed) : info(info) {
        std::mt19937_64 rng(seed);
        for (int a = 0; a < info.num_args; a++) {
            buffers.push_back(make_buffer(info.args[a]));
            if (!info.args[a].output) fill_random(buffers.back(), info.args[a], rng);
        }
    }
    // Fresh output buffers, the inputs shared.
    Call with_new_outputs() const {
        Call copy = *this;
        for (int a = 0; a < info.num_args; a++)
            if (info.args[a].output) copy.buffers[a] = make_buffer(info.args[a]);
        return copy;
    }
    int run(int schedule) {
        halide_buffer_t *raw[16];
        for (size_t a = 0; a < buffers.size(); a++) raw[a] = buffers[a].raw_buffer();
        return info.run(schedule, raw);
    }
    // Waits for the device (a GPU build's pipelines return before their kernels end).
    void sync() {
        for (int a = 0; a < info.num_args; a++)
            if (info.args[a].output) buffers[a].device_sync();
    }
};

Measurement measure(Call &reference, int schedule, const Report &settings, double max_seconds) {
    Measurement m;
    Call call = schedule == 0 ? reference : reference.with_new_outputs();
    const auto start = Clock::now();
    if (int rc = call.run(schedule)) {  // also the warm-up
        m.problem = "error " + std::to_string(rc) + ": " + hlnet::last_halide_error();
        return m;
    }
    call.sync();
    const double first_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    int worst = -1;  // the argument with the largest error
    for (int a = 0; a < call.info.num_args; a++) {
        if (!call.info.args[a].output) continue;
        const double error = output_error(call.buffers[a], reference.buffers[a]);
        if (worst < 0 || !(error <= m.error)) m.error = error, worst = a;
    }
    if (!(m.error <= settings.tolerance)) {
        char text[80];
        std::snprintf(text, sizeof text, "rel. error %.2g in argument %d (docs/INTERNALS.md order, from 0)", m.error, worst);
        m.problem = text;
        return m;
    }
    const int reps = timed_calls(settings.reps, first_seconds, max_seconds);
    std::vector<double> ms, cpu_ms;
    for (int r = 0; r < reps; r++) {
        if (settings.flushed) flush_caches();
        const double cpu0 = process_cpu_seconds();
        const auto t0 = Clock::now();
        call.run(schedule);
        call.sync();
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        cpu_ms.push_back(1e3 * (process_cpu_seconds() - cpu0));
    }
    m.valid = true;
    m.ms = median(ms);
    m.cpu_ms = median(cpu_ms);
    return m;
}

// The fastest valid variant, but manual unless another is faster by more than
// the noise of single timed calls (10%): a best-of mix chosen on noise is no
// faster, and manual schedules are the ones proven on every target.
int best_variant(const std::vector<Measurement> &variants) {
    int best = variants[0].valid ? 0 : -1;
    for (int s = 1; s < int(variants.size()); s++) {
        const Measurement &m = variants[s];
        if (!m.valid) continue;
        if (best < 0 || (best == 0 ? m.ms < 0.9 * variants[0].ms : m.ms < variants[best].ms)) best = s;
    }
    return best;
}

// Median time of the whole training step (forward with batch statistics,
// backward, update) on real batches, after one untimed step.
double time_step(hlnet::Model &model, hlnet::Split &train, int steps) {
    const hlnet::ModelInfo &info = model.info;
    hlnet::BatchInput input(train, info.batch);
    model.initialize(info.seed);  // every schedule starts from the same weights
    std::vector<double> ms;
    const int warmup = 1;
    for (int s = 0; s < warmup + steps; s++) {
        for (int i = 0; i < info.batch; i++) input.indices(i) = int32_t((s * info.batch + i) % train.count());
        input.indices.set_host_dirty();
        const auto t0 = Clock::now();
        hlnet::check_pipeline(model.graph().forward(input.batch(), true, info.batch, nullptr), "forward", s);
        hlnet::check_pipeline(model.graph().backward(), "backward", s);
        hlnet::check_pipeline(model.graph().update(info.lr, info.momentum, info.weight_decay), "update", s);
        model.params.device_sync();
        if (s >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    return median(ms);
}

std::string utc_now() {
    char text[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
    return text;
}

int run(const Options &o) {
    hlnet::install_halide_error_handler();
    const hlnet::ModelInfo &info = hlnet::model_info();
    Report report;
    report.model = info.name;
    report.batch = info.batch;
    report.machine = cpu_model();
    report.date = utc_now();
    report.reps = int(o.reps.value_or(11));
    report.tolerance = o.tolerance.value_or(1e-4);
    report.flushed = !o.warm;
    const char *threads_env = std::getenv("HL_NUM_THREADS");
    report.threads = threads_env ? std::atoi(threads_env) : int(std::thread::hardware_concurrency());
#if defined(HLNET_TARGET_HOST)
    report.target = "host";
    const FmaPeak peak = measure_fma_peak(report.threads, 20'000'000);
    report.peak_gflops = peak.gflops;
    report.peak_gflops_per_core = peak.gflops_per_core;
#elif defined(HLNET_TARGET_CUDA)
    report.target = "cuda";
#else
    report.target = "opencl";
#endif
    if (o.peak) report.peak_gflops = *o.peak, report.peak_gflops_per_core = 0;
    for (int s = 0; s < hlnet::schedule_count(); s++) report.schedules.push_back(hlnet::schedule_name(s));
#if defined(HLNET_CUDNN)
    const std::unique_ptr<hlnet_bench::CudnnBaseline> cudnn = hlnet_bench::CudnnBaseline::open();
    if (cudnn) {
        report.baseline = "cuDNN", report.baseline_note = cudnn->note();
        report.machine = cudnn->device_name();
        if (!o.peak) report.peak_gflops = cudnn->fp32_peak_gflops(), report.peak_gflops_per_core = 0;
    }
#endif

    std::printf("%s: %d pipelines x %d schedules, checking then timing (median of %d calls)\n", info.name,
                hlnet::pipeline_count(), hlnet::schedule_count(), report.reps);
    const bool progress = isatty(fileno(stderr));  // the pipeline being measured; in a log, nothing
    for (int p = 0; p < hlnet::pipeline_count(); p++) {
        const hlnet::PipelineInfo &pipeline = hlnet::pipeline_info(p);
        if (!std::strstr(pipeline.library, o.filter.c_str())) continue;
        PipelineRow row;
        row.library = pipeline.library;
        row.generator = pipeline.generator;
        row.shape = row.library.substr(row.generator.size() + 1);
        std::replace(row.shape.begin(), row.shape.end(), '_', ' ');
        row.calls_per_step = pipeline.calls_per_step;
        row.flops = pipeline.flops;
        row.bytes = pipeline.bytes;
        Call reference(pipeline, uint64_t(o.seed.value_or(1)) + uint64_t(p));
        for (int s = 0; s < hlnet::schedule_count(); s++)
            row.variants.push_back(measure(reference, s, report, o.max_seconds.value_or(5)));
        row.best = best_variant(row.variants);
#if defined(HLNET_CUDNN)
        if (cudnn) row.baseline = cudnn->measure(row.generator, row.shape, report.reps, o.max_seconds.value_or(5));
#endif
        if (progress) std::fprintf(stderr, "  %-60s\r", row.library.c_str());
        report.pipelines.push_back(row);
    }
    if (progress) std::fprintf(stderr, "%-64s\r", "");

    // The best-of mix, as a file the trainer's --schedule reads.
    {
        std::ofstream best(o.best_of);
        best << "# " << info.name << ": each pipeline's fastest variant, " << report.date << " on " << report.machine
             << " (" << info.name << "_pipelines_bench)\n";
        for (const PipelineRow &row : report.pipelines)
            if (row.best > 0) best << row.library << " " << report.schedules[row.best] << "\n";
        if (!best) hlnet::fail("cannot write %s", o.best_of.c_str());
    }

    if (o.steps.value_or(10) > 0 && o.filter.empty()) {
        hlnet::Model model;
        hlnet::Split train = hlnet::load_split(o.data, "train", info.classes);
        std::vector<std::string> choices = report.schedules;
        choices.push_back(o.best_of);
        for (size_t c = 0; c < choices.size(); c++) {
            hlnet_bench::StepRow step;
            step.schedule = c < report.schedules.size() ? choices[c] : "best-of";
            for (const PipelineRow &row : report.pipelines) {
                const int variant = c < report.schedules.size() ? int(c) : row.best;
                if (variant >= 0 && row.variants[variant].valid)
                    step.predicted_ms += row.calls_per_step * row.variants[variant].ms;
            }
            model.graph().select_schedule(choices[c]);
            step.ms = time_step(model, train, int(o.steps.value_or(10)));
            report.steps.push_back(step);
        }
    }

    print_table(report);
    std::printf("\nbest-of schedule file: %s (train with --schedule %s)\n", o.best_of.c_str(), o.best_of.c_str());
    if (!o.csv.empty()) write_csv(report, o.csv), std::printf("wrote %s\n", o.csv.c_str());
    if (!o.json.empty()) write_json(report, o.json), std::printf("wrote %s\n", o.json.c_str());
    if (!o.svg.empty()) write_svg(report, o.svg), std::printf("wrote %s\n", o.svg.c_str());
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    const std::string name = hlnet::model_info().name;
    const std::string summary =
        "Checks every pipeline of " + name + " in every schedule variant built in against the manual one, times them\n"
        "and the whole training step per variant and for the best-of mix.";
    Options o;
    o.best_of = name + "_best_schedules.txt";
    const std::vector<hlnet::Flag> flags = {
        {"--reps", &o.reps, "N", "timed calls per pipeline and variant; the median is reported (11)"},
        {"--max-seconds", &o.max_seconds, "S", "fewer calls (at least 3) where --reps of them would take longer (5)"},
        {"--steps", &o.steps, "N", "timed training steps per variant, 0 for none (10)"},
        {"--tolerance", &o.tolerance, "REL", "largest max|x - manual| / max(max|manual|, 1) a variant may differ by (1e-4)"},
        {"--filter", &o.filter, "TEXT", "only the pipelines whose library name contains TEXT (no step timing)"},
        {"--warm", &o.warm, "", "no cache flush between calls: back to back, as in the training step"},
        {"--seed", &o.seed, "N", "seed of the random inputs (1)"},
        {"--peak", &o.peak, "GFLOPS", "the peak to compare against (default: measured FMA peak; GPU builds: none)"},
        {"--best-of", &o.best_of, "FILE", "where to write each pipeline's fastest variant (NAME_best_schedules.txt)"},
        {"--csv", &o.csv, "FILE", "also write the results as CSV, one row per pipeline and schedule"},
        {"--json", &o.json, "FILE", "also write the results as JSON"},
        {"--svg", &o.svg, "FILE", "also write a bar chart (open it in a browser)"},
        {"--data", &o.data, "DIR", "IDX files the step's batches come from (/usr/share/datasets/fashion-mnist)"},
        {"--help", &o.help, "", "print this text"},
    };
    // Intermediates from the trainer's pool: otherwise each call's large
    // blocks may be mmapped afresh, by glibc's threshold of the moment, and a
    // pipeline's time depends on what ran before it (4x on one Winograd pass).
    hlnet::install_scratch_pool();
    try {
        hlnet::parse_flags(argc, argv, flags);
        if (o.reps && *o.reps == 0) throw hlnet::UsageError("--reps: must be at least 1");
    } catch (const hlnet::UsageError &e) {
        std::fprintf(stderr, "%s: %s\nusage: %s [flags] (--help lists them)\n", argv[0], e.what(), argv[0]);
        return 2;
    }
    if (o.help) {
        std::printf("%s", hlnet::usage_text(argv[0], summary.c_str(), flags).c_str());
        return 0;
    }
    try {
        return run(o);
    } catch (const hlnet::Error &e) {
        std::fprintf(stderr, "hlnet: %s\n", e.what());
        return 1;
    }
}

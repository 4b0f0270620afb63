#include "bench_report.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "error.h"

namespace hlnet_bench {

namespace {

double gflops(const PipelineRow &row, const Measurement &m) { return row.flops / m.ms / 1e6; }

// Share of the FMA peak. Per CPU-second against one core's peak when that was
// measured: other processes on a shared machine then do not distort it (Halide's
// idle workers spinning count against the pipeline); else wall time against the
// whole peak.
double share_of_peak(const Report &r, const PipelineRow &row, const Measurement &m) {
    if (r.peak_gflops_per_core > 0) return row.flops / m.cpu_ms / 1e6 / r.peak_gflops_per_core;
    return r.peak_gflops > 0 ? gflops(row, m) / r.peak_gflops : 0;
}

std::string cell(const Measurement &m) {
    if (!m.valid) return m.problem.rfind("error", 0) == 0 ? "error" : "wrong";
    char text[32];
    std::snprintf(text, sizeof text, "%.3f", m.ms);
    return text;
}

std::ofstream open_output(const std::string &path) {
    std::ofstream out(path);
    if (!out) hlnet::fail("cannot write %s", path.c_str());
    return out;
}

// A CSV field: quoted when it holds a comma, a quote or a line break (Halide's messages may).
std::string csv_field(const std::string &text) {
    if (text.find_first_of(",\"\n") == std::string::npos) return text;
    std::string out = "\"";
    for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
}

std::string xml_escape(const std::string &text) {
    std::string out;
    for (char c : text) {
        if (c == '<') out += "&lt;";
        else if (c == '>') out += "&gt;";
        else if (c == '&') out += "&amp;";
        else out += c;
    }
    return out;
}

}  // namespace

int timed_calls(int reps, double first_seconds, double max_seconds) {
    const double affordable = first_seconds > 0 ? max_seconds / first_seconds : reps;
    return std::max(int(std::min<double>(reps, affordable)), std::min(reps, 3));
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void print_table(const Report &r) {
    std::printf("\n%s, batch %d, target %s: %s, %d threads, %s\n", r.model.c_str(), r.batch, r.target.c_str(),
                r.machine.c_str(), r.threads, r.date.c_str());
    if (r.peak_gflops_per_core > 0)
        std::printf("FMA peak %.1f GFLOP/s (%d threads), %.1f GFLOP per CPU-second of one core; %%peak is per "
                    "CPU-second.\n", r.peak_gflops, r.threads, r.peak_gflops_per_core);
    else if (r.peak_gflops > 0)
        std::printf("FP32 peak %.0f GFLOP/s; %%peak is per wall-clock second.\n", r.peak_gflops);
    std::printf("ms: median of %d calls (3 for the slow ones), %s. Every variant is first checked against manual:\n"
                "float outputs within %.0e x max(max|manual|, 1), integer outputs exact (else 'wrong' or 'error', see below).\n"
                "GFLOP/s, %%peak and GB/s are the best variant's; GB/s counts every argument once. Convolutions count\n"
                "the direct algorithm's FLOPs: the Winograd ones (3x3 stride 1 on the CPU) do fewer and read above 100%%.\n\n",
                r.reps, r.flushed ? "caches flushed before each" : "back to back", r.tolerance);
    if (!r.baseline_note.empty()) std::printf("%s\n\n", r.baseline_note.c_str());

    std::printf("%-24s %-34s %5s %7s", "pipeline", "shape", "calls", "GFLOP");
    for (const std::string &s : r.schedules) std::printf(" %13s", s.c_str());
    if (!r.baseline.empty()) std::printf(" %13s", r.baseline.c_str());
    std::printf(" %13s %8s %6s %7s\n", "best", "GFLOP/s", "%peak", "GB/s");
    for (const PipelineRow &row : r.pipelines) {
        std::printf("%-24s %-34s %5d %7.3f", row.generator.c_str(), row.shape.c_str(), row.calls_per_step, row.flops / 1e9);
        for (const Measurement &m : row.variants) std::printf(" %13s", cell(m).c_str());
        if (!r.baseline.empty()) std::printf(" %13s", row.baseline ? cell(*row.baseline).c_str() : "-");
        if (row.best < 0) {
            std::printf(" %13s\n", "-");
            continue;
        }
        const Measurement &best = row.variants[row.best];
        std::printf(" %13s", r.schedules[row.best].c_str());
        if (row.flops > 0 && r.peak_gflops > 0)
            std::printf(" %8.1f %5.1f%%", gflops(row, best), 100 * share_of_peak(r, row, best));
        else if (row.flops > 0) std::printf(" %8.1f %6s", gflops(row, best), "-");
        else std::printf(" %8s %6s", "-", "-");
        std::printf(" %7.1f\n", row.bytes / best.ms / 1e6);
    }

    bool problems = false;
    auto problem = [&](const std::string &variant, const PipelineRow &row, const Measurement &m) {
        if (m.valid) return;
        if (!problems) std::printf("\nNot timed:\n");
        problems = true;
        std::printf("  %-14s %s: %s\n", variant.c_str(), row.library.c_str(), m.problem.c_str());
    };
    for (const PipelineRow &row : r.pipelines) {
        for (size_t s = 0; s < row.variants.size(); s++) problem(r.schedules[s], row, row.variants[s]);
        if (row.baseline) problem(r.baseline, row, *row.baseline);
    }

    if (r.steps.empty()) return;
    std::printf("\n%-16s %12s %10s %22s\n", "training step", "median ms", "images/s", "sum of table (calls x ms)");
    for (const StepRow &step : r.steps)
        std::printf("%-16s %12.2f %10.1f %22.2f\n", step.schedule.c_str(), step.ms, r.batch * 1000.0 / step.ms,
                    step.predicted_ms);
}

void write_csv(const Report &r, const std::string &path) {
    std::ofstream out = open_output(path);
    out << "model,pipeline,generator,shape,calls_per_step,gflop,schedule,valid,problem,max_rel_error,ms,cpu_ms,gflops,"
           "share_of_peak,gbytes_per_s,best\n";
    // The baseline's row: max_rel_error and cpu_ms empty (not checked, not measured), never best.
    auto write = [&](const PipelineRow &row, const std::string &schedule, const Measurement &m, bool baseline, bool best) {
        out << r.model << "," << row.library << "," << row.generator << "," << row.shape << "," << row.calls_per_step << ","
            << row.flops / 1e9 << "," << schedule << "," << m.valid << "," << csv_field(m.problem) << ",";
        if (!baseline) out << m.error;
        out << ",";
        if (m.valid) {
            out << m.ms << ",";
            if (!baseline) out << m.cpu_ms;
            out << "," << (row.flops > 0 ? gflops(row, m) : 0) << "," << (row.flops > 0 ? share_of_peak(r, row, m) : 0)
                << "," << row.bytes / m.ms / 1e6;
        } else {
            out << ",,,,";
        }
        out << "," << best << "\n";
    };
    for (const PipelineRow &row : r.pipelines) {
        for (size_t s = 0; s < row.variants.size(); s++) write(row, r.schedules[s], row.variants[s], false, int(s) == row.best);
        if (row.baseline) write(row, r.baseline, *row.baseline, true, false);
    }
    for (const StepRow &step : r.steps)
        out << r.model << ",training_step,,batch " << r.batch << ",1,," << step.schedule << ",1,,," << step.ms
            << ",,,,,\n";
}

void write_json(const Report &r, const std::string &path) {
    using json = nlohmann::ordered_json;
    json pipelines = json::array();
    for (const PipelineRow &row : r.pipelines) {
        json variants = json::object();
        for (size_t s = 0; s < row.variants.size(); s++) {
            const Measurement &m = row.variants[s];
            json v = {{"valid", m.valid}, {"max_rel_error", m.error}};
            if (m.valid) v["ms"] = m.ms, v["cpu_ms"] = m.cpu_ms;
            else v["problem"] = m.problem;
            variants[r.schedules[s]] = v;
        }
        pipelines.push_back({{"library", row.library}, {"generator", row.generator}, {"shape", row.shape},
                             {"calls_per_step", row.calls_per_step}, {"flops", row.flops}, {"bytes", row.bytes},
                             {"best", row.best >= 0 ? json(r.schedules[row.best]) : json(nullptr)},
                             {"schedules", variants}});
        if (row.baseline) {  // not checked: no max_rel_error
            const Measurement &m = *row.baseline;
            pipelines.back()["baseline"] = m.valid ? json{{"valid", true}, {"ms", m.ms}} : json{{"valid", false}, {"problem", m.problem}};
        }
    }
    json steps = json::array();
    for (const StepRow &step : r.steps)
        steps.push_back({{"schedule", step.schedule}, {"ms", step.ms}, {"sum_of_pipelines_ms", step.predicted_ms}});
    const json doc = {{"model", r.model}, {"batch", r.batch}, {"target", r.target}, {"machine", r.machine},
                      {"threads", r.threads}, {"date", r.date}, {"reps", r.reps}, {"caches_flushed", r.flushed},
                      {"tolerance", r.tolerance},
                      {"peak_gflops", r.peak_gflops}, {"peak_gflops_per_core", r.peak_gflops_per_core},
                      {"schedules", r.schedules},
                      {"baseline", r.baseline.empty() ? json(nullptr) : json(r.baseline)}, {"baseline_note", r.baseline_note},
                      {"pipelines", pipelines}, {"training_step", steps}};
    open_output(path) << doc.dump(1) << "\n";
}

// Horizontal bars, one group per pipeline (the training step first), one bar
// per variant. Each group is scaled to its slowest bar, so variants compare
// within a row; the label gives the time.
void write_svg(const Report &r, const std::string &path) {
    const char *colors[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"};
    const size_t n_colors = sizeof colors / sizeof colors[0];
    const int label_w = 430, bar_w = 420, bar_h = 13, gap = 10, top = 70;
    // One color per legend entry: the variants, best-of (the step group), the baseline.
    std::vector<std::string> legend = r.schedules;
    legend.push_back("best-of");
    if (!r.baseline.empty()) legend.push_back(r.baseline);
    struct Group {
        std::string label;
        std::vector<std::pair<std::string, const Measurement *>> bars;
        std::vector<Measurement> owned;  // the step rows' times
        int best = -1;
    };
    std::vector<Group> groups;
    if (!r.steps.empty()) {
        Group g;
        g.label = "training step (forward + backward + update)";
        g.owned.reserve(r.steps.size());
        for (const StepRow &step : r.steps) {
            Measurement m;
            m.valid = true;
            m.ms = step.ms;
            g.owned.push_back(m);
        }
        for (size_t i = 0; i < r.steps.size(); i++) {
            g.bars.push_back({r.steps[i].schedule, &g.owned[i]});
            if (g.best < 0 || g.owned[i].ms < g.owned[g.best].ms) g.best = int(i);
        }
        groups.push_back(std::move(g));
    }
    for (const PipelineRow &row : r.pipelines) {
        Group g;
        g.label = row.generator + " " + row.shape + (row.calls_per_step != 1 ? " (x" + std::to_string(row.calls_per_step) + ")" : "");
        for (size_t s = 0; s < row.variants.size(); s++) g.bars.push_back({r.schedules[s], &row.variants[s]});
        if (row.baseline) g.bars.push_back({r.baseline, &*row.baseline});
        g.best = row.best;
        groups.push_back(std::move(g));
    }
    int height = top;
    for (const Group &g : groups) height += int(g.bars.size()) * bar_h + gap;

    std::ofstream out = open_output(path);
    out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << label_w + bar_w + 120 << "\" height=\"" << height + 10
        << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
        << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        << "<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">" << xml_escape(r.model)
        << ": milliseconds per call, by schedule (shorter is faster; bold: fastest)</text>\n"
        << "<text x=\"10\" y=\"38\">" << xml_escape(r.machine) << ", " << r.threads << " threads, target " << r.target
        << ", batch " << r.batch << ", " << xml_escape(r.date) << "; median of " << r.reps
        << " calls (3 for the slow ones); each group scaled to its slowest bar</text>\n";
    for (size_t v = 0; v < legend.size(); v++)
        out << "<rect x=\"" << 10 + v * 130 << "\" y=\"48\" width=\"10\" height=\"10\" fill=\"" << colors[v % n_colors]
            << "\"/><text x=\"" << 24 + v * 130 << "\" y=\"57\">" << xml_escape(legend[v]) << "</text>\n";
    int y = top;
    for (const Group &g : groups) {
        double slowest = 0;
        for (const auto &bar : g.bars)
            if (bar.second->valid) slowest = std::max(slowest, bar.second->ms);
        out << "<text x=\"10\" y=\"" << y + bar_h - 2 << "\">" << xml_escape(g.label) << "</text>\n";
        for (size_t b = 0; b < g.bars.size(); b++) {
            const Measurement &m = *g.bars[b].second;
            const size_t color = std::find(legend.begin(), legend.end(), g.bars[b].first) - legend.begin();
            if (m.valid) {
                const int w = std::max(1, int(bar_w * m.ms / slowest));
                char ms[32];
                std::snprintf(ms, sizeof ms, "%.3f ms", m.ms);
                out << "<rect x=\"" << label_w << "\" y=\"" << y << "\" width=\"" << w << "\" height=\"" << bar_h - 2
                    << "\" fill=\"" << colors[color % n_colors] << "\"><title>" << xml_escape(g.bars[b].first) << ": "
                    << ms << "</title></rect>\n"
                    << "<text x=\"" << label_w + w + 4 << "\" y=\"" << y + bar_h - 3 << "\""
                    << (int(b) == g.best ? " font-weight=\"bold\"" : "") << ">" << ms << "</text>\n";
            } else {
                out << "<text x=\"" << label_w << "\" y=\"" << y + bar_h - 3 << "\" fill=\"#999\">"
                    << xml_escape(g.bars[b].first) << ": not timed (" << xml_escape(m.problem) << ")</text>\n";
            }
            y += bar_h;
        }
        y += gap;
    }
    out << "</svg>\n";
}

}  // namespace hlnet_bench

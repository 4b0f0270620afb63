// Training progress: a redrawn bar with images/s and ETA when the output is a
// terminal, plain lines every few steps otherwise (logs, CI). Formatting goes
// into a fixed buffer, so reporting allocates nothing inside the step loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>

namespace hlnet {

struct ProgressInfo {
    int64_t epoch, epochs;  // 1-based epoch, of how many
    int64_t step, steps;    // steps done in this epoch, of how many
    double loss;            // mean loss per example so far in this epoch
    double accuracy;        // training accuracy so far in this epoch
    double images_per_s;
    double eta_s;           // until the end of this epoch's training steps
};

// "1:05", "12:00", "1:02:03"; returns `out`.
const char *format_duration(char *out, size_t size, double seconds);

// One progress line without a newline. bar_width > 0 draws a bar of that many
// cells ("epoch 1/5 [#####.....] 117/234 ..."); 0 gives a plain line.
void format_progress(char *out, size_t size, const ProgressInfo &p, int bar_width);

class Progress {
public:
    // terminal: redraw one line in place; else print a line every `every` steps.
    Progress(FILE *out, bool terminal, int64_t every);
    ~Progress() { clear(); }  // so that an error message starts on a clean line
    Progress(const Progress &) = delete;
    Progress &operator=(const Progress &) = delete;
    void update(const ProgressInfo &p);
    // Clears the bar so that the next line (the epoch line) starts clean.
    void clear();

private:
    FILE *out_;
    bool terminal_;
    int64_t every_;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace hlnet

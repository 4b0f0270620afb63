#include "progress.h"

#include <cmath>

namespace hlnet {

const char *format_duration(char *out, size_t size, double seconds) {
    const long long s = std::isfinite(seconds) && seconds > 0 ? (long long)std::llround(seconds) : 0;
    if (s >= 3600)
        std::snprintf(out, size, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else
        std::snprintf(out, size, "%lld:%02lld", s / 60, s % 60);
    return out;
}

void format_progress(char *out, size_t size, const ProgressInfo &p, int bar_width) {
    char eta[32];
    format_duration(eta, sizeof eta, p.eta_s);
    char bar[128] = "";
    if (bar_width > 0) {
        const int cells = bar_width < int(sizeof bar) - 4 ? bar_width : int(sizeof bar) - 4;
        const int full = p.steps > 0 ? int(cells * p.step / p.steps) : 0;
        bar[0] = '[';
        for (int i = 0; i < cells; i++) bar[1 + i] = i < full ? '#' : '.';
        bar[1 + cells] = ']';
        bar[2 + cells] = ' ';
        bar[3 + cells] = '\0';
    }
    std::snprintf(out, size, "epoch %lld/%lld %sstep %lld/%lld, loss %.4f, train acc %.3f, %.1f img/s, ETA %s",
                  (long long)p.epoch, (long long)p.epochs, bar, (long long)p.step, (long long)p.steps,
                  p.loss, p.accuracy, p.images_per_s, eta);
}

Progress::Progress(FILE *out, bool terminal, int64_t every)
    : out_(out), terminal_(terminal), every_(every > 0 ? every : 1) {}

void Progress::update(const ProgressInfo &p) {
    char line[256];
    if (!terminal_) {
        if (p.step % every_ != 0 && p.step != p.steps) return;
        format_progress(line, sizeof line, p, 0);
        std::fprintf(out_, "%s\n", line);
        std::fflush(out_);
        return;
    }
    // Redrawing costs a write to the terminal: ten times a second is enough.
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && p.step != p.steps && now - last_draw_ < std::chrono::milliseconds(100)) return;
    format_progress(line, sizeof line, p, 30);
    std::fprintf(out_, "\r%s\033[K", line);  // \033[K clears what a longer line left
    std::fflush(out_);
    drawn_ = true;
    last_draw_ = now;
}

void Progress::clear() {
    if (terminal_ && drawn_) {
        std::fprintf(out_, "\r\033[K");
        std::fflush(out_);
    }
    drawn_ = false;
}

}  // namespace hlnet

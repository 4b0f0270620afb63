#include "diagnostics.h"

#include <algorithm>

namespace specc {

SpecError::SpecError(std::string pointer, const std::string &message, std::string got)
    : std::runtime_error(message), pointer_(std::move(pointer)), message_(message), got_(std::move(got)) {}

std::string SpecError::format(const std::string &file) const {
    return file + ": " + (pointer_.empty() ? "/" : pointer_) + ": " + message_ + " (got " + got_ + ")";
}

std::string describe(const json &value) {
    constexpr size_t kMax = 60;
    std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > kMax) text = text.substr(0, kMax - 3) + "...";
    return text;
}

std::string quote(const std::string &s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); }

std::string pointer_token(const std::string &key) {
    std::string out;
    for (char c : key) {
        if (c == '~') out += "~0";
        else if (c == '/') out += "~1";
        else out += c;
    }
    return out;
}

namespace {

size_t edit_distance(const std::string &a, const std::string &b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++) row[j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); j++) {
            const size_t substitute = diagonal + (a[i - 1] != b[j - 1]);
            diagonal = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
        }
    }
    return row[b.size()];
}

}  // namespace

std::string nearest(const std::string &name, const std::vector<std::string> &candidates) {
    std::string best;
    size_t best_distance = SIZE_MAX;
    for (const std::string &candidate : candidates) {
        const size_t d = edit_distance(name, candidate);
        if (d < best_distance) {
            best = candidate;
            best_distance = d;
        }
    }
    return best;
}

std::string did_you_mean(const std::string &name, const std::vector<std::string> &candidates) {
    if (candidates.empty()) return "";
    return "; did you mean " + quote(nearest(name, candidates)) + "?";
}

}  // namespace specc

// Progress lines and durations, as printed.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "progress.h"

TEST_CASE("durations read as m:ss or h:mm:ss", "[progress]") {
    char b[32];
    CHECK(std::string(hlnet::format_duration(b, sizeof b, 0)) == "0:00");
    CHECK(std::string(hlnet::format_duration(b, sizeof b, 65.4)) == "1:05");
    CHECK(std::string(hlnet::format_duration(b, sizeof b, 720)) == "12:00");
    CHECK(std::string(hlnet::format_duration(b, sizeof b, 3723)) == "1:02:03");
    CHECK(std::string(hlnet::format_duration(b, sizeof b, -5)) == "0:00");
    CHECK(std::string(hlnet::format_duration(b, sizeof b, 1.0 / 0.0)) == "0:00");
}

TEST_CASE("a progress line, plain and with a bar", "[progress]") {
    const hlnet::ProgressInfo p{2, 5, 117, 234, 0.48564, 0.8281, 812.34, 83.2};
    char b[256];
    hlnet::format_progress(b, sizeof b, p, 0);
    CHECK(std::string(b) ==
          "epoch 2/5 step 117/234, loss 0.4856, train acc 0.828, 812.3 img/s, ETA 1:23");
    hlnet::format_progress(b, sizeof b, p, 10);
    CHECK(std::string(b) ==
          "epoch 2/5 [#####.....] step 117/234, loss 0.4856, train acc 0.828, 812.3 img/s, ETA 1:23");
    char small[16];
    hlnet::format_progress(small, sizeof small, p, 10);  // truncates, never overflows
    CHECK(std::string(small) == "epoch 2/5 [####");
}

TEST_CASE("plain progress prints every N steps and the last", "[progress]") {
    char text[1024] = {};
    FILE *out = fmemopen(text, sizeof text, "w");
    hlnet::Progress progress(out, false, 2);
    for (int step = 1; step <= 5; step++) progress.update({1, 1, step, 5, 1.0, 0.5, 10.0, 1.0});
    progress.clear();
    std::fclose(out);
    const std::string s = text;
    CHECK(s.find("step 1/5") == std::string::npos);
    CHECK(s.find("step 2/5") != std::string::npos);
    CHECK(s.find("step 3/5") == std::string::npos);
    CHECK(s.find("step 4/5") != std::string::npos);
    CHECK(s.find("step 5/5") != std::string::npos);
    CHECK(s.find('\r') == std::string::npos);  // no terminal codes in plain output
}

TEST_CASE("terminal progress redraws one line", "[progress]") {
    char text[1024] = {};
    FILE *out = fmemopen(text, sizeof text, "w");
    hlnet::Progress progress(out, true, 1);
    progress.update({1, 1, 1, 2, 1.0, 0.5, 10.0, 1.0});
    progress.update({1, 1, 2, 2, 1.0, 0.5, 10.0, 0.0});  // the last step always draws
    progress.clear();
    std::fclose(out);
    const std::string s = text;
    CHECK(s.find("\repoch 1/1 [") == 0);
    CHECK(s.find("step 2/2") != std::string::npos);
    CHECK(s.find('\n') == std::string::npos);
    CHECK(s.substr(s.size() - 4) == "\r\033[K");
}

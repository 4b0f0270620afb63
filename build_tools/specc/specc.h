// specc as a library: compile a spec's text into its graph and program, and
// render the files `specc emit` writes. The CLI (main.cpp), the tests and the
// fuzzer all enter here.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "program.h"

namespace specc {

// Command-line overrides for quick what-ifs (`specc summary --batch 1 --input 1x224x224`).
struct Overrides {
    int batch = 0;                          // 0: the spec's
    int channels = 0, height = 0, width = 0;  // 0: the spec's; the resize follows the input
    // Data-parallel processes the build is for (CMake's HLNET_RANKS): the
    // spec's batch is the global one, and the pipelines take batch / ranks.
    int ranks = 1;
    // How the activations lie in memory (CMake's HLNET_LAYOUT): false NCHW,
    // true NHWC (channels innermost), for every pipeline that takes them.
    bool channels_last = false;
};

struct Compiled {
    Spec spec;
    Graph graph;
    Program program;
};

// Every pass from text to the verified program. Throws SpecError for a bad
// spec and InternalError when an IR check fails.
Compiled compile(const std::string &text, const Overrides &overrides = {});

// The files of `specc emit`, named relative to the output folder.
std::vector<std::pair<std::string, std::string>> render_files(const Compiled &compiled);

// Renderers (emit.cpp).
std::string render_pipelines_cmake(const Compiled &compiled);
std::string render_graph_cpp(const Compiled &compiled);
std::string render_graph_json(const Compiled &compiled);
std::string render_summary(const Compiled &compiled);

}  // namespace specc

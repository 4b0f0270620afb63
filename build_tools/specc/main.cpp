// specc: compiles a model spec (docs/SPEC.md) into its pipelines and step code.
//
//   specc emit SPEC --out DIR [--ranks N] [--layout nchw|nhwc]
//                     pipelines.cmake, NAME_graph.cpp/.json, NAME_summary.txt
//                     (for N data-parallel processes: batch / N each; activations NCHW or NHWC)
//   specc summary SPEC [--batch N] [--input CxHxW]     the layer table
//
// Exit codes: 0 done; 1 usage or I/O problem; 2 bad spec (one line on stderr:
// `FILE: /json/pointer: what is wrong (got X)`); 3 internal error.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include "specc.h"

namespace fs = std::filesystem;

namespace {

constexpr int kUsageError = 1, kSpecError = 2, kInternalError = 3;

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

const char *const kUsage =
    "usage: specc emit SPEC --out DIR [--ranks N] [--layout nchw|nhwc]\n"
    "       specc summary SPEC [--batch N] [--input CxHxW]\n";

std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UsageError("cannot read " + path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

int positive(const std::string &text, const std::string &option) {
    size_t used = 0;
    long value = 0;
    try {
        value = std::stol(text, &used);
    } catch (const std::exception &) {
    }
    if (used != text.size() || value <= 0 || value > INT32_MAX) throw UsageError(option + " needs a positive integer");
    return int(value);
}

specc::Overrides parse_input(const std::string &text, specc::Overrides overrides) {
    const size_t x1 = text.find('x'), x2 = text.find('x', x1 + 1);
    if (x1 == std::string::npos || x2 == std::string::npos) throw UsageError("--input needs CxHxW, e.g. 1x224x224");
    overrides.channels = positive(text.substr(0, x1), "--input");
    overrides.height = positive(text.substr(x1 + 1, x2 - x1 - 1), "--input");
    overrides.width = positive(text.substr(x2 + 1), "--input");
    return overrides;
}

// Writes `content` to `path` through a temporary file and a rename, and only
// when it differs, so the build sees a change only where there is one.
void write_if_changed(const fs::path &path, const std::string &content) {
    std::ifstream existing(path, std::ios::binary);
    if (existing) {
        std::ostringstream old;
        old << existing.rdbuf();
        if (old.str() == content) return;
    }
    const fs::path temporary = path.string() + ".tmp" + std::to_string(getpid());
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        out << content;
        out.close();
        if (!out) throw UsageError("cannot write " + temporary.string());
    }
    fs::rename(temporary, path);
}

int run(int argc, char **argv) {
    if (argc == 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
        std::cout << kUsage << "Exit codes: 0 done, 1 usage or I/O, 2 bad spec (one line on stderr), 3 internal error.\n"
                  << "The spec language: docs/SPEC.md.\n";
        return 0;
    }
    if (argc < 3) throw UsageError("missing command or spec");
    const std::string command = argv[1], spec_path = argv[2];
    fs::path out_dir;
    specc::Overrides overrides;
    for (int i = 3; i < argc; i++) {
        const std::string option = argv[i];
        if (i + 1 >= argc) throw UsageError(option + " needs a value");
        const std::string value = argv[++i];
        if (option == "--out" && command == "emit") out_dir = value;
        else if (option == "--ranks" && command == "emit") overrides.ranks = positive(value, option);
        else if (option == "--layout" && command == "emit" && (value == "nchw" || value == "nhwc"))
            overrides.channels_last = value == "nhwc";
        else if (option == "--layout" && command == "emit") throw UsageError("--layout must be nchw or nhwc, not " + value);
        else if (option == "--batch" && command == "summary") overrides.batch = positive(value, option);
        else if (option == "--input" && command == "summary") overrides = parse_input(value, overrides);
        else throw UsageError("unknown option " + option + " for " + command);
    }
    if (command != "emit" && command != "summary") throw UsageError("unknown command " + command);
    if (command == "emit" && out_dir.empty()) throw UsageError("emit needs --out DIR");

    const specc::Compiled compiled = specc::compile(read_file(spec_path), overrides);
    // Build targets and generated files are named after the file; the spec must agree.
    const std::string stem = fs::path(spec_path).stem().string();
    if (compiled.spec.name != stem)
        throw specc::SpecError("/name", "must equal the file name " + specc::quote(stem), specc::quote(compiled.spec.name));

    if (command == "summary") {
        std::cout << specc::render_summary(compiled);
        return 0;
    }
    const auto files = specc::render_files(compiled);  // everything in memory before the first write
    fs::create_directories(out_dir);
    for (const auto &[name, content] : files) write_if_changed(out_dir / name, content);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    const std::string spec = argc > 2 ? argv[2] : "specc";
    try {
        return run(argc, argv);
    } catch (const specc::SpecError &e) {
        std::cerr << e.format(spec) << "\n";
        return kSpecError;
    } catch (const specc::InternalError &e) {
        std::cerr << spec << ": internal error: " << e.what() << "\n";
        return kInternalError;
    } catch (const UsageError &e) {
        std::cerr << "specc: " << e.what() << "\n" << kUsage;
        return kUsageError;
    } catch (const std::exception &e) {
        std::cerr << "specc: " << e.what() << "\n";
        return kUsageError;
    }
}

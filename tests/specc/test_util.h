// Helpers shared by the specc tests.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "specc.h"

namespace specc_test {

inline std::string read_text(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

inline std::string spec_path(const std::string &name) { return std::string(HLNET_SPECS_DIR) + "/" + name + ".json"; }
inline specc::json spec_json(const std::string &name) { return specc::json::parse(read_text(spec_path(name))); }

inline specc::Compiled compile_spec(const std::string &name, const specc::Overrides &overrides = {}) {
    return specc::compile(read_text(spec_path(name)), overrides);
}

// The one-line message for a bad spec, as `specc` prints it for a file named spec.json.
inline std::string error_of_text(const std::string &text) {
    try {
        specc::compile(text);
    } catch (const specc::SpecError &e) {
        return e.format("spec.json");
    }
    return "no error";
}
inline std::string error_of(const specc::json &document) { return error_of_text(document.dump()); }

}  // namespace specc_test

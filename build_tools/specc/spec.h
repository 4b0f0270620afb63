// The spec as the user wrote it: parsed, every key known, every value typed
// and in range (docs/SPEC.md). Macros are still macros here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "diagnostics.h"

namespace specc {

// One entry of "layers". Which fields mean something depends on `op`.
struct Layer {
    std::string pointer;               // "/layers/3", for messages
    std::string name;
    std::string op;                    // as spelled in the spec, validated
    std::vector<std::string> inputs;   // empty: the previous layer
    int channels = 0;                  // conv, blocks, stage: output channels
    int kernel = 0, stride = 1, padding = 0;
    int units = 0;                     // dense
    int width = 0;                     // bottleneck: inner channels (default channels/4)
    int blocks = 0;                    // stage
    std::string block;                 // stage: residual, bottleneck or preact_residual
    bool projection = false;           // blocks: 1x1 conv on the shortcut (default: stride != 1)
};

struct Training {
    std::string optimizer;  // "sgd"
    double lr = 0, momentum = 0, weight_decay = 0;
    int epochs = 0;
    std::string init;       // "xavier"
    uint64_t seed = 0;
};

struct Data {
    std::string dataset;    // "fashion-mnist"
    bool resize = false;    // resize [h, w] given (else null / "none")
    int resize_height = 0, resize_width = 0;
};

struct Spec {
    std::string name;
    int channels = 0, height = 0, width = 0;  // network input, after resize
    int batch = 0;                            // per rank: the spec's batch / ranks
    int ranks = 1;                            // data-parallel processes (specc::Overrides::ranks)
    bool channels_last = false;               // NHWC activations (specc::Overrides::channels_last)
    int classes = 0;
    std::vector<Layer> layers;
    Training training;
    Data data;
};

// Source image size of each dataset the input pipeline knows.
struct DatasetInfo {
    const char *name;
    int channels, height, width;
    int train_images;  // the largest split: what the input pipeline's image count is tuned for
};
const std::vector<DatasetInfo> &datasets();

// Parses JSON text. A syntax error or a truncated file is a SpecError at "/".
json parse_json(const std::string &text);

// Checks keys, types and ranges, and the input against the data section.
Spec read_spec(const json &document);

}  // namespace specc

// IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed.
//
// Layout: a 4-byte magic (0, 0, type, rank), `rank` big-endian uint32
// dimensions, then the data. hlnet reads only unsigned bytes (type 0x08).
// Every check failure is one line naming the file and the byte offset.
#pragma once

#include <cstdint>
#include <string>

#include "HalideBuffer.h"

namespace hlnet {

// Reads an IDX file of unsigned bytes with exactly `rank` dimensions. The
// dimensions come back in Halide order (innermost first): images stored as
// [count, rows, cols] become a buffer (cols, rows, count).
Halide::Runtime::Buffer<uint8_t> read_idx(const std::string &path, int rank);

// One split of an image-classification dataset, resident in host memory.
struct Split {
    Halide::Runtime::Buffer<uint8_t> images;  // (width, height, count)
    Halide::Runtime::Buffer<uint8_t> labels;  // (count)
    int count() const { return labels.dim(0).extent(); }
};

// Loads `<dir>/<prefix>-images-idx3-ubyte` and `<dir>/<prefix>-labels-idx1-ubyte`
// (each raw or with .gz appended) and checks that the counts agree and that
// every label is below `classes`. prefix: "train" or "t10k".
Split load_split(const std::string &dir, const std::string &prefix, int classes);

}  // namespace hlnet

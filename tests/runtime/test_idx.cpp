// IDX reading: raw and gzip files, and every check's message.
#include <zlib.h>

#include <catch2/catch.hpp>

#include "idx.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using test::Bytes;

namespace {

// An IDX file of unsigned bytes: magic, big-endian dimensions, then `data`.
Bytes idx(std::vector<uint32_t> dims, const Bytes &data) {
    Bytes b = {0, 0, 0x08, uint8_t(dims.size())};
    for (uint32_t d : dims)
        for (int shift = 24; shift >= 0; shift -= 8) b.push_back(uint8_t(d >> shift));
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

void write_gz(const std::string &path, const Bytes &bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f);
    REQUIRE(gzwrite(f, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
    gzclose(f);
}

// Three 2x3 images (rows 2, columns 3) with pixels 0..17, and their labels.
const Bytes kPixels = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
const Bytes kImages = idx({3, 2, 3}, kPixels);
const Bytes kLabels = idx({3}, {4, 0, 9});

}  // namespace

TEST_CASE("a raw IDX file reads in Halide order", "[idx]") {
    const std::string path = test::temp_dir() + "/images";
    test::write_file(path, kImages);
    auto b = hlnet::read_idx(path, 3);
    REQUIRE(b.dimensions() == 3);
    CHECK(b.dim(0).extent() == 3);  // columns
    CHECK(b.dim(1).extent() == 2);  // rows
    CHECK(b.dim(2).extent() == 3);  // count
    CHECK(b(0, 0, 0) == 0);
    CHECK(b(2, 0, 0) == 2);
    CHECK(b(0, 1, 0) == 3);
    CHECK(b(2, 1, 2) == 17);
}

TEST_CASE("a gzip IDX file reads the same", "[idx]") {
    const std::string path = test::temp_dir() + "/images.gz";
    write_gz(path, kImages);
    auto b = hlnet::read_idx(path, 3);
    CHECK(b.dim(2).extent() == 3);
    CHECK(b(1, 1, 1) == 10);
}

TEST_CASE("a truncated IDX file names the byte", "[idx]") {
    const std::string dir = test::temp_dir();
    Bytes cut(kImages.begin(), kImages.end() - 5);  // 16 header bytes + 13 of 18 pixels
    test::write_file(dir + "/raw", cut);
    CHECK_THROWS_WITH(hlnet::read_idx(dir + "/raw", 3),
                      Contains(dir + "/raw: truncated at byte 29: 5 more bytes of data expected"));
    write_gz(dir + "/gz.gz", cut);
    CHECK_THROWS_WITH(hlnet::read_idx(dir + "/gz.gz", 3), Contains("truncated at byte 29"));
    test::write_file(dir + "/header", Bytes(kImages.begin(), kImages.begin() + 6));
    CHECK_THROWS_WITH(hlnet::read_idx(dir + "/header", 3),
                      Contains("truncated at byte 6: 2 more bytes of dimensions expected"));
}

TEST_CASE("a gzip stream cut short is truncation, not corruption", "[idx]") {
    const std::string dir = test::temp_dir();
    write_gz(dir + "/whole.gz", kImages);
    Bytes gz = test::read_file(dir + "/whole.gz");
    gz.resize(gz.size() - 8);  // the CRC and length trailer
    test::write_file(dir + "/cut.gz", gz);
    CHECK_THROWS_WITH(hlnet::read_idx(dir + "/cut.gz", 3),
                      Contains("cut.gz: truncated at byte 34: the gzip stream ends before its trailer"));
}

TEST_CASE("corrupt gzip data is reported as such", "[idx]") {
    const std::string dir = test::temp_dir();
    Bytes big = idx({200, 28, 28}, Bytes(200 * 28 * 28, 7));
    write_gz(dir + "/ok.gz", big);
    Bytes gz = test::read_file(dir + "/ok.gz");
    for (size_t i = 20; i < gz.size() - 8; i += 3) gz[i] ^= 0x5a;  // scramble the deflate stream
    test::write_file(dir + "/bad.gz", gz);
    CHECK_THROWS_WITH(hlnet::read_idx(dir + "/bad.gz", 3), Contains("bad.gz: corrupt gzip data"));
}

TEST_CASE("a bad magic number is named with what was expected", "[idx]") {
    const std::string path = test::temp_dir() + "/labels";
    test::write_file(path, kLabels);
    CHECK_THROWS_WITH(hlnet::read_idx(path, 3),
                      Contains("bad magic 0x00000801 at byte 0: expected 0x00000803 (unsigned bytes, 3 dimensions)"));
    Bytes floats = kImages;
    floats[2] = 0x0d;  // IDX float32
    test::write_file(path, floats);
    CHECK_THROWS_WITH(hlnet::read_idx(path, 3), Contains("bad magic 0x00000d03"));
}

TEST_CASE("zero dimensions and trailing bytes are rejected", "[idx]") {
    const std::string path = test::temp_dir() + "/images";
    test::write_file(path, idx({3, 0, 3}, {}));
    CHECK_THROWS_WITH(hlnet::read_idx(path, 3), Contains("dimension 1 is 0 at byte 8"));
    Bytes extra = kImages;
    extra.push_back(1);
    test::write_file(path, extra);
    CHECK_THROWS_WITH(hlnet::read_idx(path, 3), Contains("unexpected data at byte 34"));
}

TEST_CASE("a missing file gives a hint", "[idx]") {
    const std::string dir = test::temp_dir();
    CHECK_THROWS_WITH(hlnet::load_split(dir, "train", 10),
                      Contains("cannot find train-images-idx3-ubyte or train-images-idx3-ubyte.gz in " + dir) &&
                          Contains("HINT"));
}

TEST_CASE("a split checks its counts and labels", "[idx]") {
    const std::string dir = test::temp_dir();
    test::write_file(dir + "/train-images-idx3-ubyte", kImages);
    write_gz(dir + "/train-labels-idx1-ubyte.gz", kLabels);
    hlnet::Split split = hlnet::load_split(dir, "train", 10);
    CHECK(split.count() == 3);
    CHECK(split.labels(2) == 9);

    CHECK_THROWS_WITH(hlnet::load_split(dir, "train", 9),
                      Contains("train-labels-idx1-ubyte.gz: label 9 at byte 10 is not below the model's 9 classes"));

    write_gz(dir + "/train-labels-idx1-ubyte.gz", idx({2}, {1, 2}));
    CHECK_THROWS_WITH(hlnet::load_split(dir, "train", 10),
                      Contains("train-images-idx3-ubyte holds 3 images but") &&
                          Contains("train-labels-idx1-ubyte.gz holds 2 labels"));
}

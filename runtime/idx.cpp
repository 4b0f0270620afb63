#include "idx.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <vector>

#include "error.h"

namespace hlnet {

namespace {

constexpr uint8_t kTypeUnsignedByte = 0x08;

// A gzip or raw file (zlib reads both), tracking the uncompressed offset so
// that every error can name the byte at which it happened.
class Reader {
public:
    explicit Reader(const std::string &path) : path_(path) {
        file_ = gzopen(path.c_str(), "rb");
        if (!file_) fail("%s: cannot open (%s)", path.c_str(), std::strerror(errno));
        gzbuffer(file_, 1 << 20);
    }
    ~Reader() { gzclose(file_); }
    Reader(const Reader &) = delete;
    Reader &operator=(const Reader &) = delete;

    // Reads exactly `n` bytes; `what` names them for the truncation message.
    void read(void *dst, int64_t n, const char *what) {
        auto *p = static_cast<uint8_t *>(dst);
        while (n > 0) {
            const unsigned chunk = unsigned(std::min<int64_t>(n, INT_MAX / 2));
            const int got = gzread(file_, p, chunk);
            if (got < 0) corrupt();
            offset_ += got;
            if (got == 0) {
                stream_ended_early();  // fails itself if the data is corrupt
                fail("%s: truncated at byte %lld: %lld more bytes of %s expected",
                     path_.c_str(), (long long)offset_, (long long)n, what);
            }
            p += got;
            n -= got;
        }
    }

    // Fails if anything follows the data the header announced.
    void expect_end() {
        uint8_t extra;
        const int got = gzread(file_, &extra, 1);
        if (got < 0) corrupt();
        if (got > 0)
            fail("%s: unexpected data at byte %lld: the header's dimensions end there",
                 path_.c_str(), (long long)offset_);
        if (stream_ended_early())
            fail("%s: truncated at byte %lld: the gzip stream ends before its trailer",
                 path_.c_str(), (long long)offset_);
    }

    int64_t offset() const { return offset_; }

private:
    // After a short read: zlib reports a gzip stream that ends early as
    // Z_BUF_ERROR (truncation, which the caller words); any other error is
    // corruption.
    bool stream_ended_early() {
        int err = Z_OK;
        gzerror(file_, &err);
        if (err != Z_OK && err != Z_BUF_ERROR) corrupt();
        return err == Z_BUF_ERROR;
    }
    [[noreturn]] void corrupt() {
        int err = Z_OK;
        const char *msg = gzerror(file_, &err);
        fail("%s: corrupt gzip data after byte %lld of the uncompressed stream (compressed byte %lld): %s",
             path_.c_str(), (long long)offset_, (long long)gzoffset(file_), msg);
    }

    std::string path_;
    gzFile file_ = nullptr;
    int64_t offset_ = 0;
};

uint32_t big_endian_u32(const uint8_t b[4]) {
    return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | uint32_t(b[3]);
}

bool file_exists(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// `<dir>/<name>`, or `<dir>/<name>.gz` when only that exists.
std::string find_idx(const std::string &dir, const std::string &name) {
    const std::string raw = dir + "/" + name;
    if (file_exists(raw)) return raw;
    if (file_exists(raw + ".gz")) return raw + ".gz";
    fail("cannot find %s or %s.gz in %s (HINT: install Debian's dataset-fashion-mnist, "
         "or pass --data DIR)", name.c_str(), name.c_str(), dir.c_str());
}

}  // namespace

Halide::Runtime::Buffer<uint8_t> read_idx(const std::string &path, int rank) {
    Reader in(path);
    uint8_t magic[4];
    in.read(magic, 4, "magic number");
    if (magic[0] != 0 || magic[1] != 0 || magic[2] != kTypeUnsignedByte || magic[3] != rank)
        fail("%s: bad magic 0x%02x%02x%02x%02x at byte 0: expected 0x0000%02x%02x "
             "(unsigned bytes, %d dimensions)", path.c_str(), magic[0], magic[1], magic[2],
             magic[3], kTypeUnsignedByte, rank, rank);

    std::vector<int> extents(rank);  // Halide order: the file's last dimension first
    int64_t total = 1;
    for (int d = 0; d < rank; d++) {
        const int64_t at = in.offset();
        uint8_t b[4];
        in.read(b, 4, "dimensions");
        const uint32_t extent = big_endian_u32(b);
        if (extent == 0 || extent > INT_MAX)
            fail("%s: dimension %d is %u at byte %lld", path.c_str(), d, extent, (long long)at);
        extents[rank - 1 - d] = int(extent);
        total *= extent;
        if (total > (int64_t(1) << 34))
            fail("%s: dimensions at byte %lld describe more than 16 GiB", path.c_str(), (long long)at);
    }

    Halide::Runtime::Buffer<uint8_t> data(extents);
    in.read(data.data(), total, "data");
    in.expect_end();
    return data;
}

Split load_split(const std::string &dir, const std::string &prefix, int classes) {
    const std::string images_path = find_idx(dir, prefix + "-images-idx3-ubyte");
    const std::string labels_path = find_idx(dir, prefix + "-labels-idx1-ubyte");
    Split split{read_idx(images_path, 3), read_idx(labels_path, 1)};

    const int images = split.images.dim(2).extent();
    if (images != split.count())
        fail("%s holds %d images but %s holds %d labels", images_path.c_str(), images,
             labels_path.c_str(), split.count());
    constexpr int kLabelsHeaderBytes = 8;  // magic + one dimension
    for (int i = 0; i < split.count(); i++)
        if (split.labels(i) >= classes)
            fail("%s: label %d at byte %d is not below the model's %d classes",
                 labels_path.c_str(), split.labels(i), kLabelsHeaderBytes + i, classes);
    return split;
}

}  // namespace hlnet

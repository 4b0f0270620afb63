// input_pipeline: batch gather by index, bilinear resize with half-pixel centres
// (PyTorch align_corners=False) against a double reference, exact copy when the
// size is unchanged, label gather.
#include "op_cases.h"
#include "test_util.h"

using namespace hlnet_test;

namespace {

// torch.nn.functional.interpolate(mode="bilinear", align_corners=False), in double.
double bilinear_reference(const Buffer<uint8_t> &images, int image, int x, int y, int SRC_H, int SRC_W, int DST_H,
                          int DST_W) {
    auto source = [](int dst, int src_size, int dst_size) {
        return std::max((dst + 0.5) * src_size / dst_size - 0.5, 0.0);
    };
    double sx = source(x, SRC_W, DST_W), sy = source(y, SRC_H, DST_H);
    int x0 = int(sx), y0 = int(sy);
    int x1 = std::min(x0 + 1, SRC_W - 1), y1 = std::min(y0 + 1, SRC_H - 1);
    double lx = sx - x0, ly = sy - y0;
    auto at = [&](int xx, int yy) { return double(images(xx, yy, image)); };
    double top = (1 - lx) * at(x0, y0) + lx * at(x1, y0);
    double bottom = (1 - lx) * at(x0, y1) + lx * at(x1, y1);
    return ((1 - ly) * top + ly * bottom) / 255.0;
}

template <typename Fn>
void check_input(int N, int SRC_H, int SRC_W, int DST_H, int DST_W, Fn fn) {
    const int count = 9;
    Buffer<uint8_t> images(SRC_W, SRC_H, count);
    Buffer<uint8_t> labels(count);
    std::mt19937 rng(71);
    images.for_each_value([&](uint8_t &v) { v = uint8_t(rng() % 256); });
    labels.for_each_value([&](uint8_t &v) { v = uint8_t(rng() % 10); });
    images.set_host_dirty();
    labels.set_host_dirty();
    Buffer<int32_t> indices(N);
    for (int n = 0; n < N; n++) indices(n) = (n * 5 + 8) % count;  // 8, 4, 0, ...: out of order

    auto out = output_buffer({DST_W, DST_H, 1, N});
    auto labels_out = output_buffer<int32_t>({N});
    REQUIRE(fn(images, labels, indices, out, labels_out) == 0);
    to_host(out, labels_out);

    Buffer<double> ref(DST_W, DST_H, 1, N);
    ref.for_each_element([&](int x, int y, int, int n) {
        ref(x, y, 0, n) = bilinear_reference(images, indices(n), x, y, SRC_H, SRC_W, DST_H, DST_W);
    });
    // Values in [0, 1] from a few float operations: 1e-6 absolute covers their rounding.
    check_close(out, ref, "output", 1e-6, 1e-6);
    if (SRC_H == DST_H && SRC_W == DST_W) {
        size_t inexact = 0;
        out.for_each_element([&](int x, int y, int, int n) {
            inexact += out(x, y, 0, n) != float(images(x, y, indices(n))) / 255.0f;
        });
        CHECK(inexact == 0);
    }
    for (int n = 0; n < N; n++) CHECK(labels_out(n) == labels(indices(n)));
}

}  // namespace

#define HLNET_INPUT_CASE(fn, N, SRC_H, SRC_W, DST_H, DST_W) \
    SECTION(#fn) { check_input(N, SRC_H, SRC_W, DST_H, DST_W, fn); }

TEST_CASE("input pipeline: gather, bilinear resize, scale", "[input]") { HLNET_INPUT_CASES(HLNET_INPUT_CASE) }

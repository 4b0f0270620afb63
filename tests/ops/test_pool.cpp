// maxpool_forward / maxpool_backward (with ties) and avgpool_forward /
// avgpool_backward against double references and finite differences.
#include <limits>

#include "op_cases.h"
#include "test_util.h"

using namespace hlnet_test;

namespace {

struct PoolShape {
    int N, C, H, W, K, S, P;
    int HO() const { return (H + 2 * P - K) / S + 1; }
    int WO() const { return (W + 2 * P - K) / S + 1; }
};

// Max over the window in row-major order, padding -inf; the first maximum wins.
void maxpool_reference(const PoolShape &s, const Buffer<double> &in, Buffer<double> &out, Buffer<int> &argmax) {
    out.for_each_element([&](int ox, int oy, int c, int n) {
        double best = -std::numeric_limits<double>::infinity();
        int at = -1;
        for (int ky = 0; ky < s.K; ky++)
            for (int kx = 0; kx < s.K; kx++) {
                int ix = ox * s.S + kx - s.P, iy = oy * s.S + ky - s.P;
                if (ix < 0 || ix >= s.W || iy < 0 || iy >= s.H) continue;
                if (in(ix, iy, c, n) > best) {
                    best = in(ix, iy, c, n);
                    at = iy * s.W + ix;
                }
            }
        out(ox, oy, c, n) = best;
        argmax(ox, oy, c, n) = at;
    });
}

template <typename Forward, typename Backward>
void check_maxpool_on(const PoolShape &s, Buffer<float> in, Forward forward, Backward backward, bool finite_differences) {
    const std::vector<int> out_shape = {s.WO(), s.HO(), s.C, s.N};
    auto in_d = to_double(in);
    auto out = output_buffer(out_shape);
    auto argmax = output_buffer<int32_t>(out_shape);
    REQUIRE(forward(in, out, argmax) == 0);
    to_host(out, argmax);

    Buffer<double> out_ref(out_shape);
    Buffer<int> argmax_ref(out_shape);
    maxpool_reference(s, in_d, out_ref, argmax_ref);
    check_close(out, out_ref, "output", 1e-7, 0);
    size_t wrong = 0;
    argmax_ref.for_each_element([&](const int *p) { wrong += argmax(p) != argmax_ref(p); });
    CHECK(wrong == 0);

    auto d_out = random_buffer(out_shape, 31);
    auto d_out_d = to_double(d_out);
    auto d_in = output_buffer({s.W, s.H, s.C, s.N});
    REQUIRE(backward(d_out, argmax, d_in) == 0);
    to_host(d_in);
    Buffer<double> d_in_ref(s.W, s.H, s.C, s.N);
    d_in_ref.fill(0.0);
    argmax_ref.for_each_element([&](int ox, int oy, int c, int n) {
        int at = argmax_ref(ox, oy, c, n);
        d_in_ref(at % s.W, at / s.W, c, n) += d_out_d(ox, oy, c, n);
    });
    check_close(d_in, d_in_ref, "d_input");

    if (finite_differences) {
        auto loss = [&] {
            Buffer<double> o(out_shape);
            Buffer<int> a(out_shape);
            maxpool_reference(s, in_d, o, a);
            return weighted_sum(o, d_out_d);
        };
        check_finite_differences(d_in, in_d, loss, "d_input", 1e-6, 24);
    }
}

template <typename Forward, typename Backward>
void check_maxpool(const PoolShape s, Forward forward, Backward backward) {
    const std::vector<int> in_shape = {s.W, s.H, s.C, s.N};
    SECTION("distinct values, finite differences") {
        check_maxpool_on(s, random_buffer(in_shape, 32), forward, backward, true);
    }
    SECTION("ties: values from {0, 1, 2}, the first maximum wins") {
        auto in = random_buffer(in_shape, 33, 0.0f, 3.0f);
        in.for_each_value([](float &v) { v = std::floor(v); });
        in.set_host_dirty();
        check_maxpool_on(s, in, forward, backward, false);
    }
    SECTION("all equal and negative: padding never wins") {
        auto in = random_buffer(in_shape, 34);
        in.fill(-5.0f);
        check_maxpool_on(s, in, forward, backward, false);
    }
}

template <typename Forward, typename Backward>
void check_avgpool(int N, int C, int H, int W, Forward forward, Backward backward) {
    auto in = random_buffer({W, H, C, N}, 35), d_out = random_buffer({C, N}, 36);
    auto in_d = to_double(in), d_out_d = to_double(d_out);
    auto out = output_buffer({C, N}), d_in = output_buffer({W, H, C, N});
    REQUIRE(forward(in, out) == 0);
    REQUIRE(backward(d_out, d_in) == 0);
    to_host(out, d_in);

    auto reference = [&] {
        Buffer<double> o(C, N);
        o.fill(0.0);
        in_d.for_each_element([&](int x, int y, int c, int n) { o(c, n) += in_d(x, y, c, n) / (H * W); });
        return o;
    };
    check_close(out, reference(), "output");
    Buffer<double> d_in_ref(W, H, C, N);
    d_in_ref.for_each_element([&](int x, int y, int c, int n) { d_in_ref(x, y, c, n) = d_out_d(c, n) / (H * W); });
    check_close(d_in, d_in_ref, "d_input");
    check_finite_differences(d_in, in_d, [&] { return weighted_sum(reference(), d_out_d); }, "d_input");
}

}  // namespace

#define HLNET_MAXPOOL_CASE(forward, backward, N, C, H, W, K, S, P) \
    SECTION(#forward) { check_maxpool({N, C, H, W, K, S, P}, forward, backward); }
#define HLNET_AVGPOOL_CASE(forward, backward, N, C, H, W) \
    SECTION(#forward) { check_avgpool(N, C, H, W, forward, backward); }

TEST_CASE("maxpool forward (argmax, ties) and backward gather", "[maxpool]") { HLNET_MAXPOOL_CASES(HLNET_MAXPOOL_CASE) }
TEST_CASE("global average pool forward and backward", "[avgpool]") { HLNET_AVGPOOL_CASES(HLNET_AVGPOOL_CASE) }

#define HLNET_MAXPOOL_NHWC_CASE(forward, backward, N, C, H, W, K, S, P, layout) \
    SECTION(#forward) { check_maxpool({N, C, H, W, K, S, P}, channels_last_call(forward), channels_last_call(backward)); }
#define HLNET_AVGPOOL_NHWC_CASE(forward, backward, N, C, H, W, layout) \
    SECTION(#forward) { check_avgpool(N, C, H, W, channels_last_call(forward), channels_last_call(backward)); }

TEST_CASE("maxpool forward and backward, NHWC", "[maxpool]") { HLNET_MAXPOOL_NHWC_CASES(HLNET_MAXPOOL_NHWC_CASE) }
TEST_CASE("global average pool forward and backward, NHWC", "[avgpool]") { HLNET_AVGPOOL_NHWC_CASES(HLNET_AVGPOOL_NHWC_CASE) }

// conv2d_forward / conv2d_backward_data / conv2d_backward_weights against a
// direct double-precision convolution, its adjoint, and finite differences.
#include <limits>

#include "op_cases.h"
#include "test_util.h"

using namespace hlnet_test;

namespace {

struct ConvShape {
    int N, CI, CO, H, W, K, S, P;
    int HO() const { return (H + 2 * P - K) / S + 1; }
    int WO() const { return (W + 2 * P - K) / S + 1; }
};

// Calls f(ox, oy, co, n, ix, iy, kx, ky, ci) for every tap that lands inside
// the input. Output pixels innermost: the references walk planes in memory
// order (10x faster at ResNet-18's real shapes than channels innermost).
template <typename F>
void for_each_tap(const ConvShape &s, F f) {
    const int ho = s.HO(), wo = s.WO();
    for (int n = 0; n < s.N; n++)
        for (int co = 0; co < s.CO; co++)
            for (int ci = 0; ci < s.CI; ci++)
                for (int ky = 0; ky < s.K; ky++)
                    for (int kx = 0; kx < s.K; kx++)
                        for (int oy = 0; oy < ho; oy++)
                            for (int ox = 0; ox < wo; ox++) {
                                int ix = ox * s.S + kx - s.P, iy = oy * s.S + ky - s.P;
                                if (ix >= 0 && ix < s.W && iy >= 0 && iy < s.H) f(ox, oy, co, n, ix, iy, kx, ky, ci);
                            }
}

// A dense 4-D buffer indexed with its strides computed once (Buffer's own
// operator() walks its dimension list on every access: 6x slower here).
struct Dense4 {
    double *p;
    int s1, s2, s3;
    explicit Dense4(const Buffer<double> &b)
        : p(const_cast<double *>(b.data())), s1(b.dim(1).stride()), s2(b.dim(2).stride()), s3(b.dim(3).stride()) {}
    double &operator()(int i, int j, int k, int l) const { return p[i + s1 * j + s2 * k + s3 * l]; }
};

Buffer<double> conv_reference(const ConvShape &s, const Buffer<double> &in, const Buffer<double> &w,
                              const Buffer<double> &b) {
    Buffer<double> out(s.WO(), s.HO(), s.CO, s.N);
    out.for_each_element([&](int ox, int oy, int co, int n) { out(ox, oy, co, n) = b(co); });
    const Dense4 o(out), wv(w), iv(in);
    for_each_tap(s, [&](int ox, int oy, int co, int n, int ix, int iy, int kx, int ky, int ci) {
        o(ox, oy, co, n) += wv(kx, ky, ci, co) * iv(ix, iy, ci, n);
    });
    return out;
}

// d_weight(kx, ky, ci, co) = sum of input * d_output over the taps that use it.
Buffer<double> weight_gradient_reference(const ConvShape &s, const Buffer<double> &in, const Buffer<double> &d_out) {
    Buffer<double> d_w(s.K, s.K, s.CI, s.CO);
    d_w.fill(0.0);
    const Dense4 d_w_v(d_w), in_v(in), d_out_v(d_out);
    for_each_tap(s, [&](int ox, int oy, int co, int n, int ix, int iy, int kx, int ky, int ci) {
        d_w_v(kx, ky, ci, co) += in_v(ix, iy, ci, n) * d_out_v(ox, oy, co, n);
    });
    return d_w;
}

// Every output against the double reference; the gradients also against
// finite differences where `finite_differences` (each sample costs two
// reference convolutions: the small shapes only). With `channels_last`, the
// activations and their gradients go in and come out NHWC.
template <typename Forward, typename BackwardData, typename BackwardWeights>
void check_conv(const ConvShape s, Forward forward, BackwardData backward_data, BackwardWeights backward_weights,
                bool finite_differences = true, bool channels_last = false) {
    auto in = random_buffer({s.W, s.H, s.CI, s.N}, 1);
    auto w = random_buffer({s.K, s.K, s.CI, s.CO}, 2);
    auto b = random_buffer({s.CO}, 3);
    auto d_out = random_buffer({s.WO(), s.HO(), s.CO, s.N}, 4);  // L = sum(d_out * output)
    auto in_d = to_double(in), w_d = to_double(w), b_d = to_double(b), d_out_d = to_double(d_out);
    // An activation as the pipelines take it, and a result of theirs as the references are.
    auto activation = [&](const std::vector<int> &shape, const Buffer<float> *values) {
        return channels_last ? channels_last_buffer(shape, values) : values ? *values : output_buffer(shape);
    };
    auto result = [&](const Buffer<float> &got) { return channels_last ? dense_copy(got) : got; };
    auto in_l = activation({s.W, s.H, s.CI, s.N}, &in), d_out_l = activation({s.WO(), s.HO(), s.CO, s.N}, &d_out);

    auto out_l = activation({s.WO(), s.HO(), s.CO, s.N}, nullptr);
    REQUIRE(forward(in_l, w, b, out_l) == 0);
    to_host(out_l);
    check_close(result(out_l), conv_reference(s, in_d, w_d, b_d), "output");

    auto d_in_l = activation({s.W, s.H, s.CI, s.N}, nullptr);
    auto d_w = output_buffer({s.K, s.K, s.CI, s.CO});
    auto d_b = output_buffer({s.CO});
    REQUIRE(backward_data(d_out_l, w, d_in_l) == 0);
    REQUIRE(backward_weights(d_out_l, in_l, d_w, d_b) == 0);
    to_host(d_in_l, d_w, d_b);
    const Buffer<float> d_in = result(d_in_l);

    // The reference formulas: the adjoint of the forward loop, as a scatter.
    Buffer<double> d_in_ref(s.W, s.H, s.CI, s.N), d_b_ref(s.CO);
    d_in_ref.fill(0.0);
    d_b_ref.fill(0.0);
    d_out_d.for_each_element([&](int ox, int oy, int co, int n) { d_b_ref(co) += d_out_d(ox, oy, co, n); });
    const Dense4 d_in_v(d_in_ref), w_v(w_d), d_out_v(d_out_d);
    for_each_tap(s, [&](int ox, int oy, int co, int n, int ix, int iy, int kx, int ky, int ci) {
        d_in_v(ix, iy, ci, n) += w_v(kx, ky, ci, co) * d_out_v(ox, oy, co, n);
    });
    check_close(d_in, d_in_ref, "d_input");
    check_close(d_w, weight_gradient_reference(s, in_d, d_out_d), "d_weight");
    check_close(d_b, d_b_ref, "d_bias");
    if (!finite_differences) return;

    auto loss = [&] { return weighted_sum(conv_reference(s, in_d, w_d, b_d), d_out_d); };
    check_finite_differences(d_in, in_d, loss, "d_input");
    check_finite_differences(d_w, w_d, loss, "d_weight");
    check_finite_differences(d_b, b_d, loss, "d_bias");
}

// bias_grad=0 (a conv in front of a batch norm, whose bias gradient is zero):
// d_weight as with the bias, and every element of d_bias written as zero over
// a buffer that starts as NaN.
template <typename BackwardWeights>
void check_no_bias_grad(const ConvShape s, BackwardWeights backward_weights) {
    auto in = random_buffer({s.W, s.H, s.CI, s.N}, 1);
    auto d_out = random_buffer({s.WO(), s.HO(), s.CO, s.N}, 4);
    auto d_w = output_buffer({s.K, s.K, s.CI, s.CO});
    auto d_b = output_buffer({s.CO});
    d_b.fill(std::numeric_limits<float>::quiet_NaN());
    REQUIRE(backward_weights(d_out, in, d_w, d_b) == 0);
    to_host(d_w, d_b);
    check_close(d_w, weight_gradient_reference(s, to_double(in), to_double(d_out)), "d_weight");
    d_b.for_each_element([&](int co) { CHECK(d_b(co) == 0.0f); });
}

}  // namespace

#define HLNET_CONV_CASE(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P) \
    SECTION(#forward) { check_conv({N, CI, CO, H, W, K, S, P}, forward, backward_data, backward_weights); }

TEST_CASE("conv2d: forward, backward data and backward weights", "[conv2d]") {
    HLNET_CONV2D_CASES(HLNET_CONV_CASE)
}

// The algorithm forced (Winograd or direct).
#define HLNET_CONV_ALGORITHM_CASE(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P, algorithm) \
    SECTION(#forward) { check_conv({N, CI, CO, H, W, K, S, P}, forward, backward_data, backward_weights); }

TEST_CASE("conv2d: Winograd and direct forced", "[conv2d]") {
    HLNET_CONV2D_ALGORITHMS_CASES(HLNET_CONV_ALGORITHM_CASE)
}

// ResNet-18's 3x3 stride-1 layers at their real channels and sizes (Winograd
// F(3x3, 3x3) on the CPU). No finite differences: the small cases above cover
// the formulas, and each sample would cost two reference convolutions here.
// check_close's normwise tolerance, 1e-5, is 3x the largest error measured
// here (Winograd against double, normwise: 0.9-3.1e-6 for the outputs and
// d_input, 0.7-1.4e-6 for d_weight, up to 2.5e-7 for d_bias; 3.1e-6 at 512
// channels, about sqrt(512*9) float roundings).
#define HLNET_CONV_RESNET_CASE(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P) \
    SECTION(#forward) {                                                                          \
        check_conv({N, CI, CO, H, W, K, S, P}, forward, backward_data, backward_weights, false);  \
    }

TEST_CASE("conv2d: ResNet-18's 3x3 layers at their real shapes", "[conv2d_resnet]") {
    HLNET_CONV2D_RESNET_CASES(HLNET_CONV_RESNET_CASE)
}

// Activations NHWC (layout=nhwc).
#define HLNET_CONV_NHWC_CASE(forward, backward_data, backward_weights, N, CI, CO, H, W, K, S, P, algorithm, layout) \
    SECTION(#forward) { check_conv({N, CI, CO, H, W, K, S, P}, forward, backward_data, backward_weights, true, true); }

TEST_CASE("conv2d: activations laid out NHWC", "[conv2d]") {
    HLNET_CONV2D_NHWC_CASES(HLNET_CONV_NHWC_CASE)
}

#define HLNET_CONV_NO_BIAS_GRAD_CASE(backward_weights, N, CI, CO, H, W, K, S, P, bias_grad) \
    SECTION(#backward_weights) { check_no_bias_grad({N, CI, CO, H, W, K, S, P}, backward_weights); }

TEST_CASE("conv2d: no bias gradient in front of a batch norm", "[conv2d]") {
    HLNET_CONV2D_NO_BIAS_GRAD_CASES(HLNET_CONV_NO_BIAS_GRAD_CASE)
}

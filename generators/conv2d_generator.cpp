// 2-D convolution with bias, NCHW / OIHW, zero padding, any K, S, P:
// conv2d_forward, conv2d_backward_data, conv2d_backward_weights.
#include "common.h"

namespace hlnet {
namespace {

// The one definition of the convolution's geometry, shared by all three
// pipelines: output pixel o reads input pixel o*S + k - P through tap k.
template <typename T>
class Conv2dBase : public Generator<T> {
public:
    GeneratorParam<int> N{"N", 1}, CI{"CI", 1}, CO{"CO", 1}, H{"H", 1}, W{"W", 1};
    GeneratorParam<int> K{"K", 3}, S{"S", 1}, P{"P", 0};

protected:
    Var x{"x"}, y{"y"}, c{"c"}, n{"n"}, kx{"kx"}, ky{"ky"}, ci{"ci"}, co{"co"};

    int WO() const { return window_out(W, K, S, P); }
    int HO() const { return window_out(H, K, S, P); }
    std::vector<int> input_shape() const { return {W, H, CI, N}; }
    std::vector<int> output_shape() const { return {WO(), HO(), CO, N}; }
    std::vector<int> weight_shape() const { return {K, K, CI, CO}; }

    Expr tap(Expr o, Expr k) const { return window_tap(o, k, S, P); }

    // The input with its zero padding: reads outside the image give 0.
    Func zero_padded(Func input, int width, int height, const char *name) const {
        Func padded{name};
        padded(x, y, c, n) = BoundaryConditions::constant_exterior(
            input, 0.0f, {{0, width}, {0, height}})(x, y, c, n);
        return padded;
    }
};

class Conv2dForward : public Conv2dBase<Conv2dForward> {
public:
    Input<Buffer<float, 4>> input{"input"};
    Input<Buffer<float, 4>> weight{"weight"};
    Input<Buffer<float, 1>> bias{"bias"};
    Output<Buffer<float, 4>> output{"output"};

    void generate() {
        padded = zero_padded(input, W, H, "padded");
        RDom r(0, K, 0, K, 0, CI, "r");  // (kx, ky, ci)
        conv(x, y, co, n) = bias(co);
        conv(x, y, co, n) += weight(r.x, r.y, r.z, co) * padded(tap(x, r.x), tap(y, r.y), r.z, n);
        output(x, y, co, n) = conv(x, y, co, n);
    }

    void schedule() {
        pin_shape(input, input_shape());
        pin_shape(weight, weight_shape());
        pin_shape(bias, {CO});
        pin_shape(output, output_shape());
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            conv.compute_at(output, schedule_flat_gpu(output, {x, y, co, n}));
        } else {
            output.parallel(n);
            conv.compute_at(output, co).vectorize(x, 8, TailStrategy::GuardWithIf);
            conv.update().vectorize(x, 8, TailStrategy::GuardWithIf);
        }
    }

private:
    Func padded, conv{"conv"};
};

// d_input(x) = sum over the taps k and output pixels o with o*S + k - P = x,
// written as a stride-aware gather (see gather_tap in common.h). Weights are
// zero-extended for taps k >= K and d_output for o outside [0, WO).
class Conv2dBackwardData : public Conv2dBase<Conv2dBackwardData> {
public:
    Input<Buffer<float, 4>> d_output{"d_output"};
    Input<Buffer<float, 4>> weight{"weight"};
    Output<Buffer<float, 4>> d_input{"d_input"};

    void generate() {
        const int taps = gather_taps(K, S);
        d_out_padded = zero_padded(d_output, WO(), HO(), "d_out_padded");
        weight_ext(kx, ky, ci, co) = BoundaryConditions::constant_exterior(
            weight, 0.0f, {{0, K}, {0, K}})(kx, ky, ci, co);
        RDom r(0, taps, 0, taps, 0, CO, "r");  // (qx, qy, co)
        Expr ox = gather_output(x, r.x, S, P), oy = gather_output(y, r.y, S, P);
        Expr tx = gather_tap(x, r.x, S, P), ty = gather_tap(y, r.y, S, P);
        grad(x, y, ci, n) = 0.0f;
        grad(x, y, ci, n) += weight_ext(tx, ty, ci, r.z) * d_out_padded(ox, oy, r.z, n);
        d_input(x, y, ci, n) = grad(x, y, ci, n);
    }

    void schedule() {
        pin_shape(d_output, output_shape());
        pin_shape(weight, weight_shape());
        pin_shape(d_input, input_shape());
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            grad.compute_at(d_input, schedule_flat_gpu(d_input, {x, y, ci, n}));
        } else {
            d_input.parallel(n);
            grad.compute_at(d_input, ci).vectorize(x, 8, TailStrategy::GuardWithIf);
            grad.update().vectorize(x, 8, TailStrategy::GuardWithIf);
        }
    }

private:
    Func d_out_padded, weight_ext{"weight_ext"}, grad{"grad"};
};

class Conv2dBackwardWeights : public Conv2dBase<Conv2dBackwardWeights> {
public:
    Input<Buffer<float, 4>> d_output{"d_output"};
    Input<Buffer<float, 4>> input{"input"};
    Output<Buffer<float, 4>> d_weight{"d_weight"};
    Output<Buffer<float, 1>> d_bias{"d_bias"};

    void generate() {
        padded = zero_padded(input, W, H, "padded");
        RDom r(0, WO(), 0, HO(), 0, N, "r");  // (ox, oy, n)
        grad_w(kx, ky, ci, co) = 0.0f;
        grad_w(kx, ky, ci, co) += d_output(r.x, r.y, co, r.z) * padded(tap(r.x, kx), tap(r.y, ky), ci, r.z);
        d_weight(kx, ky, ci, co) = grad_w(kx, ky, ci, co);
        grad_b(co) = 0.0f;
        grad_b(co) += d_output(r.x, r.y, co, r.z);
        d_bias(co) = grad_b(co);
    }

    void schedule() {
        pin_shape(d_output, output_shape());
        pin_shape(input, input_shape());
        pin_shape(d_weight, weight_shape());
        pin_shape(d_bias, {CO});
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            grad_w.compute_at(d_weight, schedule_flat_gpu(d_weight, {kx, ky, ci, co}));
            grad_b.compute_at(d_bias, schedule_flat_gpu(d_bias, {co}));
        } else {
            d_weight.parallel(co);
            grad_w.compute_at(d_weight, co);
            d_bias.parallel(co);
            grad_b.compute_at(d_bias, co);
        }
    }

private:
    Func padded, grad_w{"grad_w"}, grad_b{"grad_b"};
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::Conv2dForward, conv2d_forward)
HALIDE_REGISTER_GENERATOR(hlnet::Conv2dBackwardData, conv2d_backward_data)
HALIDE_REGISTER_GENERATOR(hlnet::Conv2dBackwardWeights, conv2d_backward_weights)

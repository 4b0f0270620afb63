// Pooling: maxpool_forward / maxpool_backward (K x K window, stride S, padding
// P with -infinity), avgpool_forward / avgpool_backward (global average).
#include "common.h"

namespace hlnet {
namespace {

template <typename T>
class MaxPoolBase : public Generator<T> {
public:
    GeneratorParam<int> N{"N", 1}, C{"C", 1}, H{"H", 1}, W{"W", 1};
    GeneratorParam<int> K{"K", 3}, S{"S", 2}, P{"P", 1};
    GeneratorParam<Layout> layout{"layout", Layout::NCHW, layout_names()};

protected:
    Var x{"x"}, y{"y"}, c{"c"}, n{"n"};

    bool channels_last() const { return layout == Layout::NHWC; }

    int WO() const { return window_out(W, K, S, P); }
    int HO() const { return window_out(H, K, S, P); }
    std::vector<int> input_shape() const { return {W, H, C, N}; }
    std::vector<int> output_shape() const { return {WO(), HO(), C, N}; }
};

class MaxPoolForward : public MaxPoolBase<MaxPoolForward> {
public:
    Input<Buffer<float, 4>> input{"input"};
    Output<Buffer<float, 4>> output{"output"};
    Output<Buffer<int32_t, 4>> argmax{"argmax"};

    void generate() {
        padded(x, y, c, n) = BoundaryConditions::constant_exterior(
            input, Float(32).min(), {{0, W}, {0, H}})(x, y, c, n);
        // Window in row-major order; a strict > keeps the first maximum (PyTorch's tie rule).
        r = RDom(0, K, 0, K, "r");
        Expr ix = window_tap(x, r.x, S, P), iy = window_tap(y, r.y, S, P);
        Expr v = padded(ix, iy, c, n);
        best(x, y, c, n) = Tuple(Float(32).min(), -1);
        best(x, y, c, n) = select(v > best(x, y, c, n)[0], Tuple(v, argmax_index(ix, iy, int(W))), best(x, y, c, n));
        output(x, y, c, n) = best(x, y, c, n)[0];
        argmax(x, y, c, n) = best(x, y, c, n)[1];
    }

    void schedule() {
        pin_activation(input, input_shape(), channels_last());
        pin_activation(output, output_shape(), channels_last());
        pin_activation(argmax, output_shape(), channels_last());
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            // best is a (value, index) Tuple read by both outputs: computed
            // once, at root, one thread per output element.
            schedule_flat_gpu(best, {x, y, c, n});
            flat_gpu_loop(best.update(), {x, y, c, n});
            schedule_flat_gpu(output, {x, y, c, n});
            schedule_flat_gpu(argmax, {x, y, c, n});
        } else if (channels_last()) {
            // An output pixel's channels as vectors, its window's taps
            // unrolled around them; both outputs in the same loops.
            for (Func f : {Func(output), Func(argmax)}) {
                f.reorder(c, x, y, n).parallel(n);
                vectorize_channels(f, c, C);
            }
            argmax.compute_with(output, x);
            best.compute_at(output, x);
            best.update().reorder(c, r.x, r.y, x, y, n).unroll(r.x).unroll(r.y);
            vectorize_channels(best, c, C);
            vectorize_channels(best.update(), c, C);
        } else {
            // Both outputs walk the same loops (compute_with) and best is
            // computed plane by plane inside them: the input is read once and
            // best never goes to memory (at root it cost 3 extra passes over a
            // tensor the size of the output). Planes are not fused, so that
            // best's bounds stay one plane.
            const int vec = std::max(channel_block(WO()), 8);
            Var xy{"xy"};
            for (Func f : {Func(output), Func(argmax)}) {
                f.fuse(x, y, xy).vectorize(xy, 16, TailStrategy::GuardWithIf).parallel(n);
            }
            argmax.compute_with(output, c);
            best.compute_at(output, c).vectorize(x, vec, TailStrategy::GuardWithIf);
            // The window's taps innermost and unrolled: a vector of outputs
            // keeps its running maximum in registers (taps outside x: 13.8 ms
            // on the 48x48 layer, taps inside: 6.6).
            best.update()
                .reorder(r.x, r.y, x, y, c, n)
                .vectorize(x, vec, TailStrategy::GuardWithIf)
                .unroll(r.x)
                .unroll(r.y);
        }
    }

private:
    RDom r;
    Func padded{"padded"}, best{"best"};
};

// d_input(i) = sum of d_output(o) over the windows o whose argmax is i: a gather
// over the ceil(K/S)^2 windows that can contain i (gather_output in common.h).
class MaxPoolBackward : public MaxPoolBase<MaxPoolBackward> {
public:
    Input<Buffer<float, 4>> d_output{"d_output"};
    Input<Buffer<int32_t, 4>> argmax{"argmax"};
    Output<Buffer<float, 4>> d_input{"d_input"};

    void generate() {
        Region out_box = {{0, WO()}, {0, HO()}};
        d_out_ext(x, y, c, n) = BoundaryConditions::constant_exterior(d_output, 0.0f, out_box)(x, y, c, n);
        argmax_ext(x, y, c, n) = BoundaryConditions::constant_exterior(argmax, -1, out_box)(x, y, c, n);
        d_input(x, y, c, n) = max_pool_gradient(d_out_ext, argmax_ext, x, y, c, n, W, K, S, P);
    }

    void schedule() {
        pin_activation(d_output, output_shape(), channels_last());
        pin_activation(argmax, output_shape(), channels_last());
        pin_activation(d_input, input_shape(), channels_last());
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            schedule_flat_gpu(d_input, {x, y, c, n});
        } else if (channels_last()) {
            schedule_pointwise_channels_last_cpu(d_input, x, y, c, n, C);
        } else {
            Var cn{"cn"};
            d_input.compute_root().fuse(c, n, cn).parallel(cn);
            schedule_max_pool_gradient_cpu(d_input, x, W, S);
        }
    }

private:
    Func d_out_ext{"d_out_ext"}, argmax_ext{"argmax_ext"};
};

// Global average pooling: (W, H, C, N) -> (C, N), each output the mean of its plane.
template <typename T>
class AvgPoolBase : public Generator<T> {
public:
    GeneratorParam<int> N{"N", 1}, C{"C", 1}, H{"H", 1}, W{"W", 1};
    GeneratorParam<Layout> layout{"layout", Layout::NCHW, layout_names()};

protected:
    Var x{"x"}, y{"y"}, c{"c"}, n{"n"};
    bool channels_last() const { return layout == Layout::NHWC; }
    float scale() const { return 1.0f / float(int(W) * int(H)); }  // d mean / d element
    std::vector<int> plane_shape() const { return {W, H, C, N}; }
    std::vector<int> pooled_shape() const { return {C, N}; }
};

class AvgPoolForward : public AvgPoolBase<AvgPoolForward> {
public:
    Input<Buffer<float, 4>> input{"input"};
    Output<Buffer<float, 2>> output{"output"};

    void generate() {
        RDom r(0, W, 0, H, "r");
        plane_sum(c, n) = 0.0f;
        plane_sum(c, n) += input(r.x, r.y, c, n);
        output(c, n) = plane_sum(c, n) * scale();
    }

    void schedule() {
        pin_activation(input, plane_shape(), channels_last());
        pin_shape(output, pooled_shape());
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            plane_sum.compute_at(output, schedule_flat_gpu(output, {c, n}, 64));
        } else {
            output.parallel(n);
            plane_sum.compute_at(output, n);
            if (channels_last()) {  // the channels as vectors, the pixels in memory order
                plane_sum.update().reorder(c, plane_sum.rvars(0)[0], plane_sum.rvars(0)[1]);
                for (Stage s : {Stage(output), Stage(plane_sum), plane_sum.update()}) vectorize_channels(s, c, C);
            }
        }
    }

private:
    Func plane_sum{"plane_sum"};
};

class AvgPoolBackward : public AvgPoolBase<AvgPoolBackward> {
public:
    Input<Buffer<float, 2>> d_output{"d_output"};
    Output<Buffer<float, 4>> d_input{"d_input"};

    void generate() { d_input(x, y, c, n) = d_output(c, n) * scale(); }

    void schedule() {
        pin_shape(d_output, pooled_shape());
        pin_activation(d_input, plane_shape(), channels_last());
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            schedule_flat_gpu(d_input, {x, y, c, n});
        } else if (channels_last()) {
            schedule_pointwise_channels_last_cpu(d_input, x, y, c, n, C);
        } else {
            schedule_pointwise_cpu(d_input, x, y, c, n, W, H);
        }
    }
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::MaxPoolForward, maxpool_forward)
HALIDE_REGISTER_GENERATOR(hlnet::MaxPoolBackward, maxpool_backward)
HALIDE_REGISTER_GENERATOR(hlnet::AvgPoolForward, avgpool_forward)
HALIDE_REGISTER_GENERATOR(hlnet::AvgPoolBackward, avgpool_backward)

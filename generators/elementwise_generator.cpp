// Pointwise ops over one activation (W, H, C, N): relu_forward, relu_backward, add.
#include "common.h"

namespace hlnet {
namespace {

// The shape and the schedule every pointwise op here shares.
template <typename T>
class Pointwise : public Generator<T> {
public:
    GeneratorParam<int> N{"N", 1}, C{"C", 1}, H{"H", 1}, W{"W", 1};
    GeneratorParam<Layout> layout{"layout", Layout::NCHW, layout_names()};

protected:
    Var x{"x"}, y{"y"}, c{"c"}, n{"n"};

    template <typename Buf>
    void pin(Buf &activation) const {
        pin_activation(activation, {W, H, C, N}, layout == Layout::NHWC);
    }

    void schedule_output(Func out) {
        if (this->using_autoscheduler()) return;
        if (this->get_target().has_gpu_feature()) {
            schedule_flat_gpu(out, {x, y, c, n});
        } else if (layout == Layout::NHWC) {
            schedule_pointwise_channels_last_cpu(out, x, y, c, n, C);
        } else {
            schedule_pointwise_cpu(out, x, y, c, n, W, H);
        }
    }
};

class ReluForward : public Pointwise<ReluForward> {
public:
    Input<Buffer<float, 4>> input{"input"};
    Output<Buffer<float, 4>> output{"output"};

    void generate() { output(x, y, c, n) = relu(input(x, y, c, n)); }
    void schedule() {
        pin(input);
        pin(output);
        schedule_output(output);
    }
};

class ReluBackward : public Pointwise<ReluBackward> {
public:
    Input<Buffer<float, 4>> output{"output"};
    Input<Buffer<float, 4>> d_output{"d_output"};
    Output<Buffer<float, 4>> d_input{"d_input"};

    void generate() { d_input(x, y, c, n) = relu_grad(output(x, y, c, n), d_output(x, y, c, n)); }
    void schedule() {
        pin(output);
        pin(d_output);
        pin(d_input);
        schedule_output(d_input);
    }
};

// The residual sum in the forward pass, and the sum of two gradients in the backward.
class Add : public Pointwise<Add> {
public:
    Input<Buffer<float, 4>> a{"a"};
    Input<Buffer<float, 4>> b{"b"};
    Output<Buffer<float, 4>> output{"output"};

    void generate() { output(x, y, c, n) = a(x, y, c, n) + b(x, y, c, n); }
    void schedule() {
        pin(a);
        pin(b);
        pin(output);
        schedule_output(output);
    }
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::ReluForward, relu_forward)
HALIDE_REGISTER_GENERATOR(hlnet::ReluBackward, relu_backward)
HALIDE_REGISTER_GENERATOR(hlnet::Add, add)

// Fully connected layer with bias: dense_forward, dense_backward.
// input (IN, N), weight (IN, OUT) (PyTorch [out, in]), output (OUT, N).
#include "common.h"

namespace hlnet {
namespace {

template <typename T>
class DenseBase : public Generator<T> {
public:
    GeneratorParam<int> N{"N", 1}, IN{"IN", 1}, OUT{"OUT", 1};

protected:
    Var i{"i"}, o{"o"}, n{"n"};

    // output(o, n) = bias(o) + sum_i weight(i, o) * input(i, n). Forward and
    // backward are the same product weight(i, o) * input(i, n) (with d_output
    // in place of the output), contracted over i, o or n: summed() each.
    Func summed(const char *name, const std::vector<Var> &vars, Expr e) const {
        Func f{name};
        f(vars) = 0.0f;
        f(vars) += e;
        return f;
    }

    // Schedules an output and computes its sum `s` inside it.
    void schedule_output(Func f, Func s, const std::vector<Var> &vars) {
        if (this->get_target().has_gpu_feature()) {
            s.compute_at(f, schedule_flat_gpu(f, vars, 64));
        } else {
            f.compute_root().parallel(vars.back());
            s.compute_at(f, vars.back());
        }
    }
};

class DenseForward : public DenseBase<DenseForward> {
public:
    Input<Buffer<float, 2>> input{"input"};
    Input<Buffer<float, 2>> weight{"weight"};
    Input<Buffer<float, 1>> bias{"bias"};
    Output<Buffer<float, 2>> output{"output"};

    void generate() {
        RDom r(0, IN, "r");
        dot = summed("dot", {o, n}, weight(r, o) * input(r, n));
        output(o, n) = bias(o) + dot(o, n);
    }

    void schedule() {
        pin_shape(input, {IN, N});
        pin_shape(weight, {IN, OUT});
        pin_shape(bias, {OUT});
        pin_shape(output, {OUT, N});
        if (using_autoscheduler()) return;
        schedule_output(output, dot, {o, n});
    }

private:
    Func dot;
};

class DenseBackward : public DenseBase<DenseBackward> {
public:
    Input<Buffer<float, 2>> d_output{"d_output"};
    Input<Buffer<float, 2>> input{"input"};
    Input<Buffer<float, 2>> weight{"weight"};
    Output<Buffer<float, 2>> d_input{"d_input"};
    Output<Buffer<float, 2>> d_weight{"d_weight"};
    Output<Buffer<float, 1>> d_bias{"d_bias"};

    void generate() {
        RDom ro(0, OUT, "ro"), rn(0, N, "rn");
        grad_in = summed("grad_in", {i, n}, weight(i, ro) * d_output(ro, n));
        grad_w = summed("grad_w", {i, o}, d_output(o, rn) * input(i, rn));
        grad_b = summed("grad_b", {o}, d_output(o, rn));
        d_input(i, n) = grad_in(i, n);
        d_weight(i, o) = grad_w(i, o);
        d_bias(o) = grad_b(o);
    }

    void schedule() {
        pin_shape(d_output, {OUT, N});
        pin_shape(input, {IN, N});
        pin_shape(weight, {IN, OUT});
        pin_shape(d_input, {IN, N});
        pin_shape(d_weight, {IN, OUT});
        pin_shape(d_bias, {OUT});
        if (using_autoscheduler()) return;
        schedule_output(d_input, grad_in, {i, n});
        schedule_output(d_weight, grad_w, {i, o});
        schedule_output(d_bias, grad_b, {o});
    }

private:
    Func grad_in, grad_w, grad_b;
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::DenseForward, dense_forward)
HALIDE_REGISTER_GENERATOR(hlnet::DenseBackward, dense_backward)

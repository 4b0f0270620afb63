// sgd_update over the flat parameter arena (PyTorch's SGD with momentum and
// weight decay): v' = momentum*v + g + weight_decay*p; p' = p - lr*v'.
#include "common.h"

namespace hlnet {
namespace {

class SgdUpdate : public Generator<SgdUpdate> {
public:
    GeneratorParam<int> SIZE{"SIZE", 1};

    Input<Buffer<float, 1>> params{"params"}, grads{"grads"}, velocity{"velocity"};
    Input<float> lr{"lr"}, momentum{"momentum"}, weight_decay{"weight_decay"};
    // The runtime updates in place (new_params is params, new_velocity is
    // velocity). So the two results are one Tuple-valued output, whose C
    // arguments are new_params_velocity_0 (new_params) and _1 (new_velocity):
    // one stage loads an element's inputs before it stores either result. Two
    // separate outputs fused with compute_with also work on the CPU, but on a
    // GPU their bounds inference over-reads the inputs past SIZE.
    Output<Buffer<void, 1>> new_params_velocity{"new_params_velocity", {Float(32), Float(32)}};

    void generate() {
        Expr v = momentum * velocity(i) + grads(i) + weight_decay * params(i);
        new_params_velocity(i) = Tuple(params(i) - lr * v, v);
    }

    void schedule() {
        pin_shape(params, {SIZE});
        pin_shape(grads, {SIZE});
        pin_shape(velocity, {SIZE});
        lr.set_estimate(0.05f);
        momentum.set_estimate(0.9f);
        weight_decay.set_estimate(0.0f);
        // Only the first buffer of a Tuple output takes min and extent; the
        // second is bound to the same ones.
        auto buffers = Func(new_params_velocity).output_buffers();
        pin_shape(buffers[0], {SIZE});
        buffers[1].dim(0).set_stride(1);
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            schedule_flat_gpu(new_params_velocity, {i});
        } else {
            // GuardWithIf, never ShiftInwards: recomputing an element in place
            // would read its already-updated value.
            Var outer{"outer"}, vec{"vec"};
            new_params_velocity.split(i, outer, i, 4096, TailStrategy::GuardWithIf)
                .split(i, i, vec, SIZE >= 16 ? 16 : 1, TailStrategy::GuardWithIf)
                .vectorize(vec)
                .parallel(outer);
        }
    }

private:
    Var i{"i"};
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::SgdUpdate, sgd_update)

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
    Output<Buffer<float, 1>> new_params{"new_params"}, new_velocity{"new_velocity"};

    void generate() {
        // The runtime updates in place (new_params aliases params, new_velocity
        // velocity), so both outputs come from one Tuple stage: each element's
        // inputs are loaded before either of its outputs is stored.
        Expr v = momentum * velocity(i) + grads(i) + weight_decay * params(i);
        step(i) = Tuple(params(i) - lr * v, v);
        new_params(i) = step(i)[0];
        new_velocity(i) = step(i)[1];
    }

    void schedule() {
        pin_shape(params, {SIZE});
        pin_shape(grads, {SIZE});
        pin_shape(velocity, {SIZE});
        lr.set_estimate(0.05f);
        momentum.set_estimate(0.9f);
        weight_decay.set_estimate(0.0f);
        pin_shape(new_params, {SIZE});
        pin_shape(new_velocity, {SIZE});
        if (using_autoscheduler()) return;
        // Both outputs and the step share one loop nest (compute_with), with
        // the step computed inside it per vector.
        Var inner{"inner"};
        if (get_target().has_gpu_feature()) {
            Var block{"block"}, thread{"thread"};
            new_params.gpu_tile(i, block, thread, 256, TailStrategy::GuardWithIf);
            new_velocity.gpu_tile(i, block, thread, 256, TailStrategy::GuardWithIf);
            new_velocity.compute_with(new_params, thread);
            step.compute_at(new_params, thread);
        } else {
            Var outer{"outer"}, vec{"vec"};
            const int vector = SIZE >= 16 ? 16 : 1;
            const int chunk = 4096;
            for (Func f : {Func(new_params), Func(new_velocity)}) {
                f.split(i, outer, i, chunk, TailStrategy::GuardWithIf)
                    .split(i, i, vec, vector, TailStrategy::GuardWithIf)
                    .vectorize(vec)
                    .parallel(outer);
            }
            new_velocity.compute_with(new_params, i);
            step.compute_at(new_params, i).vectorize(i);
        }
    }

private:
    Var i{"i"};
    Func step{"step"};
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::SgdUpdate, sgd_update)

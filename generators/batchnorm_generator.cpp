// Batch normalisation over (n, h, w) per channel, optionally fused with a
// residual add and a ReLU after it: batchnorm_train, batchnorm_eval,
// batchnorm_backward. Semantics: docs/INTERNALS.md.
#include "common.h"

namespace hlnet {
namespace {

constexpr float kEps = 1e-5f;
constexpr float kMomentum = 0.1f;  // weight of the batch in the running statistics

// Shape, flags and the normalisation itself, shared by the three pipelines.
template <typename T>
class BatchNormBase : public Generator<T> {
public:
    GeneratorParam<int> N{"N", 1}, C{"C", 1}, H{"H", 1}, W{"W", 1};
    GeneratorParam<int> relu{"relu", 0, 0, 1}, residual{"residual", 0, 0, 1};

protected:
    Var x{"x"}, y{"y"}, c{"c"}, n{"n"};

    int M() const { return int(N) * int(H) * int(W); }  // elements per channel
    std::vector<int> shape() const { return {W, H, C, N}; }
    RDom over_channel(const char *name) const { return RDom(0, W, 0, H, 0, N, name); }

    // Per-channel sums over (x, y, n) of the values of e(x, y, c, n), all in
    // one pass over memory: s(c)[i] = sum of e(.., c, ..)[i].
    Func channel_sums(const Func &e, const char *name) const {
        Func s{name};
        RDom r = over_channel((std::string(name) + "_r").c_str());
        s(c) = Tuple(std::vector<Expr>(e.outputs(), 0.0f));
        std::vector<Expr> sums;
        for (int i = 0; i < e.outputs(); i++) sums.push_back(s(c)[i] + e(r.x, r.y, c, r.z)[i]);
        s(c) = Tuple(sums);
        return s;
    }

    Expr normalized(Expr v, Expr mean, Expr inv_std) const { return (v - mean) * inv_std; }

    // gamma * xhat + beta, then + residual, then ReLU, as the flags say.
    Expr bn_output(Expr xhat, Expr gamma, Expr beta, Expr res) const {
        Expr v = gamma * xhat + beta;
        if (residual) v += res;
        return relu ? hlnet::relu(v) : v;
    }

    void schedule_pointwise(Func f) {
        if (this->get_target().has_gpu_feature()) {
            schedule_flat_gpu(f, {x, y, c, n});
        } else {
            schedule_pointwise_cpu(f, x, y, c, n, W, H);
        }
    }
    void schedule_channel_sum(Func s) { schedule_channel_sum_over_planes(s, c, W, N, this->get_target()); }

    void schedule_vector(Func f) {
        if (this->get_target().has_gpu_feature()) {
            schedule_flat_gpu(f, {c}, 64);
        } else {
            f.compute_root();
        }
    }
};

class BatchNormTrain : public BatchNormBase<BatchNormTrain> {
public:
    Input<Buffer<float, 4>> input{"input"};
    Input<Buffer<float, 1>> gamma{"gamma"}, beta{"beta"};
    Input<Buffer<float, 1>> running_mean{"running_mean"}, running_var{"running_var"};
    Output<Buffer<float, 4>> output{"output"};
    Output<Buffer<float, 1>> saved_mean{"saved_mean"}, saved_inv_std{"saved_inv_std"};
    Output<Buffer<float, 1>> new_running_mean{"new_running_mean"}, new_running_var{"new_running_var"};

    void configure() {
        if (residual) residual_in = add_input<Buffer<float, 4>>("residual_in");  // "residual" names the flag
    }

    void generate() {
        // One pass for both moments, about a shift: one element of the channel.
        // Summing d = x - shift and d*d loses nothing to cancellation while
        // the shift is within a few standard deviations of the mean (it is one
        // of the channel's own values), unlike sum(x) and sum(x*x).
        shift(c) = input(0, 0, c, 0);
        deviation(x, y, c, n) = Tuple(input(x, y, c, n) - shift(c),
                                      (input(x, y, c, n) - shift(c)) * (input(x, y, c, n) - shift(c)));
        moments = channel_sums(deviation, "moments");
        Expr mean_deviation = moments(c)[0] / M();
        mean(c) = shift(c) + mean_deviation;
        // Biased: what normalises the batch.
        variance(c) = max(moments(c)[1] / M() - mean_deviation * mean_deviation, 0.0f);
        inv_std(c) = 1.0f / sqrt(variance(c) + kEps);

        Expr res = residual ? (*residual_in)(x, y, c, n) : Expr();
        output(x, y, c, n) = bn_output(normalized(input(x, y, c, n), mean(c), inv_std(c)), gamma(c), beta(c), res);
        saved_mean(c) = mean(c);
        saved_inv_std(c) = inv_std(c);
        new_running_mean(c) = (1 - kMomentum) * running_mean(c) + kMomentum * mean(c);
        // The running variance takes the unbiased batch variance (PyTorch).
        const float unbias = float(M()) / float(std::max(M() - 1, 1));
        new_running_var(c) = (1 - kMomentum) * running_var(c) + kMomentum * variance(c) * unbias;
    }

    void schedule() {
        pin_shape(input, shape());
        for (auto *v : {&gamma, &beta, &running_mean, &running_var}) pin_shape(*v, {C});
        if (residual) pin_shape(*residual_in, shape());
        pin_shape(output, shape());
        for (auto *v : {&saved_mean, &saved_inv_std, &new_running_mean, &new_running_var}) pin_shape(*v, {C});
        if (using_autoscheduler()) return;
        schedule_vector(shift);
        schedule_channel_sum(moments);
        schedule_vector(mean);
        schedule_vector(inv_std);
        schedule_pointwise(output);
        for (Func f : {Func(saved_mean), Func(saved_inv_std), Func(new_running_mean), Func(new_running_var)}) {
            schedule_vector(f);
        }
    }

private:
    Input<Buffer<float, 4>> *residual_in = nullptr;
    Func shift{"shift"}, moments, mean{"mean"}, deviation{"deviation"}, variance{"variance"}, inv_std{"inv_std"};
};

class BatchNormEval : public BatchNormBase<BatchNormEval> {
public:
    Input<Buffer<float, 4>> input{"input"};
    Input<Buffer<float, 1>> gamma{"gamma"}, beta{"beta"};
    Input<Buffer<float, 1>> running_mean{"running_mean"}, running_var{"running_var"};
    Output<Buffer<float, 4>> output{"output"};

    void configure() {
        if (residual) residual_in = add_input<Buffer<float, 4>>("residual_in");  // "residual" names the flag
    }

    void generate() {
        inv_std(c) = 1.0f / sqrt(running_var(c) + kEps);
        Expr res = residual ? (*residual_in)(x, y, c, n) : Expr();
        output(x, y, c, n) = bn_output(normalized(input(x, y, c, n), running_mean(c), inv_std(c)), gamma(c), beta(c), res);
    }

    void schedule() {
        pin_shape(input, shape());
        for (auto *v : {&gamma, &beta, &running_mean, &running_var}) pin_shape(*v, {C});
        if (residual) pin_shape(*residual_in, shape());
        pin_shape(output, shape());
        if (using_autoscheduler()) return;
        schedule_vector(inv_std);
        schedule_pointwise(output);
    }

private:
    Input<Buffer<float, 4>> *residual_in = nullptr;
    Func inv_std{"inv_std"};
};

// Inputs are added in configure() because the optional `output` (the ReLU mask)
// sits in the middle of the contract's argument list.
class BatchNormBackward : public BatchNormBase<BatchNormBackward> {
public:
    Output<Buffer<float, 4>> d_input{"d_input"};
    Output<Buffer<float, 1>> d_gamma{"d_gamma"}, d_beta{"d_beta"};

    void configure() {
        input = add_input<Buffer<float, 4>>("input");
        if (relu) output = add_input<Buffer<float, 4>>("output");
        d_output = add_input<Buffer<float, 4>>("d_output");
        gamma = add_input<Buffer<float, 1>>("gamma");
        saved_mean = add_input<Buffer<float, 1>>("saved_mean");
        saved_inv_std = add_input<Buffer<float, 1>>("saved_inv_std");
        if (residual) d_residual = add_output<Buffer<float, 4>>("d_residual");
    }

    void generate() {
        auto &in = *input;
        Func mean = *saved_mean, inv_std = *saved_inv_std;
        dz(x, y, c, n) = relu ? relu_grad((*output)(x, y, c, n), (*d_output)(x, y, c, n))
                              : (*d_output)(x, y, c, n);
        xhat(x, y, c, n) = normalized(in(x, y, c, n), mean(c), inv_std(c));
        dz_terms(x, y, c, n) = Tuple(dz(x, y, c, n), dz(x, y, c, n) * xhat(x, y, c, n));
        sums = channel_sums(dz_terms, "sums");  // (d_beta, d_gamma) in one pass
        d_beta(c) = sums(c)[0];
        d_gamma(c) = sums(c)[1];
        d_input(x, y, c, n) = (*gamma)(c) * inv_std(c) / M() *
                              (M() * dz(x, y, c, n) - sums(c)[0] - xhat(x, y, c, n) * sums(c)[1]);
        if (residual) (*d_residual)(x, y, c, n) = dz(x, y, c, n);
    }

    void schedule() {
        pin_shape(*input, shape());
        if (relu) pin_shape(*output, shape());
        pin_shape(*d_output, shape());
        for (auto *v : {gamma, saved_mean, saved_inv_std}) pin_shape(*v, {C});
        pin_shape(d_input, shape());
        pin_shape(d_gamma, {C});
        pin_shape(d_beta, {C});
        if (residual) pin_shape(*d_residual, shape());
        if (using_autoscheduler()) return;
        schedule_channel_sum(sums);
        schedule_vector(d_beta);
        schedule_vector(d_gamma);
        if (get_target().has_gpu_feature()) {
            schedule_pointwise(d_input);
            if (residual) schedule_pointwise(*d_residual);
        } else {
            Var plane = schedule_pointwise_cpu(d_input, x, y, c, n, W, H);
            if (residual) {
                // dz plane by plane right after d_input's: output and d_output
                // come from cache instead of a second pass over memory.
                schedule_pointwise_cpu(*d_residual, x, y, c, n, W, H);
                d_residual->compute_with(d_input, plane);
            }
        }
    }

private:
    Input<Buffer<float, 4>> *input = nullptr, *output = nullptr, *d_output = nullptr;
    Input<Buffer<float, 1>> *gamma = nullptr, *saved_mean = nullptr, *saved_inv_std = nullptr;
    Output<Buffer<float, 4>> *d_residual = nullptr;
    Func dz{"dz"}, xhat{"xhat"}, dz_terms{"dz_terms"}, sums;
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::BatchNormTrain, batchnorm_train)
HALIDE_REGISTER_GENERATOR(hlnet::BatchNormEval, batchnorm_eval)
HALIDE_REGISTER_GENERATOR(hlnet::BatchNormBackward, batchnorm_backward)

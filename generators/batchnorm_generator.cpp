// Batch normalisation over (n, h, w) per channel, optionally fused with a
// residual add and a ReLU after it: batchnorm_train, batchnorm_eval,
// batchnorm_backward. Semantics: docs/INTERNALS.md.
//
// split=1 is the two-part form of a build for several data-parallel ranks:
// batchnorm_moments and batchnorm_backward_sums compute this rank's per-channel
// statistics, the runtime combines them across ranks (or not: per-rank batch
// norm), and batchnorm_train / batchnorm_backward take the combined ones.
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
    GeneratorParam<int> split{"split", 0, 0, 1};  // the statistics are inputs, computed by the split's first part
    GeneratorParam<Layout> layout{"layout", Layout::NCHW, layout_names()};

protected:
    Var x{"x"}, y{"y"}, c{"c"}, n{"n"};

    int M() const { return int(N) * int(H) * int(W); }  // elements per channel
    std::vector<int> shape() const { return {W, H, C, N}; }
    bool channels_last() const { return layout == Layout::NHWC; }
    bool gpu() const { return this->get_target().has_gpu_feature(); }
    template <typename Buf>
    void pin(Buf &activation) const {
        pin_activation(activation, shape(), channels_last());
    }
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

    // The batch mean and biased variance of `in` per channel, in one pass.
    // Summing d = x - shift and d*d loses nothing to cancellation while the
    // shift is within a few standard deviations of the mean (it is one of the
    // channel's own values), unlike sum(x) and sum(x*x).
    void define_batch_moments(const Func &in) {
        shift(c) = in(0, 0, c, 0);
        deviation(x, y, c, n) = Tuple(in(x, y, c, n) - shift(c), (in(x, y, c, n) - shift(c)) * (in(x, y, c, n) - shift(c)));
        moments = channel_sums(deviation, "moments");
        Expr mean_deviation = moments(c)[0] / M();
        batch_mean(c) = shift(c) + mean_deviation;
        batch_variance(c) = max(moments(c)[1] / M() - mean_deviation * mean_deviation, 0.0f);
    }
    void schedule_batch_moments() {
        schedule_vector(shift);
        schedule_channel_sum(moments);
    }

    // dz (d_output through the ReLU mask), xhat, and their per-channel sums
    // (d_beta, d_gamma) in one pass; dz_output, the same as dz, for the
    // pass that writes d_input, from d_out_again (d_out itself, or a second
    // copy of a Func that each pass computes for itself). Without a residual
    // the mask comes from the forward's own expression, gamma * xhat + beta
    // (the same float operations on the same saved statistics), instead of
    // reading the output back: one tensor fewer in each pass.
    void define_gradient_sums(const Func &in, const Func &out, const Func &d_out, const Func &d_out_again,
                              const Func &mean, const Func &inv_std, const Func &gamma, const Func &beta) {
        xhat(x, y, c, n) = normalized(in(x, y, c, n), mean(c), inv_std(c));
        auto masked = [&](const Func &d) -> Expr {
            if (!relu) return d(x, y, c, n);
            Expr mask_value = residual ? out(x, y, c, n) : gamma(c) * xhat(x, y, c, n) + beta(c);
            return relu_grad(mask_value, d(x, y, c, n));
        };
        dz(x, y, c, n) = masked(d_out);
        dz_output(x, y, c, n) = masked(d_out_again);
        dz_terms(x, y, c, n) = Tuple(dz(x, y, c, n), dz(x, y, c, n) * xhat(x, y, c, n));
        sums = channel_sums(dz_terms, "sums");
    }

    Expr normalized(Expr v, Expr mean, Expr inv_std) const { return (v - mean) * inv_std; }

    // gamma * xhat + beta, then + residual, then ReLU, as the flags say.
    Expr bn_output(Expr xhat, Expr gamma, Expr beta, Expr res) const {
        Expr v = gamma * xhat + beta;
        if (residual) v += res;
        return relu ? hlnet::relu(v) : v;
    }

    // Returns the CPU's loop over planes (NCHW) or images (NHWC), for
    // producers computed plane by plane or image by image.
    Var schedule_pointwise(Func f) {
        if (gpu()) {
            schedule_flat_gpu(f, {x, y, c, n});
            return n;
        }
        if (channels_last()) return schedule_pointwise_channels_last_cpu(f, x, y, c, n, C);
        return schedule_pointwise_cpu(f, x, y, c, n, W, H);
    }
    // Returns where the NCHW CPU schedule walks one plane of the sum's input,
    // for producers computed there (else inlined).
    LoopLevel schedule_channel_sum(Func s) {
        if (channels_last() && !gpu()) {
            schedule_channel_sum_channels_last(s, c, C, N);
            return LoopLevel::inlined();
        }
        Func partial = schedule_channel_sum_over_planes(s, c, W, N, this->get_target());
        return partial.defined() ? LoopLevel(partial, c) : LoopLevel::inlined();
    }

    void schedule_vector(Func f) {
        if (gpu()) {
            schedule_flat_gpu(f, {c}, 64);
        } else {
            f.compute_root();
        }
    }

    Func shift{"shift"}, deviation{"deviation"}, moments, batch_mean{"moments_mean"}, batch_variance{"moments_variance"};
    Func dz{"dz"}, dz_output{"dz_output"}, xhat{"xhat"}, dz_terms{"dz_terms"}, sums;
};

// The first part of the split forward: this rank's batch statistics.
class BatchNormMoments : public BatchNormBase<BatchNormMoments> {
public:
    Input<Buffer<float, 4>> input{"input"};
    Output<Buffer<float, 1>> mean{"mean"}, variance{"variance"};  // variance biased

    void generate() {
        define_batch_moments(input);
        mean(c) = batch_mean(c);
        variance(c) = batch_variance(c);
    }

    void schedule() {
        pin(input);
        pin_shape(mean, {C});
        pin_shape(variance, {C});
        if (using_autoscheduler()) return;
        schedule_batch_moments();
        schedule_vector(mean);
        schedule_vector(variance);
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
        if (split) {
            given_mean = add_input<Buffer<float, 1>>("batch_mean");
            given_variance = add_input<Buffer<float, 1>>("batch_variance");
            given_unbiased = add_input<Buffer<float, 1>>("batch_unbiased_variance");
        }
    }

    void generate() {
        // The biased variance normalises the batch; the running variance takes
        // the unbiased one (PyTorch), over the values the statistics came from.
        Expr unbiased;
        if (split) {
            mean(c) = (*given_mean)(c);
            variance(c) = (*given_variance)(c);
            unbiased = (*given_unbiased)(c);
        } else {
            define_batch_moments(input);
            mean(c) = batch_mean(c);
            variance(c) = batch_variance(c);
            unbiased = variance(c) * (float(M()) / float(std::max(M() - 1, 1)));
        }
        inv_std(c) = 1.0f / sqrt(variance(c) + kEps);

        Expr res = residual ? (*residual_in)(x, y, c, n) : Expr();
        output(x, y, c, n) = bn_output(normalized(input(x, y, c, n), mean(c), inv_std(c)), gamma(c), beta(c), res);
        saved_mean(c) = mean(c);
        saved_inv_std(c) = inv_std(c);
        new_running_mean(c) = (1 - kMomentum) * running_mean(c) + kMomentum * mean(c);
        new_running_var(c) = (1 - kMomentum) * running_var(c) + kMomentum * unbiased;
    }

    void schedule() {
        pin(input);
        for (auto *v : {&gamma, &beta, &running_mean, &running_var}) pin_shape(*v, {C});
        if (residual) pin(*residual_in);
        if (split)
            for (auto *v : {given_mean, given_variance, given_unbiased}) pin_shape(*v, {C});
        pin(output);
        for (auto *v : {&saved_mean, &saved_inv_std, &new_running_mean, &new_running_var}) pin_shape(*v, {C});
        if (using_autoscheduler()) return;
        if (!split) schedule_batch_moments();
        schedule_vector(mean);
        schedule_vector(inv_std);
        schedule_pointwise(output);
        for (Func f : {Func(saved_mean), Func(saved_inv_std), Func(new_running_mean), Func(new_running_var)}) {
            schedule_vector(f);
        }
    }

private:
    Input<Buffer<float, 4>> *residual_in = nullptr;
    Input<Buffer<float, 1>> *given_mean = nullptr, *given_variance = nullptr, *given_unbiased = nullptr;
    Func mean{"mean"}, variance{"variance"}, inv_std{"inv_std"};
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
        pin(input);
        for (auto *v : {&gamma, &beta, &running_mean, &running_var}) pin_shape(*v, {C});
        if (residual) pin(*residual_in);
        pin(output);
        if (using_autoscheduler()) return;
        schedule_vector(inv_std);
        schedule_pointwise(output);
    }

private:
    Input<Buffer<float, 4>> *residual_in = nullptr;
    Func inv_std{"inv_std"};
};

// The ReLU mask's inputs sit in the middle of both backward argument lists,
// so their inputs are added in configure(): `output` where a residual was
// added before the ReLU, else gamma and beta to recompute it.
//
// pool_k > 0: the batch norm's output feeds only a pool_k x pool_k max pool
// (stride pool_s, padding pool_p), whose gradient the backward computes
// itself, plane by plane, from the pool's d_output and argmax (its inputs
// pool_d_output and pool_argmax, in place of d_output): the full-size
// gradient between the two is never written to memory and read back twice.
template <typename T>
class BatchNormGradientBase : public BatchNormBase<T> {
public:
    GeneratorParam<int> pool_k{"pool_k", 0}, pool_s{"pool_s", 1}, pool_p{"pool_p", 0};

protected:
    using BatchNormBase<T>::relu;
    using BatchNormBase<T>::residual;
    using BatchNormBase<T>::x;
    using BatchNormBase<T>::y;
    using BatchNormBase<T>::c;
    using BatchNormBase<T>::n;
    bool mask_from_output() const { return relu && residual; }
    bool mask_recomputed() const { return relu && !residual; }
    bool pooled() const { return pool_k > 0; }
    std::vector<int> pooled_shape() const {
        return {window_out(this->W, pool_k, pool_s, pool_p), window_out(this->H, pool_k, pool_s, pool_p), this->C, this->N};
    }
    void add_gradient_inputs(bool with_gamma) {
        if (pooled() && residual) {  // the pool would then read the sum, which this pipeline does not make
            std::fprintf(stderr, "batchnorm: pool_k > 0 needs residual=0\n");
            std::exit(1);
        }
        input = this->template add_input<Buffer<float, 4>>("input");
        if (mask_from_output()) output = this->template add_input<Buffer<float, 4>>("output");
        if (pooled()) {
            pool_d_output = this->template add_input<Buffer<float, 4>>("pool_d_output");
            pool_argmax = this->template add_input<Buffer<int32_t, 4>>("pool_argmax");
        } else {
            d_output = this->template add_input<Buffer<float, 4>>("d_output");
        }
        if (with_gamma || mask_recomputed()) gamma = this->template add_input<Buffer<float, 1>>("gamma");
        if (mask_recomputed()) beta = this->template add_input<Buffer<float, 1>>("beta");
        saved_mean = this->template add_input<Buffer<float, 1>>("saved_mean");
        saved_inv_std = this->template add_input<Buffer<float, 1>>("saved_inv_std");
    }
    void define_sums() {
        if (pooled()) {
            define_pool_gradient(pool_gradient);
            define_pool_gradient(pool_gradient_again);
        }
        Func d_out = pooled() ? pool_gradient : Func(*d_output), d_out_again = pooled() ? pool_gradient_again : d_out;
        this->define_gradient_sums(*input, output ? Func(*output) : Func(), d_out, d_out_again, *saved_mean,
                                   *saved_inv_std, gamma ? Func(*gamma) : Func(), beta ? Func(*beta) : Func());
    }
    // The max pool's gradient at this batch norm's output. NCHW on the CPU,
    // plane by plane: each pooled value added at its argmax (a scatter of a
    // quarter of the plane's pixels into it, in L1; the gather of
    // max_pool_gradient took 8.4 of the 36 ms at 48x48 under the profiler,
    // once per pass, its loads strided along x). NHWC, and on the GPU: that
    // gather, inlined, 16 channels a vector on the CPU (the stem's backward
    // took 32.8 ms with the scatter image by image, against 26.8 NCHW).
    bool pool_gradient_gathered() const { return this->gpu() || this->channels_last(); }
    void define_pool_gradient(Func f) {
        const std::vector<int> box = pooled_shape();
        if (pool_gradient_gathered()) {
            Region outside = {{0, box[0]}, {0, box[1]}};
            Func d_pool = BoundaryConditions::constant_exterior(*pool_d_output, 0.0f, outside);
            Func argmax = BoundaryConditions::constant_exterior(*pool_argmax, -1, outside);
            f(x, y, c, n) = max_pool_gradient(d_pool, argmax, x, y, c, n, this->W, pool_k, pool_s, pool_p);
        } else {
            RDom r(0, box[0], 0, box[1], std::string(f.name()) + "_r");
            Expr at = clamp((*pool_argmax)(r.x, r.y, c, n), 0, int(this->W) * int(this->H) - 1);
            const auto [ax, ay] = argmax_pixel(at, int(this->W));
            f(x, y, c, n) = 0.0f;
            f(ax, ay, c, n) += (*pool_d_output)(r.x, r.y, c, n);
        }
    }
    void pin_gradient_inputs() {
        this->pin(*input);
        if (output) this->pin(*output);
        if (d_output) this->pin(*d_output);
        if (pooled()) {
            pin_activation(*pool_d_output, pooled_shape(), this->channels_last());
            pin_activation(*pool_argmax, pooled_shape(), this->channels_last());
        }
        for (auto *v : {gamma, beta, saved_mean, saved_inv_std})
            if (v) pin_shape(*v, {this->C});
    }
    // The pool's gradient scattered plane by plane inside the pass that
    // reads it (NCHW on the CPU; inlined otherwise): `level` is where that
    // pass walks one plane. The scatter stays serial: two windows may share
    // an argmax.
    void schedule_pool_gradient_at(Func f, LoopLevel level) {
        if (!pooled() || pool_gradient_gathered()) return;
        f.compute_at(level).vectorize(x, std::max(channel_block(this->W), 8), TailStrategy::GuardWithIf);
        f.update().unscheduled();
    }

    GeneratorInput<Buffer<float, 4>> *input = nullptr, *output = nullptr, *d_output = nullptr, *pool_d_output = nullptr;
    GeneratorInput<Buffer<int32_t, 4>> *pool_argmax = nullptr;
    GeneratorInput<Buffer<float, 1>> *gamma = nullptr, *beta = nullptr, *saved_mean = nullptr, *saved_inv_std = nullptr;
    Func pool_gradient{"pool_gradient"}, pool_gradient_again{"pool_gradient_again"};
};

class BatchNormBackward : public BatchNormGradientBase<BatchNormBackward> {
public:
    Output<Buffer<float, 4>> d_input{"d_input"};

    void configure() {
        add_gradient_inputs(true);
        if (split) {
            mean_dz = add_input<Buffer<float, 1>>("mean_dz");
            mean_dz_xhat = add_input<Buffer<float, 1>>("mean_dz_xhat");
        } else {
            d_gamma = add_output<Buffer<float, 1>>("d_gamma");
            d_beta = add_output<Buffer<float, 1>>("d_beta");
        }
        if (residual) d_residual = add_output<Buffer<float, 4>>("d_residual");
    }

    void generate() {
        define_sums();
        Func inv_std = *saved_inv_std;
        if (split) {  // the sums' means come combined across ranks
            d_input(x, y, c, n) = (*gamma)(c) * inv_std(c) *
                                  (dz_output(x, y, c, n) - (*mean_dz)(c) - xhat(x, y, c, n) * (*mean_dz_xhat)(c));
        } else {
            (*d_beta)(c) = sums(c)[0];
            (*d_gamma)(c) = sums(c)[1];
            d_input(x, y, c, n) = (*gamma)(c) * inv_std(c) / M() *
                                  (M() * dz_output(x, y, c, n) - sums(c)[0] - xhat(x, y, c, n) * sums(c)[1]);
        }
        if (residual) (*d_residual)(x, y, c, n) = dz_output(x, y, c, n);
    }

    void schedule() {
        pin_gradient_inputs();
        pin(d_input);
        if (split) {
            pin_shape(*mean_dz, {C});
            pin_shape(*mean_dz_xhat, {C});
        } else {
            pin_shape(*d_gamma, {C});
            pin_shape(*d_beta, {C});
        }
        if (residual) pin(*d_residual);
        if (using_autoscheduler()) return;
        if (!split) {
            schedule_pool_gradient_at(pool_gradient, schedule_channel_sum(sums));
            schedule_vector(*d_beta);
            schedule_vector(*d_gamma);
        }
        const Var plane = schedule_pointwise(d_input);
        schedule_pool_gradient_at(pool_gradient_again, LoopLevel(d_input, plane));
        if (residual) {
            schedule_pointwise(*d_residual);
            // CPU: dz plane by plane (or image by image) right after d_input's:
            // output and d_output come from cache instead of a second pass
            // over memory.
            if (!gpu()) d_residual->compute_with(d_input, plane);
        }
    }

private:
    Input<Buffer<float, 1>> *mean_dz = nullptr, *mean_dz_xhat = nullptr;
    Output<Buffer<float, 1>> *d_gamma = nullptr, *d_beta = nullptr;
    Output<Buffer<float, 4>> *d_residual = nullptr;
};

// The first part of the split backward: this rank's sums, which are also its
// d_gamma and d_beta (the trainer averages those like every gradient).
class BatchNormBackwardSums : public BatchNormGradientBase<BatchNormBackwardSums> {
public:
    Output<Buffer<float, 1>> d_gamma{"d_gamma"}, d_beta{"d_beta"};

    void configure() { add_gradient_inputs(false); }

    void generate() {
        define_sums();
        d_beta(c) = sums(c)[0];
        d_gamma(c) = sums(c)[1];
    }

    void schedule() {
        pin_gradient_inputs();
        pin_shape(d_gamma, {C});
        pin_shape(d_beta, {C});
        if (using_autoscheduler()) return;
        schedule_pool_gradient_at(pool_gradient, schedule_channel_sum(sums));
        schedule_vector(d_beta);
        schedule_vector(d_gamma);
    }
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::BatchNormTrain, batchnorm_train)
HALIDE_REGISTER_GENERATOR(hlnet::BatchNormEval, batchnorm_eval)
HALIDE_REGISTER_GENERATOR(hlnet::BatchNormBackward, batchnorm_backward)
HALIDE_REGISTER_GENERATOR(hlnet::BatchNormMoments, batchnorm_moments)
HALIDE_REGISTER_GENERATOR(hlnet::BatchNormBackwardSums, batchnorm_backward_sums)

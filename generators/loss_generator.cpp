// softmax_cross_entropy: mean loss over the first `valid` rows, its gradient,
// and the number of rows whose arg-max is the label. logits (K, N), labels (N).
#include "common.h"

namespace hlnet {
namespace {

class SoftmaxCrossEntropy : public Generator<SoftmaxCrossEntropy> {
public:
    GeneratorParam<int> N{"N", 1}, K{"K", 10};

    Input<Buffer<float, 2>> logits{"logits"};
    Input<Buffer<int32_t, 1>> labels{"labels"};
    Input<int> valid{"valid"};  // rows n >= valid are padding: no loss, zero gradient
    Output<Buffer<float, 1>> loss{"loss"};
    Output<Buffer<float, 2>> d_logits{"d_logits"};
    Output<Buffer<int32_t, 1>> correct{"correct"};

    void generate() {
        RDom rk(0, K, "rk");
        Expr label = clamp(labels(n), 0, K - 1);
        // log-sum-exp with the row maximum subtracted, for range.
        row_max(n) = Float(32).min();
        row_max(n) = max(row_max(n), logits(rk, n));
        exp_sum(n) = 0.0f;
        exp_sum(n) += exp(logits(rk, n) - row_max(n));
        log_z(n) = row_max(n) + log(exp_sum(n));
        row_loss(n) = log_z(n) - logits(label, n);
        // First maximum wins ties (strict >), as torch.argmax does.
        prediction(n) = Tuple(Float(32).min(), 0);
        prediction(n) = select(logits(rk, n) > prediction(n)[0], Tuple(logits(rk, n), rk), prediction(n));

        Expr count = max(valid, 1);
        RDom rn(0, N, "rn");
        rn.where(rn < valid);
        total_loss() = 0.0f;
        total_loss() += row_loss(rn);
        total_correct() = 0;
        total_correct() += select(prediction(rn)[1] == clamp(labels(rn), 0, K - 1), 1, 0);

        Expr softmax = exp(logits(k, n) - log_z(n));
        Expr onehot = select(k == label, 1.0f, 0.0f);
        d_logits(k, n) = select(n < valid, (softmax - onehot) / cast<float>(count), 0.0f);
        loss(i) = total_loss() / cast<float>(count);
        correct(i) = total_correct();
    }

    void schedule() {
        pin_shape(logits, {K, N});
        pin_shape(labels, {N});
        valid.set_estimate(N);
        pin_shape(loss, {1});
        pin_shape(d_logits, {K, N});
        pin_shape(correct, {1});
        if (using_autoscheduler()) return;
        // Tiny (K x N): per-row stages at root, one GPU thread per row.
        const bool gpu = get_target().has_gpu_feature();
        for (Func f : {row_max, exp_sum, log_z, prediction}) {
            if (gpu) {
                schedule_flat_gpu(f, {n}, 64);
                for (int u = 0; u < f.num_update_definitions(); u++) flat_gpu_loop(f.update(u), {n}, 64);
            } else {
                f.compute_root();
            }
        }
        if (gpu) {
            schedule_flat_gpu(d_logits, {k, n}, 64);
            for (Func f : {total_loss, total_correct}) {
                f.compute_root().gpu_single_thread();
                f.update().gpu_single_thread();
            }
            schedule_flat_gpu(loss, {i}, 1);
            schedule_flat_gpu(correct, {i}, 1);
        } else {
            for (Func f : {total_loss, total_correct}) f.compute_root();
        }
    }

private:
    Var k{"k"}, n{"n"}, i{"i"};
    Func row_max{"row_max"}, exp_sum{"exp_sum"}, log_z{"log_z"}, row_loss{"row_loss"};
    Func prediction{"prediction"}, total_loss{"total_loss"}, total_correct{"total_correct"};
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::SoftmaxCrossEntropy, softmax_cross_entropy)

// batchnorm_train / batchnorm_eval / batchnorm_backward, every relu/residual
// combination, against a double-precision reference, the contract's backward
// formula and finite differences through the batch statistics; the split form
// (batchnorm_moments, batchnorm_backward_sums and the two given the
// statistics) against the same references.
#include <tuple>
#include <type_traits>

#include "op_cases.h"
#include "test_util.h"

using namespace hlnet_test;

namespace {

constexpr double kEps = 1e-5;

struct BnShape {
    int N, C, H, W;
    bool relu, residual;
    int M() const { return N * H * W; }
    std::vector<int> shape() const { return {W, H, C, N}; }
};

struct BnStats {
    Buffer<double> mean, var;  // biased batch variance
};

BnStats batch_stats(const BnShape &s, const Buffer<double> &x) {
    BnStats st{Buffer<double>(s.C), Buffer<double>(s.C)};
    st.mean.fill(0.0);
    st.var.fill(0.0);
    for (int n = 0; n < s.N; n++)
        for (int c = 0; c < s.C; c++)
            for (int y = 0; y < s.H; y++)
                for (int xx = 0; xx < s.W; xx++) st.mean(c) += x(xx, y, c, n) / s.M();
    for (int n = 0; n < s.N; n++)
        for (int c = 0; c < s.C; c++)
            for (int y = 0; y < s.H; y++)
                for (int xx = 0; xx < s.W; xx++) {
                    double d = x(xx, y, c, n) - st.mean(c);
                    st.var(c) += d * d / s.M();
                }
    return st;
}

// gamma * (x - mean) / sqrt(var + eps) + beta, + residual, ReLU, as the flags say.
Buffer<double> bn_reference(const BnShape &s, const Buffer<double> &x, const Buffer<double> &mean,
                            const Buffer<double> &var, const Buffer<double> &gamma, const Buffer<double> &beta,
                            const Buffer<double> &residual) {
    Buffer<double> out(s.shape());
    out.for_each_element([&](int xx, int y, int c, int n) {
        double v = gamma(c) * (x(xx, y, c, n) - mean(c)) / std::sqrt(var(c) + kEps) + beta(c);
        if (s.residual) v += residual(xx, y, c, n);
        out(xx, y, c, n) = s.relu ? std::max(v, 0.0) : v;
    });
    return out;
}

// The contract's backward in double, from dz (d_output through the ReLU
// mask): d_beta = sum of dz, d_gamma = sum of dz * xhat, and
// d_input = gamma * inv_std / M * (M * dz - d_beta - xhat * d_gamma).
struct BnGradients {
    Buffer<double> d_input, d_gamma, d_beta;
};

template <typename XHat>
BnGradients bn_backward_reference(const BnShape &s, const Buffer<double> &dz, XHat xhat, const Buffer<double> &gamma,
                                  const Buffer<double> &inv_std) {
    BnGradients g{Buffer<double>(s.shape()), Buffer<double>(s.C), Buffer<double>(s.C)};
    g.d_gamma.fill(0.0);
    g.d_beta.fill(0.0);
    dz.for_each_element([&](int xx, int y, int c, int n) {
        g.d_beta(c) += dz(xx, y, c, n);
        g.d_gamma(c) += dz(xx, y, c, n) * xhat(xx, y, c, n);
    });
    g.d_input.for_each_element([&](int xx, int y, int c, int n) {
        g.d_input(xx, y, c, n) = gamma(c) * inv_std(c) / s.M() *
                                 (s.M() * dz(xx, y, c, n) - g.d_beta(c) - xhat(xx, y, c, n) * g.d_gamma(c));
    });
    return g;
}

template <bool Relu, bool Residual, typename Train, typename Eval, typename Backward>
void check_batchnorm(const BnShape s, Train train, Eval eval, Backward backward) {
    const std::vector<int> vec = {s.C};
    auto x = random_buffer(s.shape(), 11, -1.0f, 3.0f);  // mean far from 0
    auto gamma = random_buffer(vec, 12, 0.5f, 1.5f);
    auto beta = random_buffer(vec, 13);
    auto running_mean = random_buffer(vec, 14);
    auto running_var = random_buffer(vec, 15, 0.5f, 1.5f);
    auto residual = random_buffer(s.shape(), 16);
    auto d_out = random_buffer(s.shape(), 17);  // L = sum(d_out * output)
    auto x_d = to_double(x), gamma_d = to_double(gamma), beta_d = to_double(beta);
    auto rm_d = to_double(running_mean), rv_d = to_double(running_var);
    auto residual_d = to_double(residual), d_out_d = to_double(d_out);

    // Training forward. The running statistics are updated in place, as the runtime does.
    auto out = output_buffer(s.shape());
    auto saved_mean = output_buffer(vec), saved_inv_std = output_buffer(vec);
    int rc;
    if constexpr (Residual) {
        rc = train(x, gamma, beta, running_mean, running_var, residual, out, saved_mean, saved_inv_std,
                   running_mean, running_var);
    } else {
        rc = train(x, gamma, beta, running_mean, running_var, out, saved_mean, saved_inv_std, running_mean,
                   running_var);
    }
    REQUIRE(rc == 0);
    to_host(out, saved_mean, saved_inv_std, running_mean, running_var);

    BnStats st = batch_stats(s, x_d);
    Buffer<double> inv_std(s.C), new_rm(s.C), new_rv(s.C);
    for (int c = 0; c < s.C; c++) {
        inv_std(c) = 1 / std::sqrt(st.var(c) + kEps);
        new_rm(c) = 0.9 * rm_d(c) + 0.1 * st.mean(c);
        new_rv(c) = 0.9 * rv_d(c) + 0.1 * st.var(c) * s.M() / std::max(s.M() - 1, 1);
    }
    auto out_ref = bn_reference(s, x_d, st.mean, st.var, gamma_d, beta_d, residual_d);
    check_close(out, out_ref, "output");
    check_close(saved_mean, st.mean, "saved_mean");
    check_close(saved_inv_std, inv_std, "saved_inv_std");
    check_close(running_mean, new_rm, "new_running_mean (in place)");
    check_close(running_var, new_rv, "new_running_var (in place)");

    // Inference forward, with the updated running statistics.
    auto out_eval = output_buffer(s.shape());
    if constexpr (Residual) {
        rc = eval(x, gamma, beta, running_mean, running_var, residual, out_eval);
    } else {
        rc = eval(x, gamma, beta, running_mean, running_var, out_eval);
    }
    REQUIRE(rc == 0);
    to_host(out_eval);
    check_close(out_eval, bn_reference(s, x_d, to_double(running_mean), to_double(running_var), gamma_d, beta_d, residual_d),
                "eval output");

    // Backward.
    auto d_in = output_buffer(s.shape()), d_residual = output_buffer(s.shape());
    auto d_gamma = output_buffer(vec), d_beta = output_buffer(vec);
    if constexpr (Relu && Residual) {
        rc = backward(x, out, d_out, gamma, saved_mean, saved_inv_std, d_in, d_gamma, d_beta, d_residual);
    } else if constexpr (Relu) {  // the mask recomputed from gamma and beta
        rc = backward(x, d_out, gamma, beta, saved_mean, saved_inv_std, d_in, d_gamma, d_beta);
    } else if constexpr (Residual) {
        rc = backward(x, d_out, gamma, saved_mean, saved_inv_std, d_in, d_gamma, d_beta, d_residual);
    } else {
        rc = backward(x, d_out, gamma, saved_mean, saved_inv_std, d_in, d_gamma, d_beta);
    }
    REQUIRE(rc == 0);
    to_host(d_in, d_gamma, d_beta, d_residual);

    // The contract's formula, in double, through the mask of the forward's
    // float output: where the backward recomputes the mask, it must agree
    // with the forward element by element.
    Buffer<double> dz(s.shape());
    auto xhat = [&](int xx, int y, int c, int n) { return (x_d(xx, y, c, n) - st.mean(c)) * inv_std(c); };
    dz.for_each_element([&](int xx, int y, int c, int n) {
        dz(xx, y, c, n) = (!s.relu || out(xx, y, c, n) > 0) ? d_out_d(xx, y, c, n) : 0.0;
    });
    const BnGradients ref = bn_backward_reference(s, dz, xhat, gamma_d, inv_std);
    check_close(d_in, ref.d_input, "d_input");
    check_close(d_gamma, ref.d_gamma, "d_gamma");
    check_close(d_beta, ref.d_beta, "d_beta");
    if (s.residual) check_close(d_residual, dz, "d_residual");

    // Finite differences of the training forward (batch statistics included).
    auto loss = [&] {
        BnStats t = batch_stats(s, x_d);
        return weighted_sum(bn_reference(s, x_d, t.mean, t.var, gamma_d, beta_d, residual_d), d_out_d);
    };
    check_finite_differences(d_in, x_d, loss, "d_input", 1e-5);
    check_finite_differences(d_gamma, gamma_d, loss, "d_gamma", 1e-5);
    check_finite_differences(d_beta, beta_d, loss, "d_beta", 1e-5);
    if (s.residual) check_finite_differences(d_residual, residual_d, loss, "d_residual", 1e-5);
}

}  // namespace

#define HLNET_BN_CASE(train, eval, backward, N, C, H, W, RELU, RESIDUAL) \
    SECTION(#train) { check_batchnorm<RELU, RESIDUAL>({N, C, H, W, RELU, RESIDUAL}, train, eval, backward); }

TEST_CASE("batchnorm: train (running statistics in place), eval, backward", "[batchnorm]") {
    HLNET_BATCHNORM_CASES(HLNET_BN_CASE)
}

// Built with layout=nhwc: every 4-D argument goes in and comes back NHWC.
#define HLNET_BN_NHWC_CASE(train, eval, backward, N, C, H, W, RELU, RESIDUAL, layout)                   \
    SECTION(#train) {                                                                                  \
        check_batchnorm<RELU, RESIDUAL>({N, C, H, W, RELU, RESIDUAL}, channels_last_call(train),         \
                                        channels_last_call(eval), channels_last_call(backward));         \
    }

TEST_CASE("batchnorm: train, eval, backward, NHWC", "[batchnorm]") { HLNET_BATCHNORM_NHWC_CASES(HLNET_BN_NHWC_CASE) }

namespace {

// The buffer as an argument when the flag is on, else no argument.
template <bool On>
auto optional_arg(Buffer<float> &b) {
    if constexpr (On) {
        return std::make_tuple(b.raw_buffer());
    } else {
        return std::tuple<>();
    }
}

template <bool Relu, bool Residual, typename Moments, typename Train, typename Sums, typename Backward>
void check_batchnorm_split(const BnShape s, Moments moments, Train train, Sums sums, Backward backward) {
    const std::vector<int> vec = {s.C};
    auto x = random_buffer(s.shape(), 21, -1.0f, 3.0f);
    auto gamma = random_buffer(vec, 22, 0.5f, 1.5f), beta = random_buffer(vec, 23);
    auto running_mean = random_buffer(vec, 24), running_var = random_buffer(vec, 25, 0.5f, 1.5f);
    auto residual = random_buffer(s.shape(), 26), d_out = random_buffer(s.shape(), 27);
    auto x_d = to_double(x), gamma_d = to_double(gamma), rm_d = to_double(running_mean), rv_d = to_double(running_var);
    const BnStats st = batch_stats(s, x_d);

    // Part one of the forward: this batch's moments.
    auto rank_mean = output_buffer(vec), rank_variance = output_buffer(vec);
    REQUIRE(moments(x, rank_mean, rank_variance) == 0);
    to_host(rank_mean, rank_variance);
    check_close(rank_mean, st.mean, "batchnorm_moments mean");
    check_close(rank_variance, st.var, "batchnorm_moments variance");

    // Part two, given statistics that are not this batch's own (as another
    // rank's would make them), and an unbiased variance that is not a
    // multiple of the biased one: each input must be used for what it is.
    Buffer<double> mean(s.C), var(s.C), unbiased(s.C), inv_std(s.C);
    auto mean_f = output_buffer(vec), var_f = output_buffer(vec), unbiased_f = output_buffer(vec);
    for (int c = 0; c < s.C; c++) {
        mean_f(c) = float(st.mean(c) + 0.25), var_f(c) = float(st.var(c) * 1.5 + 0.1);
        unbiased_f(c) = var_f(c) + 0.3f;
        mean(c) = mean_f(c), var(c) = var_f(c), unbiased(c) = unbiased_f(c);
        inv_std(c) = 1 / std::sqrt(var(c) + kEps);
    }
    for (auto *b : {&mean_f, &var_f, &unbiased_f}) b->set_host_dirty();
    auto out = output_buffer(s.shape()), saved_mean = output_buffer(vec), saved_inv_std = output_buffer(vec);
    auto new_rm = output_buffer(vec), new_rv = output_buffer(vec);
    int rc = std::apply(train, std::tuple_cat(std::make_tuple(x.raw_buffer(), gamma.raw_buffer(), beta.raw_buffer(),
                                                              running_mean.raw_buffer(), running_var.raw_buffer()),
                                              optional_arg<Residual>(residual),
                                              std::make_tuple(mean_f.raw_buffer(), var_f.raw_buffer(), unbiased_f.raw_buffer(),
                                                              out.raw_buffer(), saved_mean.raw_buffer(),
                                                              saved_inv_std.raw_buffer(), new_rm.raw_buffer(),
                                                              new_rv.raw_buffer())));
    REQUIRE(rc == 0);
    to_host(out, saved_mean, saved_inv_std, new_rm, new_rv);
    const auto out_ref = bn_reference(s, x_d, mean, var, gamma_d, to_double(beta), to_double(residual));
    Buffer<double> rm_ref(s.C), rv_ref(s.C);
    for (int c = 0; c < s.C; c++) {
        rm_ref(c) = 0.9 * rm_d(c) + 0.1 * mean(c);
        rv_ref(c) = 0.9 * rv_d(c) + 0.1 * unbiased(c);
    }
    check_close(out, out_ref, "split output");
    check_close(saved_mean, mean, "split saved_mean");
    check_close(saved_inv_std, inv_std, "split saved_inv_std");
    check_close(new_rm, rm_ref, "split new_running_mean");
    check_close(new_rv, rv_ref, "split new_running_var");

    // Backward, part one: the sums, which are d_gamma and d_beta.
    auto d_out_d = to_double(d_out);
    Buffer<double> dz(s.shape());
    auto xhat = [&](int xx, int y, int c, int n) { return (x_d(xx, y, c, n) - mean(c)) * inv_std(c); };
    dz.for_each_element([&](int xx, int y, int c, int n) {
        dz(xx, y, c, n) = (!s.relu || out(xx, y, c, n) > 0) ? d_out_d(xx, y, c, n) : 0.0;
    });
    const BnGradients sums_ref = bn_backward_reference(s, dz, xhat, gamma_d, inv_std);
    const Buffer<double> &d_gamma_ref = sums_ref.d_gamma, &d_beta_ref = sums_ref.d_beta;
    auto d_gamma = output_buffer(vec), d_beta = output_buffer(vec);
    rc = std::apply(sums, std::tuple_cat(std::make_tuple(x.raw_buffer()), optional_arg<Relu && Residual>(out),
                                         std::make_tuple(d_out.raw_buffer()), optional_arg<Relu && !Residual>(gamma),
                                         optional_arg<Relu && !Residual>(beta),
                                         std::make_tuple(saved_mean.raw_buffer(),
                                                         saved_inv_std.raw_buffer(), d_gamma.raw_buffer(),
                                                         d_beta.raw_buffer())));
    REQUIRE(rc == 0);
    to_host(d_gamma, d_beta);
    check_close(d_gamma, d_gamma_ref, "batchnorm_backward_sums d_gamma");
    check_close(d_beta, d_beta_ref, "batchnorm_backward_sums d_beta");

    // Part two, given means of the sums that are not this batch's own.
    auto mean_dz = output_buffer(vec), mean_dz_xhat = output_buffer(vec);
    for (int c = 0; c < s.C; c++) {
        mean_dz(c) = float(d_beta_ref(c) / s.M() + 0.2);
        mean_dz_xhat(c) = float(d_gamma_ref(c) / s.M() - 0.1);
    }
    mean_dz.set_host_dirty();
    mean_dz_xhat.set_host_dirty();
    auto d_in = output_buffer(s.shape()), d_residual = output_buffer(s.shape());
    rc = std::apply(backward, std::tuple_cat(std::make_tuple(x.raw_buffer()), optional_arg<Relu && Residual>(out),
                                             std::make_tuple(d_out.raw_buffer(), gamma.raw_buffer()),
                                             optional_arg<Relu && !Residual>(beta),
                                             std::make_tuple(saved_mean.raw_buffer(), saved_inv_std.raw_buffer(),
                                                             mean_dz.raw_buffer(), mean_dz_xhat.raw_buffer(),
                                                             d_in.raw_buffer()),
                                             optional_arg<Residual>(d_residual)));
    REQUIRE(rc == 0);
    to_host(d_in, d_residual);
    Buffer<double> d_in_ref(s.shape());
    d_in_ref.for_each_element([&](int xx, int y, int c, int n) {
        d_in_ref(xx, y, c, n) =
            gamma_d(c) * inv_std(c) * (dz(xx, y, c, n) - double(mean_dz(c)) - xhat(xx, y, c, n) * double(mean_dz_xhat(c)));
    });
    check_close(d_in, d_in_ref, "split d_input");
    if (s.residual) check_close(d_residual, dz, "split d_residual");
}

}  // namespace

#define HLNET_BN_SPLIT_CASE(moments, train, sums, backward, N, C, H, W, RELU, RESIDUAL, SPLIT) \
    SECTION(#train) { check_batchnorm_split<RELU, RESIDUAL>({N, C, H, W, RELU, RESIDUAL}, moments, train, sums, backward); }

TEST_CASE("batchnorm split form: moments, train given them, backward sums, backward given their means", "[batchnorm]") {
    HLNET_BATCHNORM_SPLIT_CASES(HLNET_BN_SPLIT_CASE)
}

#define HLNET_BN_SPLIT_NHWC_CASE(moments, train, sums, backward, N, C, H, W, RELU, RESIDUAL, SPLIT, layout)    \
    SECTION(#train) {                                                                                      \
        check_batchnorm_split<RELU, RESIDUAL>({N, C, H, W, RELU, RESIDUAL}, channels_last_call(moments),     \
                                              channels_last_call(train), channels_last_call(sums),           \
                                              channels_last_call(backward));                                 \
    }

TEST_CASE("batchnorm split form, NHWC", "[batchnorm]") { HLNET_BATCHNORM_SPLIT_NHWC_CASES(HLNET_BN_SPLIT_NHWC_CASE) }

namespace {

// pool_k > 0: the batch norm's backward computes the gradient of the max pool
// after it from the pool's d_output and argmax. The argmax is a random pixel
// of each window (in the plane), so that overlapping windows share pixels.
template <bool Relu, typename Backward>
void check_batchnorm_pool(const BnShape s, int K, int S, int P, Backward backward) {
    const std::vector<int> vec = {s.C};
    const int wo = (s.W + 2 * P - K) / S + 1, ho = (s.H + 2 * P - K) / S + 1;
    auto x = random_buffer(s.shape(), 31, -1.0f, 3.0f);
    auto gamma = random_buffer(vec, 32, 0.5f, 1.5f), beta = random_buffer(vec, 33);
    auto d_pool = random_buffer({wo, ho, s.C, s.N}, 34);
    auto x_d = to_double(x);
    const BnStats st = batch_stats(s, x_d);
    auto mean = output_buffer(vec), inv_std = output_buffer(vec);
    for (int c = 0; c < s.C; c++) mean(c) = float(st.mean(c)), inv_std(c) = float(1 / std::sqrt(st.var(c) + kEps));
    mean.set_host_dirty();
    inv_std.set_host_dirty();
    Buffer<int32_t> argmax(wo, ho, s.C, s.N);
    std::mt19937 rng(35);
    auto in_window = [&](int o, int extent) {
        const int lo = std::max(o * S - P, 0), hi = std::min(o * S - P + K - 1, extent - 1);
        return lo + int(rng() % unsigned(hi - lo + 1));
    };
    argmax.for_each_element([&](int ox, int oy, int c, int n) { argmax(ox, oy, c, n) = in_window(oy, s.H) * s.W + in_window(ox, s.W); });
    argmax.set_host_dirty();

    auto d_in = output_buffer(s.shape()), d_gamma = output_buffer(vec), d_beta = output_buffer(vec);
    int rc;
    if constexpr (Relu) {  // beta recomputes the ReLU's mask
        rc = backward(x, d_pool, argmax, gamma, beta, mean, inv_std, d_in, d_gamma, d_beta);
    } else {
        rc = backward(x, d_pool, argmax, gamma, mean, inv_std, d_in, d_gamma, d_beta);
    }
    REQUIRE(rc == 0);
    to_host(d_in, d_gamma, d_beta);

    // The pool's gradient, scattered; then the contract's formula, in double.
    Buffer<double> d_y(s.shape()), dz(s.shape());
    d_y.fill(0.0);
    argmax.for_each_element([&](int ox, int oy, int c, int n) {
        const int at = argmax(ox, oy, c, n);
        d_y(at % s.W, at / s.W, c, n) += d_pool(ox, oy, c, n);
    });
    auto xhat = [&](int xx, int y, int c, int n) { return (x_d(xx, y, c, n) - double(mean(c))) * double(inv_std(c)); };
    dz.for_each_element([&](int xx, int y, int c, int n) {
        const bool on = !s.relu || double(gamma(c)) * xhat(xx, y, c, n) + double(beta(c)) > 0;
        dz(xx, y, c, n) = on ? d_y(xx, y, c, n) : 0.0;
    });
    const BnGradients ref = bn_backward_reference(s, dz, xhat, to_double(gamma), to_double(inv_std));
    check_close(d_in, ref.d_input, "d_input");
    check_close(d_gamma, ref.d_gamma, "d_gamma");
    check_close(d_beta, ref.d_beta, "d_beta");
}

}  // namespace

#define HLNET_BN_POOL_CASE(backward, N, C, H, W, RELU, RESIDUAL, K, S, P) \
    SECTION(#backward) { check_batchnorm_pool<RELU>({N, C, H, W, RELU, RESIDUAL}, K, S, P, backward); }

TEST_CASE("batchnorm backward through the max pool after it", "[batchnorm]") {
    HLNET_BATCHNORM_POOL_CASES(HLNET_BN_POOL_CASE)
}

#define HLNET_BN_POOL_NHWC_CASE(backward, N, C, H, W, RELU, RESIDUAL, K, S, P, layout) \
    SECTION(#backward) {                                                                \
        check_batchnorm_pool<RELU>({N, C, H, W, RELU, RESIDUAL}, K, S, P, channels_last_call(backward)); \
    }

TEST_CASE("batchnorm backward through the max pool after it, NHWC", "[batchnorm]") {
    HLNET_BATCHNORM_POOL_NHWC_CASES(HLNET_BN_POOL_NHWC_CASE)
}

// softmax_cross_entropy: mean loss over the valid rows, d_logits, correct count,
// with valid < N, and arg-max ties (lowest class wins).
#include <limits>

#include "op_cases.h"
#include "test_util.h"

using namespace hlnet_test;

namespace {

struct LossRef {
    double loss;
    int correct;
    Buffer<double> d_logits;
};

LossRef loss_reference(int N, int K, int valid, const Buffer<double> &logits, const Buffer<int32_t> &labels) {
    LossRef r{0.0, 0, Buffer<double>(K, N)};
    r.d_logits.fill(0.0);
    for (int n = 0; n < valid; n++) {
        double m = -std::numeric_limits<double>::infinity();
        int arg = 0;
        for (int k = 0; k < K; k++)
            if (logits(k, n) > m) m = logits(k, n), arg = k;
        double z = 0;
        for (int k = 0; k < K; k++) z += std::exp(logits(k, n) - m);
        double log_z = m + std::log(z);
        r.loss += (log_z - logits(labels(n), n)) / valid;
        r.correct += arg == labels(n);
        for (int k = 0; k < K; k++)
            r.d_logits(k, n) = (std::exp(logits(k, n) - log_z) - (k == labels(n))) / valid;
    }
    return r;
}

template <typename Fn>
void check_loss(int N, int K, Fn fn) {
    auto logits = random_buffer({K, N}, 51, -3.0f, 3.0f);
    Buffer<int32_t> labels(N);
    for (int n = 0; n < N; n++) labels(n) = (n * 7 + 3) % K;
    // Row 0: a tie between classes 1 and K-1 at the maximum; the label is the lower one.
    if (K > 2) {
        logits(1, 0) = logits(K - 1, 0) = 5.0f;
        labels(0) = 1;
    }
    // Make some rows correct so that the count is not trivially 0.
    for (int n = 1; n < N; n += 2) logits(labels(n), n) = 4.0f;
    logits.set_host_dirty();
    labels.set_host_dirty();
    auto logits_d = to_double(logits);

    for (int valid : {N, std::max(1, N - 2)}) {
        INFO("valid = " << valid);
        auto loss = output_buffer({1}), d_logits = output_buffer({K, N});
        auto correct = output_buffer<int32_t>({1});
        REQUIRE(fn(logits, labels, valid, loss, d_logits, correct) == 0);
        to_host(loss, d_logits, correct);
        LossRef ref = loss_reference(N, K, valid, logits_d, labels);
        CHECK(loss(0) == Approx(ref.loss).epsilon(1e-6));
        CHECK(correct(0) == ref.correct);
        check_close(d_logits, ref.d_logits, "d_logits");
        check_finite_differences(d_logits, logits_d, [&] { return loss_reference(N, K, valid, logits_d, labels).loss; },
                                 "d_logits", 1e-5, 40);
    }
}

}  // namespace

#define HLNET_LOSS_CASE(fn, N, K) \
    SECTION(#fn) { check_loss(N, K, fn); }

TEST_CASE("softmax cross-entropy: loss, gradient, correct count, valid < N", "[softmax_ce]") {
    HLNET_SOFTMAX_CE_CASES(HLNET_LOSS_CASE)
}

// dense_forward / dense_backward against a double reference and finite differences.
#include "op_cases.h"
#include "test_util.h"

using namespace hlnet_test;

namespace {

Buffer<double> dense_reference(int N, int IN, int OUT, const Buffer<double> &in, const Buffer<double> &w,
                               const Buffer<double> &b) {
    Buffer<double> out(OUT, N);
    out.for_each_element([&](int o, int n) {
        double acc = b(o);
        for (int i = 0; i < IN; i++) acc += w(i, o) * in(i, n);
        out(o, n) = acc;
    });
    return out;
}

template <typename Forward, typename Backward>
void check_dense(int N, int IN, int OUT, Forward forward, Backward backward) {
    auto in = random_buffer({IN, N}, 41), w = random_buffer({IN, OUT}, 42), b = random_buffer({OUT}, 43);
    auto d_out = random_buffer({OUT, N}, 44);
    auto in_d = to_double(in), w_d = to_double(w), b_d = to_double(b), d_out_d = to_double(d_out);

    auto out = output_buffer({OUT, N});
    auto d_in = output_buffer({IN, N}), d_w = output_buffer({IN, OUT}), d_b = output_buffer({OUT});
    REQUIRE(forward(in, w, b, out) == 0);
    REQUIRE(backward(d_out, in, w, d_in, d_w, d_b) == 0);
    to_host(out, d_in, d_w, d_b);
    check_close(out, dense_reference(N, IN, OUT, in_d, w_d, b_d), "output");

    Buffer<double> d_in_ref(IN, N), d_w_ref(IN, OUT), d_b_ref(OUT);
    d_in_ref.fill(0.0);
    d_w_ref.fill(0.0);
    d_b_ref.fill(0.0);
    d_out_d.for_each_element([&](int o, int n) {
        d_b_ref(o) += d_out_d(o, n);
        for (int i = 0; i < IN; i++) {
            d_in_ref(i, n) += w_d(i, o) * d_out_d(o, n);
            d_w_ref(i, o) += in_d(i, n) * d_out_d(o, n);
        }
    });
    check_close(d_in, d_in_ref, "d_input");
    check_close(d_w, d_w_ref, "d_weight");
    check_close(d_b, d_b_ref, "d_bias");

    auto loss = [&] { return weighted_sum(dense_reference(N, IN, OUT, in_d, w_d, b_d), d_out_d); };
    check_finite_differences(d_in, in_d, loss, "d_input");
    check_finite_differences(d_w, w_d, loss, "d_weight");
    check_finite_differences(d_b, b_d, loss, "d_bias");
}

}  // namespace

#define HLNET_DENSE_CASE(forward, backward, N, IN, OUT) \
    SECTION(#forward) { check_dense(N, IN, OUT, forward, backward); }

TEST_CASE("dense forward and backward", "[dense]") { HLNET_DENSE_CASES(HLNET_DENSE_CASE) }

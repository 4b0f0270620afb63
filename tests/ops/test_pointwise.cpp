// relu_forward, relu_backward and add: exact elementwise results, plus finite
// differences of the ReLU.
#include "op_cases.h"
#include "test_util.h"

using namespace hlnet_test;

namespace {

template <typename ReluForward, typename ReluBackward, typename Add>
void check_pointwise(std::vector<int> shape, ReluForward relu_forward, ReluBackward relu_backward, Add add) {
    auto x = random_buffer(shape, 21), d_out = random_buffer(shape, 22), other = random_buffer(shape, 23);
    auto x_d = to_double(x), d_out_d = to_double(d_out), other_d = to_double(other);

    auto out = output_buffer(shape), d_in = output_buffer(shape), sum = output_buffer(shape);
    REQUIRE(relu_forward(x, out) == 0);
    REQUIRE(relu_backward(out, d_out, d_in) == 0);
    REQUIRE(add(x, other, sum) == 0);
    to_host(out, d_in, sum);

    Buffer<double> out_ref(shape), d_in_ref(shape), sum_ref(shape);
    x_d.for_each_element([&](const int *p) {
        out_ref(p) = std::max(x_d(p), 0.0);
        d_in_ref(p) = x_d(p) > 0 ? d_out_d(p) : 0.0;
        sum_ref(p) = x_d(p) + other_d(p);
    });
    // One float operation (or none) per element: exact up to one rounding.
    check_close(out, out_ref, "relu output", 1e-7, 1e-7);
    check_close(d_in, d_in_ref, "relu d_input", 1e-7, 1e-7);
    check_close(sum, sum_ref, "add output", 1e-7, 1e-7);

    auto loss = [&] {
        Buffer<double> o(shape);
        x_d.for_each_element([&](const int *p) { o(p) = std::max(x_d(p), 0.0); });
        return weighted_sum(o, d_out_d);
    };
    check_finite_differences(d_in, x_d, loss, "relu d_input", 1e-6);
}

}  // namespace

#define HLNET_POINTWISE_CASE(relu_forward, relu_backward, add, N, C, H, W) \
    SECTION(#add) { check_pointwise({W, H, C, N}, relu_forward, relu_backward, add); }

TEST_CASE("relu forward/backward and add", "[pointwise]") { HLNET_POINTWISE_CASES(HLNET_POINTWISE_CASE) }

#define HLNET_POINTWISE_NHWC_CASE(relu_forward, relu_backward, add, N, C, H, W, layout)                   \
    SECTION(#add) {                                                                                     \
        check_pointwise({W, H, C, N}, channels_last_call(relu_forward), channels_last_call(relu_backward), \
                        channels_last_call(add));                                                       \
    }

TEST_CASE("relu forward/backward and add, NHWC", "[pointwise]") { HLNET_POINTWISE_NHWC_CASES(HLNET_POINTWISE_NHWC_CASE) }

// sgd_update: PyTorch's momentum and weight decay, in place as the runtime calls it.
#include "op_cases.h"
#include "test_util.h"

using namespace hlnet_test;

template <typename Fn>
void check_sgd(int size, Fn fn) {
    const float lr = 0.05f, momentum = 0.9f, weight_decay = 5e-4f;
    auto params = random_buffer({size}, 61), grads = random_buffer({size}, 62), velocity = random_buffer({size}, 63);
    auto p = to_double(params), g = to_double(grads), v = to_double(velocity);
    Buffer<double> p_ref(size), v_ref(size);
    for (int i = 0; i < size; i++) {
        v_ref(i) = momentum * v(i) + g(i) + weight_decay * p(i);
        p_ref(i) = p(i) - lr * v_ref(i);
    }
    SECTION("separate outputs") {
        auto new_params = output_buffer({size}), new_velocity = output_buffer({size});
        REQUIRE(fn(params, grads, velocity, lr, momentum, weight_decay, new_params, new_velocity) == 0);
        to_host(new_params, new_velocity);
        check_close(new_params, p_ref, "new_params", 1e-6, 1e-6);
        check_close(new_velocity, v_ref, "new_velocity", 1e-6, 1e-6);
    }
    SECTION("in place: params and velocity are also the outputs") {
        REQUIRE(fn(params, grads, velocity, lr, momentum, weight_decay, params, velocity) == 0);
        to_host(params, velocity);
        check_close(params, p_ref, "params", 1e-6, 1e-6);
        check_close(velocity, v_ref, "velocity", 1e-6, 1e-6);
    }
}

#define HLNET_SGD_CASE(fn, SIZE) \
    SECTION(#fn) { check_sgd(SIZE, fn); }

TEST_CASE("sgd update with momentum and weight decay", "[sgd]") { HLNET_SGD_CASES(HLNET_SGD_CASE) }

// Helpers shared by the op tests: random inputs, double-precision copies,
// normwise/elementwise comparison, and central finite differences.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>

#include "../../runtime/layout.h"

#include "HalideBuffer.h"

namespace hlnet_test {

using Halide::Runtime::Buffer;

// Uniform values in [lo, hi) from a fixed seed. Marked host-dirty so that a GPU
// pipeline uploads it.
inline Buffer<float> random_buffer(const std::vector<int> &shape, uint32_t seed, float lo = -1.0f,
                                   float hi = 1.0f) {
    Buffer<float> b(shape);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    b.for_each_value([&](float &v) { v = dist(rng); });
    b.set_host_dirty();
    return b;
}

// A pipeline output (its host memory is what copy_to_host fills on a GPU target).
template <typename T = float>
Buffer<T> output_buffer(const std::vector<int> &shape) {
    Buffer<T> b(shape);
    b.fill(T(0));
    return b;
}

// Whether an (x, y, c, n) activation of `shape` lies otherwise in NHWC than
// in NCHW (runtime/layout.h).
inline bool channels_last_differs(const std::vector<int> &shape) {
    return shape.size() == 4 && hlnet::channels_last_differs(shape[0], shape[1], shape[2]);
}

// An (x, y, c, n) activation as a pipeline built with layout=nhwc takes it:
// channels innermost where that differs from NCHW. With `values`, theirs
// (marked host-dirty), else zeros.
template <typename T = float>
Buffer<T> channels_last_buffer(const std::vector<int> &shape, const Buffer<T> *values = nullptr) {
    Buffer<T> b = channels_last_differs(shape) ? Buffer<T>(shape, {2, 0, 1, 3}) : Buffer<T>(shape);
    if (values) {
        b.copy_from(*values);
        b.set_host_dirty();
    } else {
        b.fill(T(0));
    }
    return b;
}

// Calls a pipeline built with layout=nhwc with the dense buffers (or raw
// halide_buffer_t pointers) that a test for NCHW passes it: every 4-D
// argument goes in as an NHWC copy, and comes back into the test's buffer
// afterwards (the inputs unchanged); the others go in as they are, so that a
// GPU target's results stay on the test's own buffers.
template <typename Pipeline>
auto channels_last_call(Pipeline pipeline) {
    return [pipeline](auto &&...args) {
        auto raw = [](auto &arg) -> halide_buffer_t * {
            if constexpr (std::is_pointer_v<std::remove_reference_t<decltype(arg)>>) {
                return arg;
            } else {
                return arg.raw_buffer();
            }
        };
        auto stage = [](halide_buffer_t *b) {  // an empty Buffer where the layouts agree
            const Buffer<void> dense(*b);
            std::vector<int> shape;
            for (int i = 0; i < dense.dimensions(); i++) shape.push_back(dense.dim(i).extent());
            if (!channels_last_differs(shape)) return Buffer<void>();
            Buffer<void> copy(dense.type(), shape, {2, 0, 1, 3});
            copy.copy_from(dense);
            copy.set_host_dirty();
            return copy;
        };
        auto raws = std::make_tuple(raw(args)...);
        auto staged = std::apply([&](auto *...b) { return std::make_tuple(stage(b)...); }, raws);
        auto pass = [](Buffer<void> &copy, halide_buffer_t *b) { return copy.data() ? copy.raw_buffer() : b; };
        const int rc = std::apply(
            [&](auto &...copy) { return std::apply([&](auto *...b) { return pipeline(pass(copy, b)...); }, raws); },
            staged);
        auto copy_back = [](Buffer<void> &copy, halide_buffer_t *b) {
            if (!copy.data()) return;
            copy.copy_to_host();
            Buffer<void>(*b).copy_from(copy);
        };
        std::apply([&](auto &...copy) { std::apply([&](auto *...b) { (copy_back(copy, b), ...); }, raws); }, staged);
        return rc;
    };
}

// The same values in a dense buffer of the same shape (NCHW for an activation).
inline Buffer<float> dense_copy(const Buffer<float> &b) {
    std::vector<int> shape;
    for (int i = 0; i < b.dimensions(); i++) shape.push_back(b.dim(i).extent());
    Buffer<float> out(shape);
    out.copy_from(b);
    return out;
}

// Brings pipeline outputs back to the host; a no-op on the CPU target.
template <typename... B>
void to_host(B &...buffers) {
    (buffers.copy_to_host(), ...);
}

template <typename T>
Buffer<double> to_double(const Buffer<T> &b) {
    std::vector<int> shape;
    for (int i = 0; i < b.dimensions(); i++) shape.push_back(b.dim(i).extent());
    Buffer<double> out(shape);
    std::transform(b.data(), b.data() + b.number_of_elements(), out.data(), [](T v) { return double(v); });
    return out;
}

inline std::vector<int> shape_of(const Buffer<double> &b) {
    std::vector<int> s;
    for (int i = 0; i < b.dimensions(); i++) s.push_back(b.dim(i).extent());
    return s;
}

inline double max_abs(const Buffer<double> &b) {
    double m = 0;
    for (size_t i = 0; i < b.number_of_elements(); i++) m = std::max(m, std::fabs(b.data()[i]));
    return m;
}

inline double weighted_sum(const Buffer<double> &out, const Buffer<double> &weights) {
    double s = 0;
    for (size_t i = 0; i < out.number_of_elements(); i++) s += out.data()[i] * weights.data()[i];
    return s;
}

// Forward tolerance (the issue's): normwise relative error ||got - want|| / ||want||
// below 1e-5. Elementwise, |got - want| <= 1e-4 |want| + 1e-5 max|want|: float32
// sums of up to a few thousand products keep a relative error of about
// sqrt(terms) * 6e-8 < 1e-5 of the tensor's scale; the 1e-4 relative term covers
// elements that come out of cancellation.
inline void check_close(const Buffer<float> &got, const Buffer<double> &want, const std::string &what,
                        double normwise_tol = 1e-5, double relative_tol = 1e-4) {
    INFO(what);
    REQUIRE(got.number_of_elements() == want.number_of_elements());
    const double scale = max_abs(want);
    double diff2 = 0, ref2 = 0;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < want.number_of_elements(); i++) {
        double g = got.data()[i], w = want.data()[i];
        diff2 += (g - w) * (g - w);
        ref2 += w * w;
        if (!(std::fabs(g - w) <= relative_tol * std::fabs(w) + 1e-5 * scale)) {
            if (!bad++) first_bad = i;
        }
    }
    const double normwise = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
    INFO("normwise relative error " << normwise << ", elements out of tolerance " << bad
         << (bad ? ", first at flat index " + std::to_string(first_bad) + ": got " +
                       std::to_string(got.data()[first_bad]) + " want " + std::to_string(want.data()[first_bad])
                 : std::string()));
    CHECK(normwise < normwise_tol);
    CHECK(bad == 0);
}

// dL/dx_i by central differences in double, L = loss(); x is restored.
inline double central_difference(Buffer<double> &x, size_t i, const std::function<double()> &loss, double h) {
    const double saved = x.data()[i];
    x.data()[i] = saved + h;
    const double up = loss();
    x.data()[i] = saved - h;
    const double down = loss();
    x.data()[i] = saved;
    return (up - down) / (2 * h);
}

// Checks a pipeline's gradient `grad` (same shape as x) at `samples` elements of
// x against central differences of L = loss() computed in double by the
// reference forward. Tolerance: |grad - fd| <= 1e-4 (|fd| + max|grad|): the
// float32 pipeline is accurate to ~1e-5 of the tensor's scale (see check_close),
// and the difference quotient in double to ~h^2 f''' + 1e-16 L / h, far below.
inline void check_finite_differences(const Buffer<float> &grad, Buffer<double> &x,
                                     const std::function<double()> &loss, const std::string &what,
                                     double h = 1e-4, int samples = 12, uint32_t seed = 7) {
    INFO("finite differences of " << what);
    REQUIRE(grad.number_of_elements() == x.number_of_elements());
    const double scale = max_abs(to_double(grad));
    std::mt19937 rng(seed);
    std::uniform_int_distribution<size_t> pick(0, x.number_of_elements() - 1);
    const int n = std::min<int>(samples, int(x.number_of_elements()));
    for (int s = 0; s < n; s++) {
        const size_t i = int(x.number_of_elements()) <= samples ? size_t(s) : pick(rng);
        const double fd = central_difference(x, i, loss, h);
        const double g = grad.data()[i];
        INFO("flat index " << i << ": pipeline " << g << ", finite difference " << fd);
        CHECK(std::fabs(g - fd) <= 1e-4 * (std::fabs(fd) + scale));
    }
}

}  // namespace hlnet_test

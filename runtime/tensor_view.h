// Typed, dense N-D views into a flat arena, used by the generated step code.
//
// A view shares the arena's memory: on the host it is a pointer offset; on a
// GPU it is a device crop of the arena (halide_device_crop), so the whole run
// stays device-resident and views cost nothing per step.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "HalideRuntime.h"
#include "layout.h"

namespace hlnet {

class TensorView {
public:
    TensorView() = default;
    ~TensorView();
    TensorView(const TensorView &) = delete;
    TensorView &operator=(const TensorView &) = delete;

    // View `extents` (Halide order: innermost first, densely packed) of `type`,
    // starting `offset_bytes` into the 1-D `arena`. Call once. With
    // `channels_last`, an (x, y, c, n) activation laid out NHWC (dense
    // strides where C == 1 or W == H == 1, as the pipelines pin them).
    void bind(halide_buffer_t *arena, int64_t offset_bytes, halide_type_t type,
              std::initializer_list<int> extents, bool channels_last = false);

    halide_buffer_t *get() { return &buf_; }
    int64_t elements() const;

private:
    static constexpr int kMaxRank = 4;
    halide_buffer_t buf_{};
    halide_dimension_t dims_[kMaxRank]{};
    halide_buffer_t crop_{};          // 1-D device crop of the arena, owned here
    halide_dimension_t crop_dim_{};
};

inline halide_type_t f32() { return halide_type_t(halide_type_float, 32); }
inline halide_type_t i32() { return halide_type_t(halide_type_int, 32); }

}  // namespace hlnet

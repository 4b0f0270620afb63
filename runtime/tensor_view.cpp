#include "tensor_view.h"

#include <cstdio>
#include <cstdlib>

namespace hlnet {

void TensorView::bind(halide_buffer_t *arena, int64_t offset_bytes, halide_type_t type,
                      std::initializer_list<int> extents, bool channels_last) {
    const int rank = static_cast<int>(extents.size());
    if (rank < 1 || rank > kMaxRank) {
        std::fprintf(stderr, "hlnet: internal error: view of rank %d\n", rank);
        std::abort();
    }
    int stride = 1;
    int d = 0;
    for (int extent : extents) {
        dims_[d++] = halide_dimension_t(0, extent, stride);
        stride *= extent;
    }
    if (channels_last && rank == 4) {
        const int whcn[4] = {dims_[0].extent, dims_[1].extent, dims_[2].extent, dims_[3].extent};
        int strides[4];
        channels_last_strides(whcn, strides);
        for (int i = 0; i < 4; i++) dims_[i].stride = strides[i];
    }
    const int64_t bytes = int64_t(stride) * type.bytes();
    const int64_t arena_bytes = int64_t(arena->dim[0].extent) * arena->type.bytes();
    if (offset_bytes < 0 || offset_bytes + bytes > arena_bytes) {
        std::fprintf(stderr, "hlnet: internal error: view [%lld, %lld) outside arena of %lld bytes\n",
                     (long long)offset_bytes, (long long)(offset_bytes + bytes), (long long)arena_bytes);
        std::abort();
    }
    buf_.type = type;
    buf_.dimensions = rank;
    buf_.dim = dims_;
    buf_.host = arena->host ? arena->host + offset_bytes : nullptr;

    if (arena->device) {
        // A 1-D crop of the arena in its own element type, then the same device
        // handle reinterpreted with this view's shape.
        const int elem = arena->type.bytes();
        crop_.type = arena->type;
        crop_.dimensions = 1;
        crop_.dim = &crop_dim_;
        crop_dim_ = halide_dimension_t(int(offset_bytes / elem), int(bytes / elem), 1);
        crop_.host = buf_.host;
        if (offset_bytes % elem || halide_device_crop(nullptr, arena, &crop_) != 0) {
            std::fprintf(stderr, "hlnet: device crop of the arena failed at byte %lld\n",
                         (long long)offset_bytes);
            std::abort();
        }
        buf_.device = crop_.device;
        buf_.device_interface = crop_.device_interface;
    }
}

TensorView::~TensorView() {
    if (crop_.device) halide_device_release_crop(nullptr, &crop_);
}

int64_t TensorView::elements() const {
    int64_t n = 1;
    for (int d = 0; d < buf_.dimensions; d++) n *= dims_[d].extent;
    return n;
}

}  // namespace hlnet

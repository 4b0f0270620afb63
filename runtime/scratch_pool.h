// A pool for the memory Halide's CPU pipelines allocate on every call.
//
// A pipeline's intermediates (repacked operands, Winograd transforms, partial
// sums) come from halide_malloc and go back with halide_free within the call.
// The shapes are fixed, so each step asks for the same sizes again: the pool
// keeps freed blocks by size, per thread, and hands them out again on the
// thread that freed them, and after the first steps no pipeline call reaches
// the system allocator (no mmap/munmap, no page faults on fresh pages).
// HLNET_SCRATCH_POOL=0 in the environment leaves Halide's default allocator in
// place (for comparisons).
#pragma once

#include <cstddef>
#include <cstdint>

namespace hlnet {

// Installs the pool as Halide's allocator (once; later calls do nothing).
void install_scratch_pool();

// What the installed pool does for halide_malloc and halide_free: a block of
// at least `size` bytes, 128-byte aligned (nullptr when the system has none);
// its return to this thread's free blocks.
void *scratch_alloc(size_t size);
void scratch_free(void *block);

struct ScratchPoolStats {
    int64_t system_allocations = 0;  // blocks the pool had to take from the system
    int64_t reuses = 0;              // requests served from freed blocks
    size_t bytes_held = 0;           // everything the pool owns, in use or free (all threads)
};
ScratchPoolStats scratch_pool_stats();

}  // namespace hlnet

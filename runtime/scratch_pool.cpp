#include "scratch_pool.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "HalideRuntime.h"

namespace hlnet {
namespace {

// Blocks are 128-byte aligned (wider than any vector Halide emits); the
// 128 bytes before each block hold its size.
constexpr size_t kAlign = 128;

// The counts of system blocks under a lock (rare after the first steps); the
// reuses, one per halide_malloc (56,600 a resnet18 step), without one: with a
// lock taken on every call, two threads calling in a loop took 74-95 ns an
// allocation and free, against 16-21 now (docs/PERFORMANCE.md).
std::mutex stats_mutex;
int64_t system_allocations = 0;  // under stats_mutex
size_t bytes_held = 0;           // under stats_mutex
std::atomic<int64_t> reuses{0};

// Freed blocks by rounded size, one set per thread: a block goes back to the
// thread that freed it, whose cache still holds its lines. (With one shared
// set, a parallel task's buffers went to whichever core asked next, and its
// writes fetched every line from the other core's cache: the batch-32
// 64-channel Winograd weight gradient took 3.5-9 ms from run to run instead
// of 3.2-3.8; docs/PERFORMANCE.md.) A thread that ends returns its blocks.
struct FreeBlocks {
    std::unordered_map<size_t, std::vector<void *>> by_size;
    ~FreeBlocks() {
        size_t released = 0;
        for (auto &[rounded, blocks] : by_size) {
            for (void *block : blocks) std::free(static_cast<char *>(block) - kAlign);
            released += blocks.size() * (rounded + kAlign);
        }
        std::lock_guard<std::mutex> lock(stats_mutex);
        bytes_held -= released;
    }
};
thread_local FreeBlocks free_blocks;

}  // namespace

void *scratch_alloc(size_t size) {
    const size_t rounded = (size + kAlign - 1) / kAlign * kAlign;
    std::vector<void *> &blocks = free_blocks.by_size[rounded];
    if (!blocks.empty()) {
        void *block = blocks.back();
        blocks.pop_back();
        reuses.fetch_add(1, std::memory_order_relaxed);
        return block;
    }
    char *base = static_cast<char *>(std::aligned_alloc(kAlign, rounded + kAlign));
    if (!base) return nullptr;
    {
        std::lock_guard<std::mutex> lock(stats_mutex);
        system_allocations++;
        bytes_held += rounded + kAlign;
    }
    std::memcpy(base, &rounded, sizeof rounded);
    return base + kAlign;
}

void scratch_free(void *block) {
    if (!block) return;
    size_t rounded;
    std::memcpy(&rounded, static_cast<char *>(block) - kAlign, sizeof rounded);
    free_blocks.by_size[rounded].push_back(block);
}

void install_scratch_pool() {
    static std::once_flag once;
    std::call_once(once, [] {
        const char *env = std::getenv("HLNET_SCRATCH_POOL");
        if (env && std::strcmp(env, "0") == 0) return;
        halide_set_custom_malloc([](void *, size_t size) { return scratch_alloc(size); });
        halide_set_custom_free([](void *, void *block) { scratch_free(block); });
    });
}

ScratchPoolStats scratch_pool_stats() {
    std::lock_guard<std::mutex> lock(stats_mutex);
    return {system_allocations, reuses.load(std::memory_order_relaxed), bytes_held};
}

}  // namespace hlnet

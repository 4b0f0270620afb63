#include "scratch_pool.h"

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

std::mutex pool_mutex;
std::unordered_map<size_t, std::vector<void *>> free_blocks;  // by rounded size
ScratchPoolStats stats;

void *pool_malloc(void *, size_t size) {
    const size_t rounded = (size + kAlign - 1) / kAlign * kAlign;
    {
        std::lock_guard<std::mutex> lock(pool_mutex);
        auto it = free_blocks.find(rounded);
        if (it != free_blocks.end() && !it->second.empty()) {
            void *block = it->second.back();
            it->second.pop_back();
            stats.reuses++;
            return block;
        }
        stats.system_allocations++;
        stats.bytes_held += rounded + kAlign;
    }
    char *base = static_cast<char *>(std::aligned_alloc(kAlign, rounded + kAlign));
    if (!base) return nullptr;
    std::memcpy(base, &rounded, sizeof rounded);
    return base + kAlign;
}

void pool_free(void *, void *block) {
    if (!block) return;
    size_t rounded;
    std::memcpy(&rounded, static_cast<char *>(block) - kAlign, sizeof rounded);
    std::lock_guard<std::mutex> lock(pool_mutex);
    free_blocks[rounded].push_back(block);
}

}  // namespace

void install_scratch_pool() {
    static std::once_flag once;
    std::call_once(once, [] {
        const char *env = std::getenv("HLNET_SCRATCH_POOL");
        if (env && std::strcmp(env, "0") == 0) return;
        halide_set_custom_malloc(pool_malloc);
        halide_set_custom_free(pool_free);
    });
}

ScratchPoolStats scratch_pool_stats() {
    std::lock_guard<std::mutex> lock(pool_mutex);
    return stats;
}

}  // namespace hlnet

// The scratch pool that serves Halide's intermediates (runtime/scratch_pool.h):
// reuse by size, 128-byte alignment, and blocks staying with their thread.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "scratch_pool.h"

TEST_CASE("a freed block comes back to its thread for the same rounded size", "[scratch_pool]") {
    const hlnet::ScratchPoolStats before = hlnet::scratch_pool_stats();
    void *a = hlnet::scratch_alloc(1000);
    REQUIRE(a != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(a) % 128 == 0);
    std::memset(a, 1, 1000);
    hlnet::scratch_free(a);
    void *b = hlnet::scratch_alloc(1024);  // 1000 and 1024 round to the same 1024
    CHECK(b == a);
    void *c = hlnet::scratch_alloc(1024);  // the only free one is taken: a new block
    CHECK(c != a);
    const hlnet::ScratchPoolStats after = hlnet::scratch_pool_stats();
    CHECK(after.system_allocations - before.system_allocations == 2);
    CHECK(after.reuses - before.reuses == 1);
    CHECK(after.bytes_held - before.bytes_held == 2 * (1024 + 128));
    hlnet::scratch_free(b);
    hlnet::scratch_free(c);
    hlnet::scratch_free(nullptr);  // as free(): nothing
}

TEST_CASE("another thread does not take a thread's freed block; an ending thread returns its blocks",
          "[scratch_pool]") {
    void *mine = hlnet::scratch_alloc(5000);
    hlnet::scratch_free(mine);
    const size_t held = hlnet::scratch_pool_stats().bytes_held;
    void *theirs = nullptr;
    std::thread other([&] {
        theirs = hlnet::scratch_alloc(5000);
        hlnet::scratch_free(theirs);
        CHECK(hlnet::scratch_alloc(5000) == theirs);  // its own, again
        hlnet::scratch_free(theirs);
    });
    other.join();
    CHECK(theirs != mine);
    CHECK(hlnet::scratch_pool_stats().bytes_held == held);  // the other thread's block went back to the system
    void *again = hlnet::scratch_alloc(5000);
    CHECK(again == mine);
    hlnet::scratch_free(again);
}

TEST_CASE("threads allocating and freeing at once get disjoint blocks", "[scratch_pool]") {
    // Each thread fills its blocks with its own bytes and checks them before
    // freeing: two threads holding one block would overwrite each other.
    constexpr int kThreads = 4, kRounds = 2000;
    std::vector<int> corrupted(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++) {
        threads.emplace_back([t, &corrupted] {
            for (int i = 0; i < kRounds; i++) {
                const size_t size = 256 + 128 * (i % 7);
                auto *p = static_cast<unsigned char *>(hlnet::scratch_alloc(size));
                auto *q = static_cast<unsigned char *>(hlnet::scratch_alloc(size));
                std::memset(p, t, size);
                std::memset(q, t + 100, size);
                for (size_t k = 0; k < size; k++) corrupted[t] += (p[k] != t) + (q[k] != t + 100);
                hlnet::scratch_free(q);
                hlnet::scratch_free(p);
            }
        });
    }
    for (auto &t : threads) t.join();
    for (int t = 0; t < kThreads; t++) CHECK(corrupted[t] == 0);
}

// The run's random numbers must be the same everywhere: these values were
// computed once (x86-64, libstdc++) and pin the mappings to the standard's
// std::mt19937_64 sequence.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <vector>

#include "random.h"

TEST_CASE("Rng is std::mt19937_64 plus fixed mappings", "[random]") {
    std::mt19937_64 engine;  // the standard fixes its 10000th draw from the default seed
    engine.discard(9999);
    CHECK(engine() == 9981545732273789042ull);

    hlnet::Rng rng(5489);
    std::mt19937_64 reference(5489);
    for (int i = 0; i < 3; i++) CHECK(rng.uniform() == double(reference() >> 11) * 0x1.0p-53);
    CHECK(hlnet::Rng(5489).uniform() == 0x1.92da3239eded5p-1);
}

TEST_CASE("below() is in range and shuffle() is a permutation", "[random]") {
    hlnet::Rng rng(1);
    for (int i = 0; i < 1000; i++) CHECK(rng.below(7) < 7);
    std::vector<int> v(100);
    std::iota(v.begin(), v.end(), 0);
    hlnet::Rng(2).shuffle(v.data(), int64_t(v.size()));
    std::vector<int> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < 100; i++) CHECK(sorted[i] == i);
    CHECK(v != sorted);
}

TEST_CASE("seeded streams give fixed sequences", "[random]") {
    CHECK(hlnet::stream_seed(42, 0) != hlnet::stream_seed(42, 1));
    CHECK(hlnet::stream_seed(42, 0) != hlnet::stream_seed(43, 0));
    std::vector<int> v(10);
    std::iota(v.begin(), v.end(), 0);
    hlnet::Rng(hlnet::stream_seed(42, 1)).shuffle(v.data(), 10);
    INFO("shuffle of 0..9 with stream_seed(42, 1)");
    CHECK(v == std::vector<int>{7, 3, 4, 1, 8, 5, 0, 9, 2, 6});
}

// The run's random numbers, the same on every platform: the output sequence of
// std::mt19937_64 is fixed by the C++ standard, and the two mappings below are
// ours (the standard distributions are implementation-defined).
#pragma once

#include <cstdint>
#include <random>

namespace hlnet {

class Rng {
public:
    explicit Rng(uint64_t seed) : engine_(seed) {}

    // Uniform in [0, 1): the top 53 bits of one draw, exactly representable.
    double uniform() { return double(engine_() >> 11) * 0x1.0p-53; }

    // Uniform in [0, n), n > 0: rejects the draws above the largest multiple of
    // n so that no value is favoured.
    uint64_t below(uint64_t n) {
        const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
        uint64_t x;
        do x = engine_();
        while (x >= limit);
        return x % n;
    }

    // Fisher-Yates, from the last element down.
    template <typename T>
    void shuffle(T *data, int64_t n) {
        for (int64_t i = n - 1; i > 0; i--) std::swap(data[i], data[below(uint64_t(i) + 1)]);
    }

private:
    std::mt19937_64 engine_;
};

// Independent streams from one seed (splitmix64 of seed and stream number):
// stream 0 initialises the weights, stream 1 + e shuffles epoch e.
inline uint64_t stream_seed(uint64_t seed, uint64_t stream) {
    uint64_t z = seed + (stream + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

}  // namespace hlnet

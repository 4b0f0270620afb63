// The cuDNN column of NAME_pipelines_bench in the cuda build: cuDNN's
// convolution (forward, backward-data, backward-filter) and batch norm
// (training forward, backward) at the shapes of the spec's pipelines, as the
// vendor baseline the Halide pipelines are read against. Built only where
// CMake found cuDNN (cmake/HlnetSpec.cmake: HLNET_CUDNN).
#pragma once

#include <memory>
#include <string>

#include "bench_report.h"

struct cudnnContext;  // cudnnHandle_t, without cudnn.h

namespace hlnet_bench {

class CudnnBaseline {
public:
    // The handle on GPU 0; nullptr, after one line on stderr naming the failed
    // call, where there is no usable GPU or cuDNN (the bench then has no column).
    static std::unique_ptr<CudnnBaseline> open();
    ~CudnnBaseline();
    CudnnBaseline(const CudnnBaseline &) = delete;
    CudnnBaseline &operator=(const CudnnBaseline &) = delete;

    // One sentence for the report: cuDNN's version, the algorithm choice, the
    // math mode, how it is timed and what it leaves out.
    std::string note() const;

    // GPU 0's name, and its FP32 FMA peak in GFLOP/s: SMs x FP32 lanes per SM
    // x 2 x the highest SM clock (an H100 SXM or H200: 132 x 128 x 2 x 1.98 GHz
    // = 66.9 TFLOP/s), the figure the cuda build's %peak divides by.
    std::string device_name() const;
    double fp32_peak_gflops() const;

    // cuDNN's counterpart of pipeline `generator` at `shape` (its library's
    // parameters, "n32 ci1 co8 h28 w28 k7 s2 p3"), timed as timed_calls()
    // says; nothing for a generator without one here. A failed call gives an
    // invalid Measurement whose problem names it.
    std::optional<Measurement> measure(const std::string &generator, const std::string &shape, int reps,
                                       double max_seconds);

private:
    explicit CudnnBaseline(cudnnContext *handle) : handle_(handle) {}
    cudnnContext *handle_;
};

}  // namespace hlnet_bench

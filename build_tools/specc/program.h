// The lowered program: every pipeline call of one training step (forward in
// its training and evaluation variants, backward, update) over tensors that
// live in the five arenas of runtime/graph_api.h, with the activation arena
// planned. This is what NAME_graph.cpp and pipelines.cmake are printed from.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "graph.h"

namespace specc {

enum class Arena { Activations, Params, Grads, Velocity, State };
enum class DType { F32, I32 };
enum class Init { Xavier, Zeros, Ones };

struct Tensor {
    std::string name;          // "stage1.0.conv1", "grad:stage1.0.conv1", "conv1.weight", ...
    std::string member;        // unique C++ identifier of its view in the generated code
    Arena arena = Arena::Activations;
    DType type = DType::F32;
    std::vector<int> extents;  // Halide order (innermost first), dense
    int64_t offset = -1;       // bytes from the start of its arena
    int first = -1, last = -1; // activations: steps of the first write and the last read
    // Params and states: the checkpoint entry (runtime/graph_api.h TensorInfo).
    Shape torch_shape;
    Init init = Init::Zeros;
    int64_t fan_in = 0, fan_out = 0;

    int64_t elements() const;
    int64_t bytes() const;
};

// One ahead-of-time library: a generator at fixed GeneratorParams.
struct Pipeline {
    std::string generator;
    std::vector<std::pair<std::string, int64_t>> params;  // docs/INTERNALS.md order
    bool channels_last = false;  // layout=nhwc, after the params
    std::string library() const;  // "conv2d_forward_n32_ci1_co8_h28_w28_k7_s2_p3"
};

struct Arg {
    int tensor = -1;           // a view of this tensor with `extents`...
    std::vector<int> extents;
    std::string expr;          // ...or a C++ expression (batch.images, valid, lr)
    bool output = false;
};

enum class Phase {
    Forward,   // forward, both modes
    Train,     // forward(training=true) only
    Eval,      // forward(training=false) only: the twin of the Train calls before it
    Backward,
    Update,
};

struct Call {
    Phase phase = Phase::Forward;
    int step = 0;              // position in the training step; an Eval call shares its twin's
    std::string node;          // the spec node it computes (for messages)
    Pipeline pipeline;
    std::vector<Arg> args;     // inputs then outputs, docs/INTERNALS.md order
    // Non-empty: no pipeline but a method of the runtime's BatchNormReducer
    // ("moments", "gradient_means"), which a build for several ranks calls
    // between the two parts of each batch norm (runtime/graph_api.h).
    std::string hook;
};

struct Program {
    std::vector<Tensor> tensors;
    std::vector<Call> calls;
    std::vector<int> params, states;       // tensor indices, in arena order
    std::vector<std::pair<std::string, int>> named;  // Graph::tensor() names
    int loss = -1, correct = -1;           // read back by forward()
    int forward_end = 0;                   // first step after forward
    int64_t param_floats = 0, state_floats = 0;
    int64_t activation_bytes = 0;          // planned arena size (peak)
    int64_t unplanned_bytes = 0;           // every activation-arena tensor in its own place
    int64_t live_bytes = 0;                // most bytes live at one step: no plan can do better
    bool channels_last = false;            // every 4-D activation view NHWC (the pipelines' layout=nhwc)

    std::vector<Pipeline> pipelines() const;  // distinct, in first-use order
};

constexpr int64_t kParamAlignFloats = 64;
constexpr int64_t kActivationAlignBytes = 256;

// Lowers a checked graph (see specc.cpp for the order of the passes).
Program lower(const Graph &graph, const Spec &spec);
// Program invariants: definitions before uses, shapes of views, no overlap of
// simultaneously live tensors. Throws InternalError naming the node.
void verify_program(const Program &program);

}  // namespace specc

// The forward graph: primitive nodes after macro expansion, in topological
// order, with inferred shapes. This is what NAME_graph.json describes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "spec.h"

namespace specc {

enum class Op { Input, Conv, BatchNorm, Relu, MaxPool, GlobalAvgPool, Add, Dense };
const char *op_name(Op op);  // the spelling of the spec ("conv", ...; "input")

using Shape = std::vector<int64_t>;  // [N, C, H, W] or [N, F], PyTorch order
std::string shape_text(const Shape &shape);  // "[N,C,H,W]"
// Output extent of a sliding window (conv, max pool) over `size` pixels.
inline int64_t window_out(int64_t size, int64_t kernel, int64_t stride, int64_t padding) {
    return (size + 2 * padding - kernel) / stride + 1;
}

struct Node {
    std::string name;                // "stage2.0.conv1": "<block>.<sub>" inside macros
    Op op = Op::Input;
    std::string origin;              // JSON pointer of the spec layer it came from
    std::vector<std::string> input_names;
    std::vector<std::string> input_pointers;  // where each input name was written (or the layer)
    std::vector<int> inputs;         // indices into Graph::nodes (after resolve_inputs)
    int channels = 0, kernel = 0, stride = 1, padding = 0;  // conv (channels out), maxpool
    int units = 0;                   // dense
    Shape shape;                     // output (after infer_shapes)

    bool from_macro() const { return name.find('.') != std::string::npos; }
};

struct Graph {
    std::vector<Node> nodes;                    // nodes[0] is the network input
    std::map<std::string, std::string> aliases; // block/stage name → node holding its output
    int output = -1;                            // the logits node

    int find(const std::string &name) const;    // node index after following aliases, or -1
    std::vector<std::vector<int>> consumers() const;
};

// Trainable parameter tensors of a node, in arena order (weight, bias).
struct ParamShape {
    std::string suffix;   // "weight" or "bias"
    Shape shape;          // PyTorch order
    int64_t fan_in = 0, fan_out = 0;  // Xavier: channels x kh x kw; 0 for biases and BN
};
std::vector<ParamShape> params_of(const Graph &graph, const Node &node);
int64_t param_count(const Graph &graph, const Node &node);
int64_t forward_macs(const Graph &graph, const Node &node);  // per image

// The passes, in the order compile() runs them (specc.cpp).
Graph expand_macros(const Spec &spec);              // stage → blocks → primitive nodes
void resolve_inputs(Graph &graph);                  // names → indices; unknown names, duplicates
void sort_topologically(Graph &graph);              // DAG order; a cycle is an error
void infer_shapes(Graph &graph, const Spec &spec);  // shapes; kernels, add shapes, overflow
void check_model(const Graph &graph, const Spec &spec);  // parameters, logits shape, dead nodes
void verify_graph(const Graph &graph, bool shapes_inferred);  // IR invariants (InternalError)

}  // namespace specc

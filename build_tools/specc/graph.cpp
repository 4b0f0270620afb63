#include "graph.h"

#include <algorithm>
#include <climits>
#include <functional>
#include <queue>
#include <set>

namespace specc {

const char *op_name(Op op) {
    switch (op) {
    case Op::Input: return "input";
    case Op::Conv: return "conv";
    case Op::BatchNorm: return "batchnorm";
    case Op::Relu: return "relu";
    case Op::MaxPool: return "maxpool";
    case Op::GlobalAvgPool: return "global_avgpool";
    case Op::Add: return "add";
    case Op::Dense: return "dense";
    }
    return "?";
}

std::string shape_text(const Shape &shape) {
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); i++) text += (i ? "," : "") + std::to_string(shape[i]);
    return text + "]";
}

int Graph::find(const std::string &name) const {
    auto alias = aliases.find(name);
    const std::string &target = alias == aliases.end() ? name : alias->second;
    for (size_t i = 0; i < nodes.size(); i++)
        if (nodes[i].name == target) return int(i);
    return -1;
}

std::vector<std::vector<int>> Graph::consumers() const {
    std::vector<std::vector<int>> result(nodes.size());
    for (size_t i = 0; i < nodes.size(); i++)
        for (int input : nodes[i].inputs) result[input].push_back(int(i));
    return result;
}

namespace {

// Product of `factors`, or -1 if it does not fit in int64.
int64_t checked_product(const std::vector<int64_t> &factors) {
    int64_t product = 1;
    for (int64_t f : factors)
        if (__builtin_mul_overflow(product, f, &product)) return -1;
    return product;
}

int64_t features(const Shape &shape) { return checked_product(Shape(shape.begin() + 1, shape.end())); }

// The output shape of `node` from its input shapes (assumed valid).
Shape output_shape(const Graph &graph, const Node &node, const Spec *spec) {
    const Shape in = node.inputs.empty() ? Shape{} : graph.nodes[node.inputs[0]].shape;
    const auto pooled = [&](int64_t size) { return window_out(size, node.kernel, node.stride, node.padding); };
    switch (node.op) {
    case Op::Input: return spec ? Shape{spec->batch, spec->channels, spec->height, spec->width} : node.shape;
    case Op::Conv: return {in[0], node.channels, pooled(in[2]), pooled(in[3])};
    case Op::MaxPool: return {in[0], in[1], pooled(in[2]), pooled(in[3])};
    case Op::GlobalAvgPool: return {in[0], in[1], 1, 1};
    case Op::Dense: return {in[0], node.units};
    case Op::BatchNorm:
    case Op::Relu:
    case Op::Add: return in;
    }
    return {};
}

int64_t input_features(const Graph &graph, const Node &node) { return features(graph.nodes[node.inputs[0]].shape); }

// Creates the primitive nodes of one spec layer; block macros follow d2l's names.
class Expander {
public:
    explicit Expander(Graph &graph) : graph_(graph) {}

    // Expands `layer` reading `input`; returns the name of the node holding its output.
    std::string layer(const Layer &layer, const std::string &input, const std::vector<std::string> &input_pointers) {
        origin_ = layer.pointer;
        input_ = input;
        input_pointers_ = input_pointers;
        const std::string &n = layer.name;
        if (layer.op == "conv") return conv(n, input, layer.channels, layer.kernel, layer.stride, layer.padding);
        if (layer.op == "batchnorm") return unary(n, Op::BatchNorm, input);
        if (layer.op == "relu") return unary(n, Op::Relu, input);
        if (layer.op == "maxpool") {
            Node &node = add(n, Op::MaxPool, {input});
            node.kernel = layer.kernel, node.stride = layer.stride, node.padding = layer.padding;
            return n;
        }
        if (layer.op == "global_avgpool") return unary(n, Op::GlobalAvgPool, input);
        if (layer.op == "add") return add(n, Op::Add, layer.inputs).name;
        if (layer.op == "dense") {
            add(n, Op::Dense, {input}).units = layer.units;
            return n;
        }
        if (layer.op == "stage") return stage(layer, input);
        return block(layer.op, n, input, layer.channels, layer.width, layer.stride, layer.projection);
    }

private:
    Node &add(const std::string &name, Op op, const std::vector<std::string> &inputs) {
        Node node;
        node.name = name;
        node.op = op;
        node.origin = origin_;
        node.input_names = inputs;
        for (size_t i = 0; i < inputs.size(); i++) {
            // A hand-written node points at its own input keys; a macro's node at the macro's input.
            if (!node.from_macro()) node.input_pointers.push_back(input_pointers_[i]);
            else node.input_pointers.push_back(inputs[i] == input_ ? input_pointers_[0] : origin_);
        }
        graph_.nodes.push_back(node);
        return graph_.nodes.back();
    }

    std::string unary(const std::string &name, Op op, std::string input) { return add(name, op, {input}).name; }

    std::string conv(const std::string &name, const std::string &input, int channels, int kernel, int stride, int padding) {
        Node &node = add(name, Op::Conv, {input});
        node.channels = channels, node.kernel = kernel, node.stride = stride, node.padding = padding;
        return name;
    }

    // conv → BN → ReLU, the unit every post-activation block is made of.
    std::string conv_bn_relu(const std::string &b, int i, const std::string &input, int channels, int kernel,
                             int stride, bool relu) {
        const std::string n = std::to_string(i);
        conv(b + ".conv" + n, input, channels, kernel, stride, kernel / 2);
        unary(b + ".bn" + n, Op::BatchNorm, b + ".conv" + n);
        return relu ? unary(b + ".relu" + n, Op::Relu, b + ".bn" + n) : b + ".bn" + n;
    }

    std::string block(const std::string &kind, const std::string &b, const std::string &x, int channels, int width,
                      int stride, bool projection) {
        if (kind == "residual") {
            // d2l's Residual: relu(bn2(conv2(relu(bn1(conv1(x))))) + [conv3](x))
            const std::string y = conv_bn_relu(b, 1, x, channels, 3, stride, true);
            const std::string main = conv_bn_relu(b, 2, y, channels, 3, 1, false);
            const std::string shortcut = projection ? conv(b + ".conv3", x, channels, 1, stride, 0) : x;
            unary(b + ".relu2", Op::Relu, add(b + ".add", Op::Add, {main, shortcut}).name);
            return finish(b, b + ".relu2");
        }
        if (kind == "bottleneck") {
            // 1x1 (width) → 3x3 (width, stride) → 1x1 (channels) + [conv4 1x1](x), stride on the 3x3.
            const std::string y1 = conv_bn_relu(b, 1, x, width, 1, 1, true);
            const std::string y2 = conv_bn_relu(b, 2, y1, width, 3, stride, true);
            const std::string main = conv_bn_relu(b, 3, y2, channels, 1, 1, false);
            const std::string shortcut = projection ? conv(b + ".conv4", x, channels, 1, stride, 0) : x;
            unary(b + ".relu3", Op::Relu, add(b + ".add", Op::Add, {main, shortcut}).name);
            return finish(b, b + ".relu3");
        }
        // preact_residual (ResNet v2): conv2(relu(bn2(conv1(relu(bn1(x)))))) + [conv3](relu(bn1(x)))
        const std::string a1 = unary(b + ".relu1", Op::Relu, unary(b + ".bn1", Op::BatchNorm, x));
        conv(b + ".conv1", a1, channels, 3, stride, 1);
        const std::string a2 = unary(b + ".relu2", Op::Relu, unary(b + ".bn2", Op::BatchNorm, b + ".conv1"));
        conv(b + ".conv2", a2, channels, 3, 1, 1);
        const std::string shortcut = projection ? conv(b + ".conv3", a1, channels, 1, stride, 0) : x;
        add(b + ".add", Op::Add, {b + ".conv2", shortcut});
        return finish(b, b + ".add");
    }

    // d2l's resnet_block: the first block may change stride and channels, the rest keep them.
    std::string stage(const Layer &layer, const std::string &input) {
        std::string x = input;
        for (int i = 0; i < layer.blocks; i++) {
            const bool first = i == 0;
            x = block(layer.block, layer.name + "." + std::to_string(i), x, layer.channels, layer.width,
                      first ? layer.stride : 1, first && layer.projection);
        }
        return finish(layer.name, x);
    }

    // Names `macro` as an alias of the node holding its output.
    std::string finish(const std::string &macro, const std::string &output) {
        const auto nested = graph_.aliases.find(output);
        graph_.aliases[macro] = nested == graph_.aliases.end() ? output : nested->second;
        return macro;
    }

    Graph &graph_;
    std::string origin_, input_;
    std::vector<std::string> input_pointers_;
};

}  // namespace

std::vector<ParamShape> params_of(const Graph &graph, const Node &node) {
    switch (node.op) {
    case Op::Conv: {
        // Fans are checked products: infer_shapes rejects an overflowing weight right after.
        const int64_t ci = graph.nodes[node.inputs[0]].shape[1], co = node.channels, k = node.kernel;
        return {{"weight", {co, ci, k, k}, checked_product({ci, k, k}), checked_product({co, k, k})},
                {"bias", {co}, 0, 0}};
    }
    case Op::BatchNorm: {
        const int64_t c = node.shape[1];
        return {{"weight", {c}, 0, 0}, {"bias", {c}, 0, 0}};
    }
    case Op::Dense: {
        const int64_t in = input_features(graph, node), out = node.units;
        return {{"weight", {out, in}, in, out}, {"bias", {out}, 0, 0}};
    }
    default: return {};
    }
}

int64_t param_count(const Graph &graph, const Node &node) {
    int64_t count = 0;
    for (const ParamShape &param : params_of(graph, node)) count += checked_product(param.shape);
    return count;
}

int64_t forward_macs(const Graph &graph, const Node &node) {
    if (node.op == Op::Conv) {
        const Shape &out = node.shape;
        return out[1] * out[2] * out[3] * graph.nodes[node.inputs[0]].shape[1] * node.kernel * node.kernel;
    }
    if (node.op == Op::Dense) return input_features(graph, node) * node.units;
    return 0;
}

Graph expand_macros(const Spec &spec) {
    Graph graph;
    Node input;
    input.name = "input";
    input.op = Op::Input;
    input.origin = "/input";
    graph.nodes.push_back(input);

    Expander expander(graph);
    std::map<std::string, std::string> defined_at = {{"input", "/input"}};
    std::string previous = "input";
    for (const Layer &layer : spec.layers) {
        auto [first, inserted] = defined_at.emplace(layer.name, layer.pointer);
        if (!inserted)
            throw SpecError(layer.pointer + "/name", "duplicate name, already used at " + first->second,
                            quote(layer.name));
        std::vector<std::string> inputs = layer.inputs, pointers;
        if (layer.op == "add") {
            pointers = {layer.pointer + "/inputs/0", layer.pointer + "/inputs/1"};
        } else if (!inputs.empty()) {
            pointers = {layer.pointer + "/input"};
        } else {
            inputs = {previous};
            pointers = {layer.pointer};
        }
        previous = expander.layer(layer, inputs.empty() ? "" : inputs[0], pointers);
    }
    graph.output = int(graph.nodes.size()) - 1;  // every macro creates its output node last
    return graph;
}

void resolve_inputs(Graph &graph) {
    std::vector<std::string> referable = {"input"};
    for (const Node &node : graph.nodes)
        if (!node.from_macro() && node.op != Op::Input) referable.push_back(node.name);
    for (const auto &alias : graph.aliases)
        if (alias.first.find('.') == std::string::npos) referable.push_back(alias.first);

    for (Node &node : graph.nodes) {
        node.inputs.clear();
        for (size_t i = 0; i < node.input_names.size(); i++) {
            const int index = graph.find(node.input_names[i]);
            if (index < 0)
                throw SpecError(node.input_pointers[i], "unknown node" + did_you_mean(node.input_names[i], referable),
                                quote(node.input_names[i]));
            node.inputs.push_back(index);
        }
    }
}

void sort_topologically(Graph &graph) {
    const size_t n = graph.nodes.size();
    const std::vector<std::vector<int>> consumers = graph.consumers();
    std::vector<int> waiting(n);
    for (size_t i = 0; i < n; i++) waiting[i] = int(graph.nodes[i].inputs.size());
    // Kahn's algorithm, always taking the earliest ready node: spec order where possible.
    std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
    for (size_t i = 0; i < n; i++)
        if (waiting[i] == 0) ready.push(int(i));
    std::vector<int> order;
    while (!ready.empty()) {
        const int i = ready.top();
        ready.pop();
        order.push_back(i);
        for (int c : consumers[i])
            if (--waiting[c] == 0) ready.push(c);
    }
    if (order.size() < n) {
        // Walk inputs from an unsorted node until a node repeats: that loop is the cycle.
        std::vector<int> path;
        std::vector<int> position(n, -1);
        int i = 0;
        while (waiting[i] == 0) i++;
        while (position[i] < 0) {
            position[i] = int(path.size());
            path.push_back(i);
            for (int input : graph.nodes[i].inputs)
                if (waiting[input] > 0) { i = input; break; }
        }
        // The loop is path[position[i]..]; report it in data-flow order, starting from the node written first.
        std::vector<int> loop(path.begin() + position[i], path.end());
        std::reverse(loop.begin(), loop.end());
        std::rotate(loop.begin(), std::min_element(loop.begin(), loop.end()), loop.end());
        std::string text;
        for (int k : loop) text += graph.nodes[k].name + " -> ";
        text += graph.nodes[loop[0]].name;
        // The first node reads the last one: point at that reference.
        const Node &first = graph.nodes[loop[0]];
        size_t which = 0;
        while (first.inputs[which] != loop.back()) which++;
        throw SpecError(first.input_pointers[which], "cycle: " + text, quote(first.input_names[which]));
    }
    std::vector<int> new_index(n);
    for (size_t k = 0; k < n; k++) new_index[order[k]] = int(k);
    std::vector<Node> sorted;
    for (int i : order) {
        sorted.push_back(graph.nodes[i]);
        for (int &input : sorted.back().inputs) input = new_index[input];
    }
    graph.nodes = std::move(sorted);
    graph.output = new_index[graph.output];
}

namespace {

constexpr int64_t kMaxElements = INT_MAX;  // Halide buffer extents and strides are int32

std::string node_label(const Node &node) { return std::string(op_name(node.op)) + " " + quote(node.name); }

// Where to point for a field of `node`: the key of a layer written by hand, else the macro layer.
std::string field_pointer(const Node &node, const std::string &key) {
    return node.from_macro() ? node.origin : node.origin + "/" + key;
}

void check_elements(const Node &node, const std::string &what, const Shape &shape) {
    const int64_t count = checked_product(shape);
    if (count < 0 || count > kMaxElements)
        throw SpecError(node.origin,
                        node_label(node) + ": " + what + " " + shape_text(shape) +
                            " has more elements than a Halide buffer can index (2147483647)",
                        count < 0 ? "more than 2^63" : std::to_string(count));
}

void check_input_rank(const Node &node, const Shape &in) {
    const bool needs_image = node.op == Op::Conv || node.op == Op::BatchNorm || node.op == Op::MaxPool ||
                             node.op == Op::GlobalAvgPool;
    if (needs_image && in.size() != 4)
        throw SpecError(node.origin, node_label(node) + " needs a 4-D input [N,C,H,W]", shape_text(in));
}

void check_window(const Node &node, const Shape &in) {
    if (node.op != Op::Conv && node.op != Op::MaxPool) return;
    const int64_t padded_h = in[2] + 2 * int64_t(node.padding), padded_w = in[3] + 2 * int64_t(node.padding);
    if (node.kernel > padded_h || node.kernel > padded_w)
        throw SpecError(field_pointer(node, "kernel"),
                        node_label(node) + ": kernel is larger than the padded input " + std::to_string(padded_h) +
                            "x" + std::to_string(padded_w) + " (input " + std::to_string(in[2]) + "x" +
                            std::to_string(in[3]) + ", padding " + std::to_string(node.padding) + ")",
                        std::to_string(node.kernel));
}

void check_add(const Graph &graph, const Node &node) {
    const Node &a = graph.nodes[node.inputs[0]], &b = graph.nodes[node.inputs[1]];
    if (a.shape != b.shape)
        throw SpecError(node.from_macro() ? node.origin : node.origin + "/inputs",
                        node_label(node) + ": shapes differ: " + quote(a.name) + " is " + shape_text(a.shape) +
                            ", " + quote(b.name) + " is " + shape_text(b.shape) +
                            (node.from_macro() ? " (set \"projection\": true for a 1x1 conv on the shortcut)" : ""),
                        shape_text(a.shape) + " and " + shape_text(b.shape));
}

}  // namespace

void infer_shapes(Graph &graph, const Spec &spec) {
    for (Node &node : graph.nodes) {
        if (node.op != Op::Input) {
            const Shape &in = graph.nodes[node.inputs[0]].shape;
            check_input_rank(node, in);
            check_window(node, in);
            if (node.op == Op::Add) check_add(graph, node);
        }
        node.shape = output_shape(graph, node, &spec);
        check_elements(node, "output", node.shape);
        for (const ParamShape &param : params_of(graph, node)) check_elements(node, param.suffix, param.shape);
    }
}

void check_model(const Graph &graph, const Spec &spec) {
    int64_t params = 0, macs = 0;
    for (const Node &node : graph.nodes) {
        params += param_count(graph, node);  // each tensor < 2^31: no overflow
        if (__builtin_add_overflow(macs, forward_macs(graph, node), &macs))
            throw SpecError("/layers", "the forward pass needs more than 2^63 multiply-accumulates per image",
                            quote(node.name));
    }
    if (params == 0)
        throw SpecError("/layers", "the model has no trainable parameters (no conv, batchnorm or dense layer)",
                        "0 parameters");
    const Node &logits = graph.nodes[graph.output];
    const Shape expected = {spec.batch, spec.classes};
    if (logits.shape != expected)
        throw SpecError(logits.origin, "the last layer must output the logits " + shape_text(expected) +
                                           " = [batch, classes]", shape_text(logits.shape));
    const std::vector<std::vector<int>> consumers = graph.consumers();
    for (size_t i = 0; i < graph.nodes.size(); i++)
        if (consumers[i].empty() && int(i) != graph.output)
            throw SpecError(graph.nodes[i].origin, "the output of " + quote(graph.nodes[i].name) +
                                                       " is never used (only the last layer may be unused)",
                            quote(graph.nodes[i].name));
}

void verify_graph(const Graph &graph, bool shapes_inferred) {
    const auto fail = [](const Node &node, const std::string &what) {
        throw InternalError("graph check failed at node " + quote(node.name) + ": " + what);
    };
    if (graph.nodes.empty() || graph.nodes[0].op != Op::Input || graph.nodes[0].name != "input")
        throw InternalError("graph check failed: nodes[0] must be the network input \"input\"");
    if (graph.output < 0 || graph.output >= int(graph.nodes.size()))
        throw InternalError("graph check failed: no output node");
    std::set<std::string> names;
    for (size_t i = 0; i < graph.nodes.size(); i++) {
        const Node &node = graph.nodes[i];
        if (!names.insert(node.name).second) fail(node, "duplicate name");
        const size_t arity = node.op == Op::Input ? 0 : node.op == Op::Add ? 2 : 1;
        if (node.inputs.size() != arity) fail(node, "expects " + std::to_string(arity) + " inputs");
        for (int input : node.inputs)
            if (input < 0 || input >= int(i)) fail(node, "input is not an earlier node");
        if (i > 0 && node.op == Op::Input) fail(node, "a second network input");
        if (!shapes_inferred) continue;
        if (node.shape.size() != 2 && node.shape.size() != 4) fail(node, "shape of rank " + std::to_string(node.shape.size()));
        for (int64_t d : node.shape)
            if (d <= 0) fail(node, "non-positive extent in " + shape_text(node.shape));
        if (node.op != Op::Input && output_shape(graph, node, nullptr) != node.shape)
            fail(node, "shape " + shape_text(node.shape) + " disagrees with its inputs");
        if (node.op == Op::Add && graph.nodes[node.inputs[0]].shape != graph.nodes[node.inputs[1]].shape)
            fail(node, "adds different shapes");
    }
}

}  // namespace specc

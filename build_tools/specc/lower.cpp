// Lowering of the checked forward graph into the program of one training step.
#include <algorithm>
#include <cctype>
#include <climits>
#include <set>

#include "program.h"

namespace specc {

int64_t Tensor::elements() const {
    int64_t n = 1;
    for (int e : extents) n *= e;
    return n;
}

int64_t Tensor::bytes() const { return elements() * 4; }  // f32 and i32 alike

std::string Pipeline::library() const {
    std::string name = generator;
    for (const auto &[key, value] : params) {
        name += "_";
        for (char c : key) name += char(std::tolower(static_cast<unsigned char>(c)));
        name += std::to_string(value);
    }
    if (channels_last) name += "_layoutnhwc";
    return name;
}

std::vector<Pipeline> Program::pipelines() const {
    std::vector<Pipeline> distinct;
    std::set<std::string> seen;
    for (const Call &call : calls)
        if (call.hook.empty() && seen.insert(call.pipeline.library()).second) distinct.push_back(call.pipeline);
    return distinct;
}

namespace {

int64_t align_up(int64_t x, int64_t alignment) { return (x + alignment - 1) / alignment * alignment; }

// N, C, H, W of an activation; a 2-D [N, F] is read as C = F, H = W = 1.
struct Dims {
    int64_t n, c, h, w;
};
Dims dims(const Shape &s) { return s.size() == 4 ? Dims{s[0], s[1], s[2], s[3]} : Dims{s[0], s[1], 1, 1}; }

// Halide extents, innermost first.
std::vector<int> whcn(const Dims &d) { return {int(d.w), int(d.h), int(d.c), int(d.n)}; }
std::vector<int> fn(int64_t features, int64_t n) { return {int(features), int(n)}; }
std::vector<int> halide_order(const Shape &s) {
    std::vector<int> extents;
    for (auto it = s.rbegin(); it != s.rend(); ++it) extents.push_back(int(*it));
    return extents;
}

// GeneratorParams of each generator family, in the order of docs/INTERNALS.md.
Pipeline nchw_pipeline(const char *generator, const Dims &d) {
    return {generator, {{"N", d.n}, {"C", d.c}, {"H", d.h}, {"W", d.w}}};
}
Pipeline window_pipeline(const char *generator, const Dims &in, const Node &node) {
    Pipeline p = nchw_pipeline(generator, in);
    p.params.insert(p.params.end(), {{"K", node.kernel}, {"S", node.stride}, {"P", node.padding}});
    return p;
}
Pipeline conv_pipeline(const char *generator, const Dims &in, const Node &node) {
    return {generator, {{"N", in.n}, {"CI", in.c}, {"CO", node.channels}, {"H", in.h}, {"W", in.w},
                        {"K", node.kernel}, {"S", node.stride}, {"P", node.padding}}};
}
Pipeline dense_pipeline(const char *generator, int64_t n, int64_t in, int64_t out) {
    return {generator, {{"N", n}, {"IN", in}, {"OUT", out}}};
}

// One forward pipeline call's worth of nodes, after fusion.
struct Step {
    Op op = Op::Input;
    int node = 0;             // names the step and owns its parameters (the BN of a fused group)
    int output = 0;           // the node whose output it writes (the last node of the group)
    std::vector<int> inputs;  // nodes read: the op's inputs; a fused BN: input, [residual]
    bool relu = false, residual = false;
};

class Lowering {
public:
    Lowering(const Graph &graph, const Spec &spec) : graph_(graph), spec_(spec) {}

    Program run() {
        program_.channels_last = spec_.channels_last && !flattens_channels_and_pixels();
        fuse_batchnorm();     // BN[+add][+relu] → one batchnorm instance
        place_parameters();   // params and states arenas: node order, 64-float aligned
        schedule_forward();   // input pipeline, one call per step (BN: train and eval), loss
        derive_backward();    // gradient rules in reverse step order; sums where a tensor fans out
        schedule_update();    // one sgd_update over the whole arenas
        compute_liveness();   // first write and last read of every activation-arena tensor
        plan_activations();   // offsets with reuse: best fit by size, 256-byte aligned
        return std::move(program_);
    }

private:
    // --- fusion -------------------------------------------------------------
    void fuse_batchnorm() {
        const std::vector<std::vector<int>> consumers = graph_.consumers();
        const auto sole_consumer = [&](int i, Op op) {
            const bool sole = consumers[i].size() == 1 && graph_.nodes[consumers[i][0]].op == op;
            return sole ? consumers[i][0] : -1;
        };
        std::vector<bool> absorbed(graph_.nodes.size(), false);
        std::map<int, Step> groups;  // by the node whose position emits the group
        std::set<int> taken_adds;    // add(bn_a, bn_b): only the first BN absorbs it
        for (size_t b = 0; b < graph_.nodes.size(); b++) {
            const Node &bn = graph_.nodes[b];
            if (bn.op != Op::BatchNorm) continue;
            Step step{Op::BatchNorm, int(b), int(b), {bn.inputs[0]}};
            const int add = sole_consumer(int(b), Op::Add);
            if (add >= 0 && taken_adds.insert(add).second) {
                const std::vector<int> &operands = graph_.nodes[add].inputs;
                step.residual = true;
                step.inputs.push_back(operands[0] == int(b) ? operands[1] : operands[0]);
                absorbed[b] = true;
                step.output = add;
            }
            const int relu = sole_consumer(step.output, Op::Relu);
            if (relu >= 0) {
                step.relu = true;
                absorbed[step.output] = true;
                step.output = relu;
            }
            groups[step.output] = step;
        }
        for (size_t i = 1; i < graph_.nodes.size(); i++) {
            const Node &node = graph_.nodes[i];
            if (groups.count(int(i))) steps_.push_back(groups[int(i)]);
            else if (!absorbed[i]) steps_.push_back(Step{node.op, int(i), int(i), node.inputs});
        }
    }

    // --- tensors -----------------------------------------------------------
    int tensor(const std::string &name, Arena arena, DType type, std::vector<int> extents) {
        Tensor t;
        t.name = name;
        t.arena = arena;
        t.type = type;
        t.extents = std::move(extents);
        t.member = member_name(name, arena);
        program_.tensors.push_back(t);
        return int(program_.tensors.size()) - 1;
    }

    std::string member_name(const std::string &name, Arena arena) {
        static const std::map<Arena, std::string> kPrefix = {
            {Arena::Activations, "a_"}, {Arena::Params, "p_"}, {Arena::Grads, "g_"},
            {Arena::Velocity, "v_"}, {Arena::State, "s_"}};
        std::string base = name, prefix = kPrefix.at(arena);
        if (base.rfind("grad:", 0) == 0) base = base.substr(5), prefix = "d_";
        std::string member = prefix;
        for (char c : base) member += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
        std::string unique = member;
        for (int k = 2; !members_.insert(unique).second; k++) unique = member + "_" + std::to_string(k);
        return unique;
    }

    int activation(const std::string &name, const Shape &shape, DType type = DType::F32) {
        return tensor(name, Arena::Activations, type, halide_order(shape));
    }

    // The tensor holding node i's output.
    int value(int node) const { return value_.at(node); }
    const Shape &shape(int node) const { return graph_.nodes[node].shape; }

    Arg in(int t, std::vector<int> extents = {}) {
        return Arg{t, extents.empty() ? program_.tensors[t].extents : extents, "", false};
    }
    Arg out(int t, std::vector<int> extents = {}) {
        Arg arg = in(t, std::move(extents));
        arg.output = true;
        return arg;
    }
    static Arg expr(const std::string &text) { return Arg{-1, {}, text, false}; }

    void call(Phase phase, int node, Pipeline pipeline, std::vector<Arg> args) {
        if (phase != Phase::Eval) step_++;
        pipeline.channels_last = program_.channels_last && takes_activations(pipeline.generator);
        program_.calls.push_back(Call{phase, step_, graph_.nodes[node].name, std::move(pipeline), std::move(args), ""});
    }
    void hook(Phase phase, int node, const char *method, std::vector<Arg> args) {
        call(phase, node, {}, std::move(args));
        program_.calls.back().hook = method;
    }

    // Whether a dense layer flattens a tensor of several channels and pixels:
    // its features are in [C, H, W] order (PyTorch's), which NHWC memory is
    // not, so such a model keeps its activations NCHW in any build.
    bool flattens_channels_and_pixels() const {
        for (const Node &node : graph_.nodes) {
            if (node.op != Op::Dense) continue;
            const Dims d = dims(shape(node.inputs[0]));
            if (d.c > 1 && d.h * d.w > 1) return true;
        }
        return false;
    }

    // Whether a generator reads or writes (x, y, c, n) activations, and so has a `layout`.
    static bool takes_activations(const std::string &generator) {
        for (const char *prefix : {"conv2d_", "batchnorm_", "maxpool_", "avgpool_", "relu_", "add"})
            if (generator.rfind(prefix, 0) == 0) return true;
        return false;
    }

    // A build for several ranks runs each batch norm in two parts around the
    // BatchNormReducer, which combines the statistics across ranks or not (--sync-bn).
    bool split_batchnorm() const { return spec_.ranks > 1; }

    // --- parameters ---------------------------------------------------------
    void place_parameters() {
        for (const Node &node : graph_.nodes) {
            for (const ParamShape &param : params_of(graph_, node)) {
                Init init = Init::Zeros;                                   // biases, BN beta
                if (param.fan_in) init = Init::Xavier;                     // conv and dense weights
                else if (node.op == Op::BatchNorm && param.suffix == "weight") init = Init::Ones;  // gamma
                const int p = place(node.name + "." + param.suffix, Arena::Params, param.shape, init,
                                    program_.param_floats);
                program_.tensors[p].fan_in = param.fan_in;
                program_.tensors[p].fan_out = param.fan_out;
                program_.params.push_back(p);
                Tensor grad = program_.tensors[p];
                grad.arena = Arena::Grads;
                grad.name = "grad:" + grad.name;
                grad.member = member_name(node.name + "." + param.suffix, Arena::Grads);
                program_.tensors.push_back(grad);
                grads_[p] = int(program_.tensors.size()) - 1;
            }
            if (node.op == Op::BatchNorm) {
                const Shape c = {node.shape[1]};
                program_.states.push_back(place(node.name + ".running_mean", Arena::State, c, Init::Zeros,
                                                program_.state_floats));
                program_.states.push_back(place(node.name + ".running_var", Arena::State, c, Init::Ones,
                                                program_.state_floats));
            }
        }
    }

    int place(const std::string &name, Arena arena, const Shape &torch_shape, Init init, int64_t &arena_floats) {
        const int t = tensor(name, arena, DType::F32, halide_order(torch_shape));
        by_name_[name] = t;
        Tensor &placed = program_.tensors[t];
        placed.torch_shape = torch_shape;
        placed.init = init;
        placed.offset = arena_floats * 4;
        arena_floats = align_up(arena_floats + placed.elements(), kParamAlignFloats);
        if (arena_floats > INT_MAX)  // each arena is one Halide buffer
            throw SpecError("/layers", "the parameters do not fit in one Halide buffer (2147483647 floats)",
                            std::to_string(arena_floats) + " floats");
        return t;
    }

    // A parameter or state tensor of `node` by its suffix ("weight", "running_mean").
    int param(int node, const std::string &suffix) const {
        const auto found = by_name_.find(graph_.nodes[node].name + "." + suffix);
        if (found == by_name_.end())
            throw InternalError("lowering: node " + quote(graph_.nodes[node].name) + " has no tensor " + suffix);
        return found->second;
    }
    int grad(int node, const std::string &suffix) const { return grads_.at(param(node, suffix)); }

    // --- forward ------------------------------------------------------------
    void schedule_forward() {
        const Dims image = dims(shape(0));
        const DatasetInfo &source = dataset();
        images_ = value_[0] = activation("input", shape(0));
        labels_ = activation("labels", {image.n}, DType::I32);
        call(Phase::Forward, 0,
             {"input_pipeline", {{"N", image.n}, {"SRC_H", source.height}, {"SRC_W", source.width},
                                 {"DST_H", image.h}, {"DST_W", image.w}}},
             {expr("batch.images"), expr("batch.labels"), expr("batch.indices"), out(images_), out(labels_)});
        for (const Step &step : steps_) forward(step);

        const int logits = value(graph_.output);
        const Dims d = dims(shape(graph_.output));
        program_.loss = activation("loss", {1});
        program_.correct = activation("correct", {1}, DType::I32);
        d_logits_ = activation("grad:" + graph_.nodes[graph_.output].name, shape(graph_.output));
        call(Phase::Forward, graph_.output, {"softmax_cross_entropy", {{"N", d.n}, {"K", d.c}}},
             {in(logits), in(labels_), expr("valid"), out(program_.loss), out(d_logits_), out(program_.correct)});
        program_.forward_end = step_ + 1;
        program_.named = {{"images", images_}, {"input", images_}, {"labels", labels_}, {"logits", logits}};
        for (const Step &step : steps_) program_.named.push_back({graph_.nodes[step.output].name, value(step.output)});
        for (const auto &[macro, node] : graph_.aliases)  // "stage2", "stage2.0": the block's output
            program_.named.push_back({macro, value(graph_.find(node))});
    }

    void forward(const Step &step) {
        const Node &node = graph_.nodes[step.node];
        const int x = value(step.inputs[0]);
        const Dims in_dims = dims(shape(step.inputs[0]));
        const int y = value_[step.output] = activation(graph_.nodes[step.output].name, shape(step.output));
        switch (step.op) {
        case Op::Conv:
            call(Phase::Forward, step.node, conv_pipeline("conv2d_forward", in_dims, node),
                 {in(x), in(param(step.node, "weight")), in(param(step.node, "bias")), out(y)});
            break;
        case Op::BatchNorm: {
            const int mean = activation(node.name + ".saved_mean", {in_dims.c});
            const int inv_std = activation(node.name + ".saved_inv_std", {in_dims.c});
            const int running_mean = param(step.node, "running_mean"), running_var = param(step.node, "running_var");
            std::vector<Arg> args = {in(x, whcn(in_dims)), in(param(step.node, "weight")), in(param(step.node, "bias")),
                                     in(running_mean), in(running_var)};
            if (step.residual) args.push_back(in(value(step.inputs[1]), whcn(in_dims)));
            std::vector<Arg> eval_args = args;
            eval_args.push_back(out(y, whcn(in_dims)));
            if (split_batchnorm()) {
                const int rank_mean = activation(node.name + ".rank_mean", {in_dims.c});
                const int rank_variance = activation(node.name + ".rank_variance", {in_dims.c});
                const int batch_mean = activation(node.name + ".batch_mean", {in_dims.c});
                const int batch_variance = activation(node.name + ".batch_variance", {in_dims.c});
                const int unbiased = activation(node.name + ".batch_unbiased_variance", {in_dims.c});
                call(Phase::Train, step.node, nchw_pipeline("batchnorm_moments", in_dims),
                     {in(x, whcn(in_dims)), out(rank_mean), out(rank_variance)});
                hook(Phase::Train, step.node, "moments",
                     {in(rank_mean), in(rank_variance), expr(std::to_string(in_dims.n * in_dims.h * in_dims.w)),
                      out(batch_mean), out(batch_variance), out(unbiased)});
                args.insert(args.end(), {in(batch_mean), in(batch_variance), in(unbiased)});
            }
            args.insert(args.end(), {out(y, whcn(in_dims)), out(mean), out(inv_std), out(running_mean), out(running_var)});
            call(Phase::Train, step.node, batchnorm_pipeline("batchnorm_train", step), args);
            call(Phase::Eval, step.node, batchnorm_pipeline("batchnorm_eval", step, false), eval_args);
            saved_[step.node] = {mean, inv_std};
            break;
        }
        case Op::Relu:
            call(Phase::Forward, step.node, nchw_pipeline("relu_forward", in_dims), {in(x, whcn(in_dims)), out(y, whcn(in_dims))});
            break;
        case Op::Add:
            call(Phase::Forward, step.node, nchw_pipeline("add", in_dims),
                 {in(x, whcn(in_dims)), in(value(step.inputs[1]), whcn(in_dims)), out(y, whcn(in_dims))});
            break;
        case Op::MaxPool: {
            const int argmax = activation(node.name + ".argmax", node.shape, DType::I32);
            argmax_[step.node] = argmax;
            call(Phase::Forward, step.node, window_pipeline("maxpool_forward", in_dims, node), {in(x), out(y), out(argmax)});
            break;
        }
        case Op::GlobalAvgPool:
            call(Phase::Forward, step.node, nchw_pipeline("avgpool_forward", in_dims), {in(x), out(y, fn(in_dims.c, in_dims.n))});
            break;
        case Op::Dense: {
            const int64_t features = in_dims.c * in_dims.h * in_dims.w;
            call(Phase::Forward, step.node, dense_pipeline("dense_forward", in_dims.n, features, node.units),
                 {in(x, fn(features, in_dims.n)), in(param(step.node, "weight")), in(param(step.node, "bias")), out(y)});
            break;
        }
        case Op::Input: throw InternalError("lowering: a second input node " + quote(node.name));
        }
    }

    Pipeline batchnorm_pipeline(const char *generator, const Step &step, bool may_split = true) const {
        Pipeline p = nchw_pipeline(generator, dims(shape(step.inputs[0])));
        p.params.insert(p.params.end(), {{"relu", step.relu}, {"residual", step.residual}});
        if (may_split && split_batchnorm()) p.params.push_back({"split", 1});
        return p;
    }

    // --- backward -----------------------------------------------------------
    // A node's output needs a gradient when a trainable tensor lies upstream of it.
    std::vector<bool> needs_gradient() const {
        std::vector<bool> needs(graph_.nodes.size(), false);
        for (size_t i = 1; i < graph_.nodes.size(); i++) {
            const Node &node = graph_.nodes[i];
            needs[i] = param_count(graph_, node) > 0;
            for (int input : node.inputs) needs[i] = needs[i] || needs[input];
        }
        return needs;
    }

    // Where a gradient for node `of` computed by `by` goes: d_<of> when it is the only
    // contribution, else a partial buffer summed later; a scratch buffer if unneeded.
    int gradient_slot(int of, int by) {
        const Node &node = graph_.nodes[of];
        const int fan_out = int(consumers_[of].size());
        std::string name = "grad:" + node.name;
        if (!needs_[of]) name += ".unused";
        else if (fan_out > 1) name += ".from." + graph_.nodes[by].name;
        const int t = activation(name, node.shape);
        if (needs_[of]) contributions_[of].push_back(t);
        return t;
    }

    // The complete gradient of node i's output: its contributions summed with `add`.
    int gradient(int i) {
        std::vector<int> &parts = contributions_[i];
        if (parts.empty()) throw InternalError("lowering: no gradient reaches node " + quote(graph_.nodes[i].name));
        int sum = parts[0];
        const Dims d = dims(shape(i));
        for (size_t k = 1; k < parts.size(); k++) {
            const std::string suffix = k + 1 == parts.size() ? "" : ".partial" + std::to_string(k);
            const int next = activation("grad:" + graph_.nodes[i].name + suffix, shape(i));
            call(Phase::Backward, i, nchw_pipeline("add", d), {in(sum, whcn(d)), in(parts[k], whcn(d)), out(next, whcn(d))});
            sum = next;
        }
        parts = {sum};
        return sum;
    }

    void derive_backward() {
        needs_ = needs_gradient();
        consumers_ = graph_.consumers();
        contributions_.assign(graph_.nodes.size(), {});
        contributions_[graph_.output] = {d_logits_};
        for (auto step = steps_.rbegin(); step != steps_.rend(); ++step) backward(*step);
    }

    // The gradient rules, one case per op.
    void backward(const Step &step) {
        if (!needs_[step.output]) return;  // nothing trainable upstream
        const Node &node = graph_.nodes[step.node];
        const int x_node = step.inputs[0];
        const int x = value(x_node), y = value(step.output);
        const auto pool = pooled_.find(step.output);  // a batch norm that computes its pool's gradient
        const int dy = pool == pooled_.end() ? gradient(step.output) : -1;
        const Dims in_dims = dims(shape(x_node));
        switch (step.op) {
        case Op::Conv: {
            Pipeline weights = conv_pipeline("conv2d_backward_weights", in_dims, node);
            // In front of a batch norm alone, which subtracts each channel's
            // batch mean, the bias cannot change the loss: its gradient is zero.
            const std::vector<int> &readers = consumers_[step.node];
            if (readers.size() == 1 && graph_.nodes[readers[0]].op == Op::BatchNorm)
                weights.params.push_back({"bias_grad", 0});
            call(Phase::Backward, step.node, weights,
                 {in(dy), in(x), out(grad(step.node, "weight")), out(grad(step.node, "bias"))});
            if (needs_[x_node])  // never for the image: the first conv has no d_input
                call(Phase::Backward, step.node, conv_pipeline("conv2d_backward_data", in_dims, node),
                     {in(dy), in(param(step.node, "weight")), out(gradient_slot(x_node, step.node))});
            break;
        }
        case Op::BatchNorm: {
            const auto [mean, inv_std] = saved_.at(step.node);
            // The ReLU's mask: from the output where a residual was added,
            // else recomputed from gamma and beta (docs/INTERNALS.md).
            const bool mask_recomputed = step.relu && !step.residual;
            std::vector<Arg> gamma_beta = {in(param(step.node, "weight"))};
            if (mask_recomputed) gamma_beta.push_back(in(param(step.node, "bias")));
            std::vector<Arg> args = {in(x, whcn(in_dims))};
            if (step.relu && step.residual) args.push_back(in(y, whcn(in_dims)));
            std::vector<std::pair<std::string, int64_t>> pool_params;
            if (pool != pooled_.end()) {
                const Node &p = graph_.nodes[pool->second.node];
                pool_params = {{"pool_k", p.kernel}, {"pool_s", p.stride}, {"pool_p", p.padding}};
                args.insert(args.end(), {in(pool->second.d_output), in(pool->second.argmax)});
            } else {
                args.push_back(in(dy, whcn(in_dims)));
            }
            std::vector<Arg> outputs = {out(gradient_slot(x_node, step.node), whcn(in_dims))};
            if (split_batchnorm()) {  // this rank's sums are its d_gamma and d_beta
                const int d_gamma = grad(step.node, "weight"), d_beta = grad(step.node, "bias");
                const int mean_dz = activation(node.name + ".mean_dz", {in_dims.c});
                const int mean_dz_xhat = activation(node.name + ".mean_dz_xhat", {in_dims.c});
                std::vector<Arg> sums_args = args;
                if (mask_recomputed) sums_args.insert(sums_args.end(), gamma_beta.begin(), gamma_beta.end());
                sums_args.insert(sums_args.end(), {in(mean), in(inv_std), out(d_gamma), out(d_beta)});
                Pipeline sums = nchw_pipeline("batchnorm_backward_sums", in_dims);
                sums.params.insert(sums.params.end(), {{"relu", step.relu}, {"residual", step.residual}});
                sums.params.insert(sums.params.end(), pool_params.begin(), pool_params.end());
                call(Phase::Backward, step.node, sums, sums_args);
                hook(Phase::Backward, step.node, "gradient_means",
                     {in(d_beta), in(d_gamma), expr(std::to_string(in_dims.n * in_dims.h * in_dims.w)), out(mean_dz),
                      out(mean_dz_xhat)});
                args.insert(args.end(), gamma_beta.begin(), gamma_beta.end());
                args.insert(args.end(), {in(mean), in(inv_std), in(mean_dz), in(mean_dz_xhat)});
            } else {
                args.insert(args.end(), gamma_beta.begin(), gamma_beta.end());
                args.insert(args.end(), {in(mean), in(inv_std)});
                outputs.insert(outputs.end(), {out(grad(step.node, "weight")), out(grad(step.node, "bias"))});
            }
            if (step.residual) outputs.push_back(out(gradient_slot(step.inputs[1], step.output), whcn(in_dims)));
            args.insert(args.end(), outputs.begin(), outputs.end());
            Pipeline backward = batchnorm_pipeline("batchnorm_backward", step);
            backward.params.insert(backward.params.end(), pool_params.begin(), pool_params.end());
            call(Phase::Backward, step.node, backward, args);
            break;
        }
        case Op::Relu:
            call(Phase::Backward, step.node, nchw_pipeline("relu_backward", in_dims),
                 {in(y, whcn(in_dims)), in(dy, whcn(in_dims)), out(gradient_slot(x_node, step.node), whcn(in_dims))});
            break;
        case Op::Add:  // d_a = d_b = d_output: no call, the same buffer
            for (int operand : step.inputs)
                if (needs_[operand]) contributions_[operand].push_back(dy);
            break;
        case Op::MaxPool:
            if (batchnorm_before_pool(step)) {  // its backward computes this gradient plane by plane
                pooled_[x_node] = {step.node, dy, argmax_.at(step.node)};
            } else {
                call(Phase::Backward, step.node, window_pipeline("maxpool_backward", in_dims, node),
                     {in(dy), in(argmax_.at(step.node)), out(gradient_slot(x_node, step.node))});
            }
            break;
        case Op::GlobalAvgPool:
            call(Phase::Backward, step.node, nchw_pipeline("avgpool_backward", in_dims),
                 {in(dy, fn(in_dims.c, in_dims.n)), out(gradient_slot(x_node, step.node))});
            break;
        case Op::Dense: {
            const int64_t features = in_dims.c * in_dims.h * in_dims.w;
            call(Phase::Backward, step.node, dense_pipeline("dense_backward", in_dims.n, features, node.units),
                 {in(dy), in(x, fn(features, in_dims.n)), in(param(step.node, "weight")),
                  out(gradient_slot(x_node, step.node), fn(features, in_dims.n)), out(grad(step.node, "weight")),
                  out(grad(step.node, "bias"))});
            break;
        }
        case Op::Input: break;
        }
    }

    // Whether the max pool `pool` reads the output of a batch norm (with its
    // ReLU, without a residual) that nothing else reads. The batch norm's
    // backward then takes the pool's d_output and argmax and computes the
    // pool's gradient itself, plane by plane, where the separate
    // maxpool_backward wrote a tensor of the batch norm's size that the
    // batch norm read twice (the stem: 36 -> 22.5 ms).
    bool batchnorm_before_pool(const Step &pool) const {
        const int x = pool.inputs[0];
        if (consumers_[x].size() != 1) return false;
        return std::any_of(steps_.begin(), steps_.end(), [&](const Step &s) {
            return s.op == Op::BatchNorm && s.output == x && !s.residual;
        });
    }

    // --- update ----------------------------------------------------------------
    void schedule_update() {
        const std::vector<int> size = {int(program_.param_floats)};
        const int params = tensor("params", Arena::Params, DType::F32, size);
        const int grads = tensor("grads", Arena::Grads, DType::F32, size);
        const int velocity = tensor("velocity", Arena::Velocity, DType::F32, size);
        for (int t : {params, grads, velocity}) program_.tensors[t].offset = 0;
        call(Phase::Update, graph_.output, {"sgd_update", {{"SIZE", program_.param_floats}}},
             {in(params), in(grads), in(velocity), expr("lr"), expr("momentum"), expr("weight_decay"), out(params),
              out(velocity)});
    }

    // --- activation arena -----------------------------------------------------
    void compute_liveness() {
        for (const Call &call : program_.calls)
            for (const Arg &arg : call.args) {
                if (arg.tensor < 0) continue;
                Tensor &t = program_.tensors[arg.tensor];
                if (t.arena != Arena::Activations) continue;
                t.first = t.first < 0 ? call.step : std::min(t.first, call.step);
                t.last = std::max(t.last, call.step);
            }
        // What forward() reads back or Graph::tensor() shows stays valid until forward returns.
        const int forward_last = program_.forward_end - 1;
        for (int t : {program_.loss, program_.correct, images_, labels_, value(graph_.output)})
            program_.tensors[t].last = std::max(program_.tensors[t].last, forward_last);
    }

    void plan_activations() {
        std::vector<int> order;
        for (size_t t = 0; t < program_.tensors.size(); t++)
            if (program_.tensors[t].arena == Arena::Activations) order.push_back(int(t));
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            const Tensor &ta = program_.tensors[a], &tb = program_.tensors[b];
            return ta.bytes() != tb.bytes() ? ta.bytes() > tb.bytes() : ta.first < tb.first;
        });
        std::vector<int> placed;
        for (int t : order) {
            Tensor &tensor = program_.tensors[t];
            const int64_t size = align_up(tensor.bytes(), kActivationAlignBytes);
            program_.unplanned_bytes += size;
            // Lowest aligned gap between the tensors whose lifetimes overlap this one.
            std::vector<std::pair<int64_t, int64_t>> busy;
            for (int other : placed) {
                const Tensor &o = program_.tensors[other];
                if (o.first <= tensor.last && tensor.first <= o.last) busy.push_back({o.offset, o.offset + o.bytes()});
            }
            std::sort(busy.begin(), busy.end());
            int64_t offset = 0;
            for (const auto &[begin, end] : busy) {
                if (offset + size <= begin) break;
                offset = std::max(offset, align_up(end, kActivationAlignBytes));
            }
            tensor.offset = offset;
            program_.activation_bytes = std::max(program_.activation_bytes, offset + size);
            placed.push_back(t);
        }
        std::vector<int64_t> live(size_t(step_ + 1), 0);
        for (int t : placed)
            for (int step = program_.tensors[t].first; step <= program_.tensors[t].last; step++)
                live[step] += align_up(program_.tensors[t].bytes(), kActivationAlignBytes);
        program_.live_bytes = *std::max_element(live.begin(), live.end());
    }

    const DatasetInfo &dataset() const {
        for (const DatasetInfo &d : datasets())
            if (spec_.data.dataset == d.name) return d;
        throw InternalError("lowering: unknown dataset " + quote(spec_.data.dataset));
    }

    const Graph &graph_;
    const Spec &spec_;
    Program program_;
    std::vector<Step> steps_;
    struct PoolGradient {
        int node, d_output, argmax;  // the max pool, its output's gradient, its argmax
    };
    std::map<int, PoolGradient> pooled_;  // by the batch norm's output node
    std::set<std::string> members_;
    std::map<int, int> value_;                      // node → tensor of its output
    std::map<std::string, int> by_name_;            // params and states by checkpoint name
    std::map<int, int> grads_;                      // param tensor → its grads-arena twin
    std::map<int, std::pair<int, int>> saved_;      // BN node → saved_mean, saved_inv_std
    std::map<int, int> argmax_;                     // maxpool node → argmax tensor
    std::vector<bool> needs_;
    std::vector<std::vector<int>> consumers_;
    std::vector<std::vector<int>> contributions_;   // node → gradient parts not yet summed
    int images_ = -1, labels_ = -1, d_logits_ = -1;
    int step_ = -1;
};

}  // namespace

Program lower(const Graph &graph, const Spec &spec) { return Lowering(graph, spec).run(); }

}  // namespace specc

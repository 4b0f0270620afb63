// Checks of the lowered program: each call matches its generator's signature,
// reads only what was written before, and the activation plan never lets two
// simultaneously live tensors share bytes.
#include <algorithm>
#include <set>

#include "program.h"

namespace specc {

namespace {

int64_t flag(const Pipeline &p, const std::string &key) {
    for (const auto &[k, v] : p.params)
        if (k == key) return v;
    return 0;
}

// Inputs and outputs of each generator, docs/INTERNALS.md, and of each
// BatchNormReducer hook (runtime/graph_api.h).
std::pair<size_t, size_t> arity(const Call &call) {
    if (call.hook == "moments") return {3, 3};
    if (call.hook == "gradient_means") return {3, 2};
    if (!call.hook.empty()) throw InternalError("program check: unknown hook " + quote(call.hook));
    const Pipeline &p = call.pipeline;
    const std::string &g = p.generator;
    const size_t relu = size_t(flag(p, "relu")), residual = size_t(flag(p, "residual")), split = size_t(flag(p, "split"));
    if (g == "conv2d_forward") return {3, 1};
    if (g == "conv2d_backward_data") return {2, 1};
    if (g == "conv2d_backward_weights") return {2, 2};
    if (g == "batchnorm_moments") return {1, 2};
    if (g == "batchnorm_train") return {5 + residual + 3 * split, 5};
    if (g == "batchnorm_eval") return {5 + residual, 1};
    // The ReLU mask: output with a residual, else recomputed from gamma and beta
    // (batchnorm_backward always has gamma: one more input either way).
    // With a max pool after it, its d_output and argmax in place of d_output.
    const size_t pooled = flag(p, "pool_k") > 0;
    if (g == "batchnorm_backward_sums") return {4 + relu * (residual ? 1 : 2) + pooled, 2};
    if (g == "batchnorm_backward") return split ? std::pair<size_t, size_t>{7 + relu + pooled, 1 + residual}
                                                : std::pair<size_t, size_t>{5 + relu + pooled, 3 + residual};
    if (g == "relu_forward") return {1, 1};
    if (g == "relu_backward" || g == "add" || g == "maxpool_backward") return {2, 1};
    if (g == "maxpool_forward") return {1, 2};
    if (g == "avgpool_forward" || g == "avgpool_backward") return {1, 1};
    if (g == "dense_forward") return {3, 1};
    if (g == "dense_backward") return {3, 3};
    if (g == "softmax_cross_entropy") return {3, 3};
    if (g == "sgd_update") return {6, 2};
    if (g == "input_pipeline") return {3, 2};
    throw InternalError("program check: unknown generator " + quote(g));
}

void check_call(const Program &program, const Call &call, std::set<int> &written) {
    const auto fail = [&](const std::string &what) {
        const std::string function = call.hook.empty() ? call.pipeline.library() : call.hook;
        throw InternalError("program check failed at node " + quote(call.node) + ", " + function + ": " + what);
    };
    const auto [inputs, outputs] = arity(call);
    size_t seen_inputs = 0, seen_outputs = 0;
    for (const Arg &arg : call.args) {
        if (arg.output) seen_outputs++;
        else if (seen_outputs) fail("an input after an output");
        else seen_inputs++;
        if (arg.tensor < 0) continue;
        const Tensor &t = program.tensors[arg.tensor];
        int64_t elements = 1;
        for (int e : arg.extents) elements *= e;
        if (elements != t.elements()) fail("view of " + quote(t.name) + " does not cover it exactly");
        if (t.arena != Arena::Activations) continue;
        if (call.step < t.first || call.step > t.last) fail(quote(t.name) + " used outside its lifetime");
        if (!arg.output && !written.count(arg.tensor)) fail("reads " + quote(t.name) + " before it is written");
    }
    if (seen_inputs != inputs || seen_outputs != outputs)
        fail("takes " + std::to_string(inputs) + " inputs and " + std::to_string(outputs) + " outputs, got " +
             std::to_string(seen_inputs) + " and " + std::to_string(seen_outputs));
    for (const Arg &arg : call.args)
        if (arg.output && arg.tensor >= 0) written.insert(arg.tensor);
}

void check_activation_plan(const Program &program) {
    std::vector<const Tensor *> live;
    for (const Tensor &t : program.tensors) {
        if (t.arena != Arena::Activations) continue;
        if (t.offset < 0 || t.offset % kActivationAlignBytes || t.offset + t.bytes() > program.activation_bytes)
            throw InternalError("program check failed: tensor " + quote(t.name) + " is misplaced in the activation arena");
        live.push_back(&t);
    }
    for (size_t i = 0; i < live.size(); i++)
        for (size_t j = i + 1; j < live.size(); j++) {
            const Tensor &a = *live[i], &b = *live[j];
            const bool same_time = a.first <= b.last && b.first <= a.last;
            const bool same_bytes = a.offset < b.offset + b.bytes() && b.offset < a.offset + a.bytes();
            if (same_time && same_bytes)
                throw InternalError("program check failed: live tensors " + quote(a.name) + " and " + quote(b.name) +
                                    " overlap in the activation arena");
        }
}

void check_parameter_arenas(const Program &program) {
    for (const std::vector<int> *list : {&program.params, &program.states}) {
        int64_t end = 0;
        for (int index : *list) {
            const Tensor &t = program.tensors[index];
            if (t.offset < end * 4 || t.offset % (kParamAlignFloats * 4))
                throw InternalError("program check failed: tensor " + quote(t.name) + " is misplaced in its arena");
            end = t.offset / 4 + t.elements();
        }
        const int64_t size = list == &program.params ? program.param_floats : program.state_floats;
        if (end > size) throw InternalError("program check failed: an arena is smaller than its tensors");
    }
}

}  // namespace

void verify_program(const Program &program) {
    std::set<int> written;
    for (const Call &call : program.calls) check_call(program, call, written);
    check_activation_plan(program);
    check_parameter_arenas(program);
}

}  // namespace specc

#include "specc.h"

namespace specc {

namespace {

// Rewrites the document before it is read, so overridden values are checked like written ones.
void apply_overrides(json &document, const Overrides &overrides) {
    if (!document.is_object()) return;
    if (overrides.batch) document["batch"] = overrides.batch;
    if (!overrides.channels) return;
    document["input"] = {{"channels", overrides.channels}, {"height", overrides.height}, {"width", overrides.width}};
    if (!document.contains("data") || !document["data"].is_object()) return;
    json &data = document["data"];
    for (const DatasetInfo &dataset : datasets())
        if (data.value("dataset", "") == dataset.name) {
            const bool native = overrides.height == dataset.height && overrides.width == dataset.width;
            data["resize"] = native ? json(nullptr) : json({overrides.height, overrides.width});
        }
}

// Each of `ranks` data-parallel processes runs the pipelines on its own slice of every batch.
void split_batch(Spec &spec, int ranks) {
    if (ranks < 1) throw SpecError("/batch", "the number of ranks must be at least 1", std::to_string(ranks));
    if (spec.batch % ranks != 0)
        throw SpecError("/batch", "must divide by the " + std::to_string(ranks) + " ranks the build is for (HLNET_RANKS)",
                        std::to_string(spec.batch));
    spec.ranks = ranks;
    spec.batch /= ranks;
}

}  // namespace

Compiled compile(const std::string &text, const Overrides &overrides) {
    Compiled c;
    json document = parse_json(text);       // text → JSON; syntax errors carry line and column
    apply_overrides(document, overrides);   // --batch, --input
    c.spec = read_spec(document);           // every key known, every value typed and in range
    split_batch(c.spec, overrides.ranks);   // the global batch → each rank's
    c.spec.channels_last = overrides.channels_last;
    c.graph = expand_macros(c.spec);        // stages → blocks → primitive nodes "<block>.<sub>"
    resolve_inputs(c.graph);                // input names → node indices
    sort_topologically(c.graph);            // DAG order; a cycle is an error
    verify_graph(c.graph, false);           // IR check in: structure
    infer_shapes(c.graph, c.spec);          // shapes; windows, add operands, element counts
    check_model(c.graph, c.spec);           // something to train, logits [N, classes], no dead nodes
    verify_graph(c.graph, true);            // IR check out: structure and shapes
    c.program = lower(c.graph, c.spec);     // fuse, forward, backward, update, plan (program.h)
    verify_program(c.program);              // signatures, def-before-use, no overlap of live tensors
    return c;
}

std::vector<std::pair<std::string, std::string>> render_files(const Compiled &c) {
    const std::string &name = c.spec.name;
    return {{"pipelines.cmake", render_pipelines_cmake(c)},
            {name + "_graph.cpp", render_graph_cpp(c)},
            {name + "_graph.json", render_graph_json(c)},
            {name + "_summary.txt", render_summary(c)}};
}

}  // namespace specc

// One training step of this build's model from a checkpoint, on a fixed batch,
// every result dumped by name for tools/torch_reference.py to compare:
//
//   input               the batch after the input pipeline          [N, C, H, W]
//   eval.logits         forward(training=false)                       [N, classes]
//   train.logits, train.loss, train.correct   forward(training=true)
//   grad.<param>        backward
//   param.<param>       after update(lr, momentum, weight_decay of the spec)
//   state.<bn>.running_mean / running_var     after the training forward
//
// Built for R ranks and run by mpirun -np R, the trainer's data-parallel step
// (trainer.h TrainingStep): each rank takes its slice of the indices; rank 0
// dumps its slice's input and logits, the mean loss and the total correct over
// the ranks, the averaged gradients, and the parameters and statistics that
// every rank then holds.
//
// With --sync-bn, batch norm over the images of every rank together.
//
// usage: [mpirun -np R] NAME_parity_dump --load FILE --indices I,J,... --out FILE [--data DIR] [--sync-bn]
#include <cstdio>
#include <memory>
#include <sstream>
#include <vector>

#include "checkpoint.h"
#include "cli.h"
#include "error.h"
#include "trainer.h"

namespace {

std::vector<int32_t> parse_indices(const std::string &text, int batch, int count) {
    std::vector<int32_t> indices;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        char *end = nullptr;
        const long v = std::strtol(item.c_str(), &end, 10);
        if (item.empty() || *end || v < 0 || v >= count)
            throw hlnet::UsageError("--indices: '" + item + "' is not an image index below " + std::to_string(count));
        indices.push_back(int32_t(v));
    }
    if (int(indices.size()) != batch)
        throw hlnet::UsageError(hlnet::strprintf("--indices: %zu given, the batch is %d", indices.size(), batch));
    return indices;
}

// Dims of an activation view, PyTorch order (Halide's reversed).
std::vector<int64_t> torch_shape(const halide_buffer_t *b) {
    std::vector<int64_t> shape;
    for (int d = b->dimensions - 1; d >= 0; d--) shape.push_back(b->dim[d].extent);
    return shape;
}

const halide_buffer_t *host_view(hlnet::Graph &graph, const char *name) {
    halide_buffer_t *b = graph.tensor(name);
    if (!b) hlnet::fail("the graph has no tensor '%s'", name);
    if (halide_copy_to_host(nullptr, b) != 0) hlnet::fail("cannot copy '%s' to the host", name);
    return b;
}

int run(const std::string &load, const std::string &indices_text, const std::string &out, const std::string &data,
        bool sync_bn, const hlnet::World &world) {
    hlnet::install_halide_error_handler();
    hlnet::Model model;
    const hlnet::ModelInfo &info = model.info;
    if (info.ranks != world.size()) hlnet::fail("built for %d ranks, run as %d", info.ranks, world.size());
    model.load(load);
    hlnet::Split train = hlnet::load_split(data, "train", info.classes);
    hlnet::BatchInput input(train, info.batch);
    const std::vector<int32_t> indices = parse_indices(indices_text, info.batch * info.ranks, train.count());
    for (int i = 0; i < info.batch; i++) input.indices(i) = indices[size_t(world.rank() * info.batch + i)];
    input.indices.set_host_dirty();
    hlnet::TrainingStep step(model, world, sync_bn);

    // Dumped tensors are copied as they are made, since later calls reuse the memory.
    std::vector<std::vector<uint8_t>> storage;
    std::vector<hlnet::NamedTensor> dump;
    auto keep = [&](const std::string &name, hlnet::Dtype dtype, std::vector<int64_t> shape, const void *data,
                    size_t bytes) {
        storage.emplace_back(static_cast<const uint8_t *>(data), static_cast<const uint8_t *>(data) + bytes);
        dump.push_back({name, dtype, std::move(shape), storage.back().data()});
    };
    auto keep_view = [&](const std::string &name, const char *view) {
        const halide_buffer_t *b = host_view(model.graph(), view);
        keep(name, hlnet::Dtype::F32, torch_shape(b), b->host, size_t(b->number_of_elements()) * 4);
    };
    auto keep_arena = [&](const char *prefix, const hlnet::TensorInfo *infos, int n, const float *arena) {
        for (int i = 0; i < n; i++) {
            const hlnet::TensorInfo &t = infos[i];
            const std::vector<int64_t> shape = hlnet::shape_of(t);
            keep(std::string(prefix) + t.name, hlnet::Dtype::F32, shape, arena + t.offset,
                 size_t(hlnet::numel(shape)) * 4);
        }
    };

    hlnet::Metrics m{};
    hlnet::check_pipeline(model.graph().forward(input.batch(), false, info.batch, &m), "forward (eval)", 0);
    keep_view("input", "images");
    keep_view("eval.logits", "logits");

    const std::vector<hlnet::Metrics> by_rank = step.forward(input, 0);
    keep_view("train.logits", "logits");
    float loss = 0;
    int64_t correct = 0;
    for (const hlnet::Metrics &r : by_rank) loss += r.loss / float(by_rank.size()), correct += r.correct;
    keep("train.loss", hlnet::Dtype::F32, {}, &loss, 4);
    keep("train.correct", hlnet::Dtype::I64, {}, &correct, 8);

    step.backward(0);
    model.download();
    keep_arena("grad.", info.params, info.num_params, model.grads.data());

    step.update(info.lr, info.momentum, info.weight_decay, 0);
    model.download();
    keep_arena("param.", info.params, info.num_params, model.params.data());
    keep_arena("state.", info.states, info.num_states, model.state.data());

    if (!world.is_root()) return 0;
    hlnet::write_safetensors(out, dump, {{"spec", info.name}, {"indices", indices_text}});
    std::printf("%s: %zu tensors, loss %.6f, %lld of %d correct\n", out.c_str(), dump.size(), loss,
                (long long)correct, info.batch * info.ranks);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    std::string load, indices, out, data = "/usr/share/datasets/fashion-mnist";
    bool sync_bn = false;
    const std::vector<hlnet::Flag> flags = {
        {"--load", &load, "FILE", "checkpoint to start from"},
        {"--indices", &indices, "I,J,...", "training images of the batch, one per row"},
        {"--out", &out, "FILE", "safetensors file to write"},
        {"--data", &data, "DIR", "IDX files (/usr/share/datasets/fashion-mnist)"},
        {"--sync-bn", &sync_bn, "", "batch norm over every rank's images together (the trainer's --sync-bn)"},
    };
    std::unique_ptr<hlnet::World> world;
    try {
        hlnet::parse_flags(argc, argv, flags);
        if (load.empty() || indices.empty() || out.empty())
            throw hlnet::UsageError("--load, --indices and --out are required");
        world = std::make_unique<hlnet::World>();
        return run(load, indices, out, data, sync_bn, *world);
    } catch (const hlnet::UsageError &e) {
        std::fprintf(stderr, "%s: %s\n%s", argv[0], e.what(),
                     hlnet::usage_text(argv[0], "Dumps one training step for tools/torch_reference.py.", flags).c_str());
        return 2;
    } catch (const hlnet::Error &e) {
        if (world) world->abort(e.what());
        std::fprintf(stderr, "hlnet: %s\n", e.what());
        return 1;
    }
}

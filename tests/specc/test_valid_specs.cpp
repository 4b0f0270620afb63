// Every valid spec: its totals and shapes, and the seed's printout.
#include <catch2/catch.hpp>

#include "test_util.h"

using namespace specc;
using specc_test::compile_spec;

namespace {

int64_t total_params(const Compiled &c) {
    int64_t n = 0;
    for (const Node &node : c.graph.nodes) n += param_count(c.graph, node);
    return n;
}

int64_t total_macs(const Compiled &c) {
    int64_t n = 0;
    for (const Node &node : c.graph.nodes) n += forward_macs(c.graph, node);
    return n;
}

const Shape &shape_of(const Compiled &c, const std::string &name) {
    const int i = c.graph.find(name);
    REQUIRE(i >= 0);
    return c.graph.nodes[i].shape;
}

bool contains(const std::string &text, const std::string &part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("resnet18 at the seed's 1x224x224 has the seed's printed shapes") {
    const Compiled c = compile_spec("resnet18", Overrides{1, 1, 224, 224});
    CHECK(shape_of(c, "conv1") == Shape{1, 64, 112, 112});
    CHECK(shape_of(c, "bn1") == Shape{1, 64, 112, 112});
    CHECK(shape_of(c, "relu1") == Shape{1, 64, 112, 112});
    CHECK(shape_of(c, "pool1") == Shape{1, 64, 56, 56});
    CHECK(shape_of(c, "stage1") == Shape{1, 64, 56, 56});
    CHECK(shape_of(c, "stage2") == Shape{1, 128, 28, 28});
    CHECK(shape_of(c, "stage3") == Shape{1, 256, 14, 14});
    CHECK(shape_of(c, "stage4") == Shape{1, 512, 7, 7});
    CHECK(shape_of(c, "pool2") == Shape{1, 512, 1, 1});
    CHECK(shape_of(c, "fc") == Shape{1, 10});
    const std::string summary = render_summary(c);
    CHECK(contains(summary, "pool1           maxpool 3x3/2 p1  (1, 64, 56, 56)"));
    CHECK(contains(summary, "stage4.1.relu2  relu              (1, 512, 7, 7)"));
    CHECK(contains(summary, "fc              dense             (1, 10)"));
}

TEST_CASE("resnet18 is the seed: 11,178,378 parameters, 0.319 GMAC per image at 1x96x96") {
    const Compiled c = compile_spec("resnet18");
    CHECK(total_params(c) == 11178378);
    CHECK(total_macs(c) == 318657536);
    CHECK(c.spec.batch == 256);
    CHECK(c.spec.training.lr == 0.05);
    CHECK(c.spec.training.momentum == 0);
    CHECK(c.spec.training.weight_decay == 0);
    CHECK(c.spec.training.epochs == 5);
    CHECK(c.spec.training.init == "xavier");
    CHECK(c.spec.data.resize_height == 96);
    CHECK(shape_of(c, "stage4") == Shape{256, 512, 3, 3});
    const std::string summary = render_summary(c);
    CHECK(contains(summary, "Trainable params:        11,178,378 (42.6 MiB as float32)"));
    CHECK(contains(summary, "BN running statistics:   7,808 floats"));
    CHECK(contains(summary, "Forward MACs per image:  318,657,536 (0.319 GMAC); 81.576 GMAC per batch of 256"));
    CHECK(contains(summary, "planned (peak, buffers reused by liveness): 816,347,648 bytes (778.5 MiB)"));
    CHECK(contains(summary, "unplanned (every buffer its own):           2,124,468,224 bytes (2026.1 MiB)"));
    CHECK(contains(summary, "lower bound (most bytes live at one step):  816,347,648 bytes (778.5 MiB)"));
    CHECK(contains(summary, "Pipelines:               71 distinct op instances, 126 calls"));
}

TEST_CASE("the other specs: totals and shapes") {
    struct Expected {
        const char *spec;
        int64_t params, macs;
        Shape last_stage;
        size_t nodes;
    };
    const Expected cases[] = {
        // Nodes: input + stem (conv, bn, relu, maxpool) + blocks + projections + head.
        // resnet34: 16 residual blocks of 7 nodes, 3 projections; pool, dense
        {"resnet34", 21290250, 658396160, {256, 512, 3, 3}, 5 + 16 * 7 + 3 + 2},
        // resnet50: 16 bottleneck blocks of 10 nodes, 4 projections (stage1 widens 64 → 256)
        {"resnet50", 23541130, 736268288, {256, 2048, 3, 3}, 5 + 16 * 10 + 4 + 2},
        // pre-activation: 8 blocks of 7 nodes, 3 projections; bn, relu, pool, dense
        {"resnet18_preact", 11178506, 318657536, {256, 512, 3, 3}, 5 + 8 * 7 + 3 + 4},
        // tiny: the resnet18 topology
        {"tiny", 176954, 583584, {32, 64, 1, 1}, 5 + 8 * 7 + 3 + 2},
    };
    for (const Expected &e : cases) {
        INFO(e.spec);
        const Compiled c = compile_spec(e.spec);
        CHECK(total_params(c) == e.params);
        CHECK(total_macs(c) == e.macs);
        CHECK(shape_of(c, "stage4") == e.last_stage);
        CHECK(c.graph.nodes.size() == e.nodes);
        CHECK(c.graph.nodes[c.graph.output].shape == Shape{c.spec.batch, 10});
        CHECK(c.program.activation_bytes < c.program.unplanned_bytes);
        CHECK(c.program.activation_bytes == c.program.live_bytes);  // the plan meets the lower bound
    }
}

TEST_CASE("every spec differs from resnet18 only where it must") {
    const json seed = specc_test::spec_json("resnet18");
    for (const char *name : {"resnet34", "resnet50", "resnet18_preact", "tiny"}) {
        INFO(name);
        const json spec = specc_test::spec_json(name);
        CHECK(spec["training"] == seed["training"]);
        CHECK(spec["classes"] == seed["classes"]);
        CHECK(spec["data"]["dataset"] == seed["data"]["dataset"]);
        CHECK(spec["layers"].size() >= seed["layers"].size());
        CHECK(spec["layers"][0]["kernel"] == 7);
    }
    const json tiny = specc_test::spec_json("tiny");
    CHECK(tiny["batch"] == 32);
    CHECK(tiny["data"]["resize"].is_null());
    CHECK(tiny["input"] == json({{"channels", 1}, {"height", 28}, {"width", 28}}));
}

TEST_CASE("summary overrides follow through the data section") {
    const Compiled c = compile_spec("tiny", Overrides{4, 1, 64, 64});
    CHECK(c.spec.batch == 4);
    CHECK(c.spec.data.resize);
    CHECK(c.spec.data.resize_height == 64);
    CHECK(shape_of(c, "input") == Shape{4, 1, 64, 64});
}

TEST_CASE("a build for several ranks gives each its slice of the batch") {
    Overrides ranks;
    ranks.ranks = 4;
    const Compiled c = compile_spec("tiny", ranks);
    CHECK(c.spec.batch == 8);
    CHECK(c.spec.ranks == 4);
    CHECK(shape_of(c, "input") == Shape{8, 1, 28, 28});
    ranks.ranks = 3;  // 32 images do not split three ways
    try {
        compile_spec("tiny", ranks);
        FAIL("no error for a batch that does not divide");
    } catch (const SpecError &e) {
        CHECK(e.format("tiny.json") ==
              "tiny.json: /batch: must divide by the 3 ranks the build is for (HLNET_RANKS) (got 32)");
    }
}

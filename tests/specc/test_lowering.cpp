// The lowered program: fusion, the backward graph, the update, the buffer
// plan, the IR checks, and what the emitted files say.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "test_util.h"

using namespace specc;
using specc_test::compile_spec;

namespace {

std::vector<const Call *> calls_of(const Program &p, const std::string &generator, Phase phase) {
    std::vector<const Call *> found;
    for (const Call &call : p.calls)
        if (call.pipeline.generator == generator && call.phase == phase) found.push_back(&call);
    return found;
}

int64_t param_value(const Call &call, const std::string &key) {
    for (const auto &[k, v] : call.pipeline.params)
        if (k == key) return v;
    return -1;
}

const Tensor &tensor_named(const Program &p, const std::string &name) {
    for (const Tensor &t : p.tensors)
        if (t.name == name) return t;
    FAIL("no tensor " << name);
    return p.tensors[0];
}

bool contains(const std::string &text, const std::string &part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("resnet18: every BN is fused with its ReLU, and with the shortcut add where there is one") {
    const Program p = compile_spec("resnet18").program;
    const auto train = calls_of(p, "batchnorm_train", Phase::Train);
    const auto eval = calls_of(p, "batchnorm_eval", Phase::Eval);
    REQUIRE(train.size() == 17);  // stem + 2 per block
    CHECK(eval.size() == 17);
    const auto residual = std::count_if(train.begin(), train.end(), [](const Call *c) { return param_value(*c, "residual") == 1; });
    const auto relu = std::count_if(train.begin(), train.end(), [](const Call *c) { return param_value(*c, "relu") == 1; });
    CHECK(residual == 8);
    CHECK(relu == 17);
    CHECK(calls_of(p, "relu_forward", Phase::Forward).empty());
    CHECK(calls_of(p, "add", Phase::Forward).empty());
    CHECK(calls_of(p, "batchnorm_backward", Phase::Backward).size() == 17);
}

TEST_CASE("resnet18: the backward graph") {
    const Program p = compile_spec("resnet18").program;
    // No d_input for the first conv: the image needs no gradient.
    const auto data = calls_of(p, "conv2d_backward_data", Phase::Backward);
    const auto weights = calls_of(p, "conv2d_backward_weights", Phase::Backward);
    CHECK(weights.size() == 20);  // 1 + 16 + 3 projections
    CHECK(data.size() == 19);
    CHECK(std::none_of(data.begin(), data.end(), [](const Call *c) { return c->node == "conv1"; }));
    // The convs in front of a batch norm skip their bias gradient (zero); the
    // 1x1 projections, which feed the shortcut add, keep it.
    for (const Call *c : weights) {
        const bool projection = c->node.size() > 6 && c->node.substr(c->node.size() - 6) == ".conv3";
        INFO(c->node);
        CHECK(param_value(*c, "bias_grad") == (projection ? -1 : 0));
    }
    // The stem's batch norm computes its max pool's gradient: no maxpool_backward.
    CHECK(calls_of(p, "maxpool_backward", Phase::Backward).empty());
    const auto bn_backward = calls_of(p, "batchnorm_backward", Phase::Backward);
    REQUIRE(bn_backward.back()->node == "bn1");
    CHECK(param_value(*bn_backward.back(), "pool_k") == 3);
    CHECK(std::count_if(bn_backward.begin(), bn_backward.end(), [](const Call *c) { return param_value(*c, "pool_k") != -1; }) == 1);
    // Each block's input feeds conv1 and the shortcut: their gradients are summed.
    const auto sums = calls_of(p, "add", Phase::Backward);
    CHECK(sums.size() == 8);
    CHECK(sums.front()->node == "stage4.0.relu2");
    CHECK(sums.back()->node == "pool1");
    // Reverse order: the loss's gradient enters at the dense layer; conv1 comes last.
    std::vector<const Call *> backward;
    for (const Call &call : p.calls)
        if (call.phase == Phase::Backward) backward.push_back(&call);
    CHECK(backward.front()->pipeline.generator == "dense_backward");
    CHECK(backward.back()->node == "conv1");
    // The update: one sgd_update over the whole arenas.
    const auto update = calls_of(p, "sgd_update", Phase::Update);
    REQUIRE(update.size() == 1);
    CHECK(param_value(*update[0], "SIZE") == p.param_floats);
    CHECK(p.calls.back().pipeline.generator == "sgd_update");
    CHECK(p.calls.front().pipeline.generator == "input_pipeline");
}

TEST_CASE("resnet18: the parameter and state arenas") {
    const Program p = compile_spec("resnet18").program;
    CHECK(p.params.size() == 20 * 2 + 17 * 2 + 2);  // conv, BN, dense: weight and bias each
    CHECK(p.states.size() == 17 * 2);
    for (int index : p.params) CHECK(p.tensors[index].offset % (64 * 4) == 0);
    CHECK(p.tensors[p.params.front()].name == "conv1.weight");
    CHECK(p.tensors[p.params.back()].name == "fc.bias");
    const Tensor &w = tensor_named(p, "stage2.0.conv1.weight");
    CHECK(w.torch_shape == Shape{128, 64, 3, 3});
    CHECK(w.extents == std::vector<int>{3, 3, 64, 128});
    CHECK(w.init == Init::Xavier);
    CHECK(w.fan_in == 64 * 9);
    CHECK(w.fan_out == 128 * 9);
    CHECK(tensor_named(p, "stage2.0.conv3.weight").torch_shape == Shape{128, 64, 1, 1});
    CHECK(tensor_named(p, "stage2.0.bn1.weight").init == Init::Ones);
    CHECK(tensor_named(p, "stage2.0.bn1.bias").init == Init::Zeros);
    CHECK(tensor_named(p, "stage2.0.bn1.running_mean").init == Init::Zeros);
    CHECK(tensor_named(p, "stage2.0.bn1.running_var").init == Init::Ones);
    const Tensor &fc = tensor_named(p, "fc.weight");
    CHECK(fc.torch_shape == Shape{10, 512});
    CHECK(fc.fan_in == 512);
    CHECK(fc.fan_out == 10);
}

TEST_CASE("the activation plan reuses memory and the IR checks catch an overlap") {
    Program p = compile_spec("tiny").program;
    CHECK(p.activation_bytes == 1294848);
    CHECK(p.unplanned_bytes == 3230464);
    for (const Tensor &t : p.tensors)
        if (t.arena == Arena::Activations) CHECK(t.offset % 256 == 0);
    // Put the logits on top of the image: both are live during forward.
    Tensor &logits = const_cast<Tensor &>(tensor_named(p, "fc"));
    logits.offset = tensor_named(p, "input").offset;
    CHECK_THROWS_WITH(verify_program(p), Catch::Contains("live tensors") && Catch::Contains("\"fc\"") &&
                                             Catch::Contains("\"input\""));
}

TEST_CASE("the graph IR check names the node") {
    Compiled c = compile_spec("tiny");
    c.graph.nodes[5].inputs = {7};  // a node that reads a later one
    CHECK_THROWS_WITH(verify_graph(c.graph, true),
                      "graph check failed at node \"stage1.0.conv1\": input is not an earlier node");
    c = compile_spec("tiny");
    c.graph.nodes[1].shape[1] = 9;
    CHECK_THROWS_WITH(verify_graph(c.graph, true),
                      "graph check failed at node \"conv1\": shape [32,9,14,14] disagrees with its inputs");
}

TEST_CASE("pre-activation blocks: a plain add forward, BN+ReLU fused, and no ReLU after the add") {
    const Program p = compile_spec("resnet18_preact").program;
    CHECK(calls_of(p, "add", Phase::Forward).size() == 8);
    const auto train = calls_of(p, "batchnorm_train", Phase::Train);
    CHECK(train.size() == 18);  // stem, 2 per block, final
    CHECK(std::all_of(train.begin(), train.end(), [](const Call *c) { return param_value(*c, "relu") == 1 && param_value(*c, "residual") == 0; }));
    CHECK(calls_of(p, "relu_forward", Phase::Forward).empty());
}

TEST_CASE("bottleneck blocks: three convs and a projection named conv4") {
    const Compiled c = compile_spec("resnet50");
    CHECK(c.graph.find("stage1.0.conv4") >= 0);
    CHECK(c.graph.find("stage1.1.conv4") < 0);
    CHECK(c.graph.nodes[c.graph.find("stage2.0.conv2")].stride == 2);  // stride on the 3x3
    CHECK(c.graph.nodes[c.graph.find("stage2.0.conv1")].shape == Shape{256, 128, 24, 24});
    CHECK(c.graph.nodes[c.graph.find("stage2.0.conv3")].shape == Shape{256, 512, 12, 12});
}

TEST_CASE("emitted files") {
    const Compiled c = compile_spec("tiny");
    const auto files = render_files(c);
    REQUIRE(files.size() == 4);
    CHECK(files[0].first == "pipelines.cmake");
    CHECK(files[1].first == "tiny_graph.cpp");
    CHECK(files[2].first == "tiny_graph.json");
    CHECK(files[3].first == "tiny_summary.txt");
    CHECK(files == render_files(compile_spec("tiny")));  // deterministic

    const std::string &cmake = files[0].second;
    CHECK(contains(cmake, "\nhlnet_pipeline(conv2d_forward_n32_ci1_co8_h28_w28_k7_s2_p3 conv2d_forward N=32 CI=1 CO=8 "
                          "H=28 W=28 K=7 S=2 P=3)\n"));
    CHECK(contains(cmake, "\nhlnet_pipeline(batchnorm_train_n32_c8_h7_w7_relu1_residual1 batchnorm_train N=32 C=8 H=7 "
                          "W=7 relu=1 residual=1)\n"));
    CHECK(contains(cmake, "\nhlnet_pipeline(input_pipeline_n32_src_h28_src_w28_dst_h28_dst_w28 input_pipeline N=32 "
                          "SRC_H=28 SRC_W=28 DST_H=28 DST_W=28)\n"));
    CHECK(contains(cmake, "\nhlnet_pipeline(sgd_update_size178944 sgd_update SIZE=178944)\n"));
    const size_t lines = size_t(std::count(cmake.begin(), cmake.end(), '\n'));
    CHECK(lines == 1 + c.program.pipelines().size());

    const std::string &cpp = files[1].second;
    CHECK(contains(cpp, "#include \"conv2d_forward_n32_ci1_co8_h28_w28_k7_s2_p3.h\"\n"));
    CHECK(contains(cpp, "    {\"stage2.0.conv1.weight\", "));
    CHECK(contains(cpp, "        {\"stage2\", &Views::a_stage2_1_relu2},\n"));
    CHECK(contains(cpp, "        {\"logits\", &Views::a_fc},\n"));
    CHECK(contains(cpp, "    } else {\n        if (int rc = v.pipelines.batchnorm_eval_n32_c8_h14_w14_relu1_residual0("));
    CHECK(contains(cpp, "(v.p_params.get(), v.g_grads.get(), v.v_velocity.get(), lr, momentum, weight_decay, "
                        "v.p_params.get(), v.v_velocity.get()))\n        return failed(rc, \"sgd_update_size178944\", \"fc\");"));
    // Schedule variants: one table each, compiled in when CMake builds that variant.
    CHECK(contains(cpp, "#ifdef HLNET_SCHEDULE_LI2018\n#include \"input_pipeline_n32_src_h28_src_w28_dst_h28_dst_w28_li2018.h\"\n"));
    CHECK(contains(cpp, "const Pipelines kManualPipelines = {\n    &::input_pipeline_n32_src_h28_src_w28_dst_h28_dst_w28,\n"));
    CHECK(contains(cpp, "    {\"Adams2019\", &kAdams2019Pipelines},\n"));
    // What the pipelines bench needs: shapes, value ranges, flops (2*32*8*14*14*1*49: a 14x14 output) and a caller with the scalars filled in.
    CHECK(contains(cpp, "    {\"conv2d_forward_n32_ci1_co8_h28_w28_k7_s2_p3\", \"conv2d_forward\", 1, 4917248, 302656, 4, "));
    CHECK(contains(cpp, "kSchedules[s].pipelines->softmax_cross_entropy_n32_k10(b[0], b[1], 32, b[2], b[3], b[4]); }},\n"));
    // The stem's batch norm computes its max pool's gradient: arg-max positions in its 14x14 plane.
    CHECK(contains(cpp, "const PipelineArg kArgs_batchnorm_backward_n32_c8_h14_w14_relu1_residual0_pool_k3_pool_s2_pool_p1[] = {\n"
                        "    {{halide_type_float, 32, 1}, 4, {14, 14, 8, 32}, false, -1.0, 1.0},\n"
                        "    {{halide_type_float, 32, 1}, 4, {7, 7, 8, 32}, false, -1.0, 1.0},\n"
                        "    {{halide_type_int, 32, 1}, 4, {7, 7, 8, 32}, false, 0.0, 196.0},\n"));
    CHECK(!contains(cpp, "maxpool_backward"));

    const json graph = json::parse(files[2].second);
    CHECK(graph["name"] == "tiny");
    CHECK(graph["input"] == json({1, 28, 28}));
    CHECK(graph["output"] == "fc");
    CHECK(graph["nodes"][0]["name"] == "input");
    CHECK(graph["nodes"].size() == c.graph.nodes.size());
    std::set<std::string> seen;
    for (const json &node : graph["nodes"]) {
        for (const json &input : node["inputs"]) CHECK(seen.count(input.get<std::string>()) == 1);
        seen.insert(node["name"].get<std::string>());
    }
    const json &conv = graph["nodes"][1];
    CHECK(conv["attrs"] == json({{"in_channels", 1}, {"out_channels", 8}, {"kernel", 7}, {"stride", 2},
                                 {"padding", 3}, {"bias", true}}));
    CHECK(graph["params"][0] == json({{"name", "conv1.weight"}, {"shape", {8, 1, 7, 7}}, {"offset", 0},
                                      {"init", "xavier"}, {"fan_in", 49}, {"fan_out", 392}}));
    CHECK(graph["states"][1]["name"] == "bn1.running_var");
    CHECK(graph["data"]["resize"].is_null());
    CHECK(graph["training"]["lr"] == 0.05);
}

TEST_CASE("an add of two batch norms absorbs into the first only") {
    json spec = specc_test::spec_json("tiny");
    spec["layers"] = json::parse(R"([
        {"name": "conv_a", "op": "conv", "channels": 4, "kernel": 3, "padding": 1},
        {"name": "bn_a", "op": "batchnorm"},
        {"name": "conv_b", "op": "conv", "channels": 4, "kernel": 1, "input": "input"},
        {"name": "bn_b", "op": "batchnorm"},
        {"name": "sum", "op": "add", "inputs": ["bn_a", "bn_b"]},
        {"name": "relu", "op": "relu"},
        {"name": "gap", "op": "global_avgpool"},
        {"name": "fc", "op": "dense", "units": 10}
    ])");
    const Program p = compile(spec.dump()).program;  // verify_program runs inside
    const auto train = calls_of(p, "batchnorm_train", Phase::Train);
    REQUIRE(train.size() == 2);
    // bn_b runs first: the fused bn_a + add + relu reads it as its residual.
    CHECK(train[0]->node == "bn_b");
    CHECK(param_value(*train[0], "residual") == 0);
    CHECK(param_value(*train[0], "relu") == 0);
    CHECK(train[1]->node == "bn_a");
    CHECK(param_value(*train[1], "residual") == 1);
    CHECK(param_value(*train[1], "relu") == 1);
}

TEST_CASE("a build for several ranks runs each batch norm in two parts around the BatchNormReducer") {
    Overrides two;
    two.ranks = 2;
    const Compiled c = compile_spec("tiny", two);
    const Program &p = c.program;
    const auto train = calls_of(p, "batchnorm_train", Phase::Train);
    const auto backward = calls_of(p, "batchnorm_backward", Phase::Backward);
    REQUIRE(train.size() == 17);
    REQUIRE(backward.size() == 17);
    CHECK(calls_of(p, "batchnorm_moments", Phase::Train).size() == 17);
    CHECK(calls_of(p, "batchnorm_backward_sums", Phase::Backward).size() == 17);
    CHECK(calls_of(p, "batchnorm_eval", Phase::Eval).size() == 17);
    for (const Call *call : train) {  // moments, the hook, then the part given them; count = N*H*W of one rank
        CHECK(param_value(*call, "split") == 1);
        CHECK((call - 2)->pipeline.generator == "batchnorm_moments");
        CHECK((call - 1)->hook == "moments");
        CHECK((call - 1)->args[2].expr == std::to_string(16 * param_value(*call, "H") * param_value(*call, "W")));
    }
    for (const Call *call : backward) {
        CHECK(param_value(*call, "split") == 1);
        CHECK((call - 2)->pipeline.generator == "batchnorm_backward_sums");
        CHECK((call - 1)->hook == "gradient_means");
    }
    for (const Pipeline &pipeline : p.pipelines()) CHECK(!pipeline.generator.empty());  // hooks are no pipelines
    for (const Call *call : calls_of(p, "batchnorm_eval", Phase::Eval)) CHECK(param_value(*call, "split") == -1);

    const std::string cpp = render_files(c)[1].second;
    // Evaluation keeps the one-part form; training runs the three calls.
    CHECK(contains(cpp, "    if (training) {\n        if (int rc = v.pipelines.batchnorm_moments_n16_c8_h14_w14(v.a_conv1.get(), "
                        "v.a_bn1_rank_mean.get(), v.a_bn1_rank_variance.get()))\n"));
    CHECK(contains(cpp, "        if (int rc = v.batchnorm->moments(v.a_bn1_rank_mean.get(), v.a_bn1_rank_variance.get(), 3136, "
                        "v.a_bn1_batch_mean.get(), v.a_bn1_batch_variance.get(), v.a_bn1_batch_unbiased_variance.get()))\n"));
    // The gradients the sums made go to the listener only after the hook has read them.
    const size_t hook = cpp.find("v.batchnorm->gradient_means(v.g_bn1_bias.get(), v.g_bn1_weight.get(), 3136,");
    const size_t note = cpp.find("listener->ready(2);  // bn1.weight");
    REQUIRE(hook != std::string::npos);
    REQUIRE(note != std::string::npos);
    CHECK(hook < note);
    CHECK(cpp.rfind("batchnorm_backward_sums_n16_c8_h14_w14_relu1_residual0_pool_k3_pool_s2_pool_p1(", hook) != std::string::npos);
    CHECK(cpp.find("batchnorm_backward_n16_c8_h14_w14_relu1_residual0_split1_pool_k3_pool_s2_pool_p1(", hook) > note);
}

TEST_CASE("an NHWC build: layout=nhwc on every pipeline of activations, and their 4-D views strided so") {
    Overrides nhwc;
    nhwc.channels_last = true;
    const Compiled c = compile_spec("tiny", nhwc);
    std::set<std::string> with, without;
    for (const Pipeline &pipeline : c.program.pipelines())
        (pipeline.channels_last ? with : without).insert(pipeline.generator);
    CHECK(without == std::set<std::string>{"input_pipeline", "softmax_cross_entropy", "dense_forward", "dense_backward",
                                           "sgd_update"});
    for (const char *g : {"conv2d_forward", "conv2d_backward_data", "conv2d_backward_weights", "batchnorm_train",
                          "batchnorm_eval", "batchnorm_backward", "maxpool_forward", "avgpool_forward", "add"})
        CHECK(with.count(g) == 1);

    const auto files = render_files(c);
    CHECK(contains(files[0].second, "conv2d_forward_n32_ci1_co8_h28_w28_k7_s2_p3_layoutnhwc conv2d_forward N=32 CI=1 "
                                    "CO=8 H=28 W=28 K=7 S=2 P=3 layout=nhwc)"));
    const std::string &cpp = files[1].second;
    CHECK(contains(cpp, "v.a_conv1.bind(arenas.activations, 0, f32(), {14, 14, 8, 32}, true);"));
    CHECK(contains(cpp, ".bind(arenas.params, 0, f32(), {7, 7, 1, 8});"));  // weights stay OIHW
    CHECK(!contains(cpp, "{8, 32}, true)"));  // the pooled features: 2-D
    // The NCHW build names no layout.
    const Compiled nchw = compile_spec("tiny");
    for (const Pipeline &pipeline : nchw.program.pipelines()) CHECK(!pipeline.channels_last);
    CHECK(!contains(render_files(nchw)[1].second, ", true);"));
}

TEST_CASE("a dense layer that flattens channels and pixels keeps an NHWC build's activations NCHW") {
    json spec = specc_test::spec_json("tiny");
    auto &layers = spec["layers"];
    // fc straight after stage3: [N, 32, 2, 2] flattened.
    for (size_t i = 0; i < layers.size(); i++)
        if (layers[i].value("op", "") == "global_avgpool" || layers[i].value("name", "") == "stage4") layers.erase(i--);
    Overrides nhwc;
    nhwc.channels_last = true;
    const Compiled c = compile(spec.dump(), nhwc);
    CHECK(c.graph.nodes[c.graph.find("fc")].shape == Shape{32, 10});
    CHECK(!c.program.channels_last);
    for (const Pipeline &pipeline : c.program.pipelines()) CHECK(!pipeline.channels_last);
}

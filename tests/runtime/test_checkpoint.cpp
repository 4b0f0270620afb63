// safetensors and hlnet checkpoints: round trips, strictness, corrupt files.
#include <cstring>

#include <catch2/catch.hpp>

#include "checkpoint.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using hlnet::Dtype;
using test::Bytes;

namespace {

// A two-layer model: conv [2,1,1,1] + bias, one batch norm [2].
const hlnet::TensorInfo kParams[] = {
    {"conv.weight", 0, 4, {2, 1, 1, 1}, hlnet::Init::Xavier, 1, 2},
    {"conv.bias", 2, 1, {2, 0, 0, 0}, hlnet::Init::Zeros, 0, 0},
    {"bn.weight", 4, 1, {2, 0, 0, 0}, hlnet::Init::Ones, 0, 0},
    {"bn.bias", 6, 1, {2, 0, 0, 0}, hlnet::Init::Zeros, 0, 0},
};
const hlnet::TensorInfo kStates[] = {
    {"bn.running_mean", 0, 1, {2, 0, 0, 0}, hlnet::Init::Zeros, 0, 0},
    {"bn.running_var", 2, 1, {2, 0, 0, 0}, hlnet::Init::Ones, 0, 0},
};
hlnet::ModelInfo model_info(const char *name = "small") {
    hlnet::ModelInfo info{};
    info.name = name;
    info.param_floats = 8;
    info.state_floats = 4;
    info.params = kParams;
    info.num_params = 4;
    info.states = kStates;
    info.num_states = 2;
    return info;
}

std::vector<float> iota(int n, float start) {
    std::vector<float> v(n);
    for (int i = 0; i < n; i++) v[i] = start + 0.5f * i;
    return v;
}

}  // namespace

TEST_CASE("safetensors round trip", "[checkpoint]") {
    const std::string path = test::temp_dir() + "/t.safetensors";
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const int64_t count = 42;
    hlnet::write_safetensors(path, {{"w", Dtype::F32, {2, 3}, w}, {"n", Dtype::I64, {}, &count}},
                             {{"epoch", "3"}});

    const Bytes bytes = test::read_file(path);
    uint64_t header = 0;
    std::memcpy(&header, bytes.data(), 8);
    CHECK(header % 8 == 0);  // data stays 8-byte aligned
    CHECK(bytes.size() == 8 + header + 6 * 4 + 8);

    hlnet::SafetensorsFile f(path);
    CHECK(f.metadata().at("epoch") == "3");
    REQUIRE(f.find("w"));
    CHECK(f.find("w")->shape == std::vector<int64_t>{2, 3});
    CHECK(std::memcmp(f.find("w")->data, w, sizeof w) == 0);
    REQUIRE(f.find("n"));
    CHECK(f.find("n")->dtype == Dtype::I64);
    CHECK(f.find("n")->shape.empty());
    int64_t n = 0;
    std::memcpy(&n, f.find("n")->data, 8);
    CHECK(n == 42);
    CHECK(f.find("missing") == nullptr);
}

TEST_CASE("a checkpoint holds the state_dict and the run", "[checkpoint]") {
    const std::string path = test::temp_dir() + "/run.safetensors";
    const hlnet::ModelInfo info = model_info();
    const auto params = iota(8, 1), state = iota(4, -1), velocity = iota(8, 100);
    hlnet::RunState run{2, 345, 12.125, 77, 99};
    hlnet::save_checkpoint(path, info, params.data(), state.data(), velocity.data(), run);

    hlnet::SafetensorsFile f(path);
    CHECK(f.entries().size() == 4 + 2 + 1);  // params, states, bn.num_batches_tracked
    REQUIRE(f.find("bn.num_batches_tracked"));
    int64_t tracked = 0;
    std::memcpy(&tracked, f.find("bn.num_batches_tracked")->data, 8);
    CHECK(tracked == 345);
    CHECK(f.metadata().at("spec") == "small");
    CHECK(hlnet::optimizer_path(path) == path.substr(0, path.size() - 12) + ".optimizer.safetensors");

    std::vector<float> p(8), s(4), v(8);
    const hlnet::RunState back = hlnet::load_model(path, info, p.data(), s.data());
    CHECK(p == params);
    CHECK(s == state);
    CHECK(back.epoch == 2);
    CHECK(back.step == 345);
    CHECK(back.epoch_loss_sum == 12.125);
    CHECK(back.epoch_correct == 77);
    CHECK(back.seed == 99);
    hlnet::load_velocity(path, info, back, v.data());
    CHECK(v == velocity);
}

TEST_CASE("loading is strict about names, shapes and the spec", "[checkpoint]") {
    const std::string dir = test::temp_dir();
    const hlnet::ModelInfo info = model_info();
    const auto params = iota(8, 1), state = iota(4, -1);
    std::vector<float> p(8), s(4);

    hlnet::write_safetensors(dir + "/missing", {{"conv.weight", Dtype::F32, {2, 1, 1, 1}, params.data()}}, {});
    CHECK_THROWS_WITH(hlnet::load_model(dir + "/missing", info, p.data(), s.data()),
                      Contains("tensor 'conv.bias' is missing"));

    hlnet::write_safetensors(dir + "/shape", {{"conv.weight", Dtype::F32, {1, 2, 1, 1}, params.data()}}, {});
    CHECK_THROWS_WITH(hlnet::load_model(dir + "/shape", info, p.data(), s.data()),
                      Contains("tensor 'conv.weight' is F32 [1, 2, 1, 1] but the model has F32 [2, 1, 1, 1]"));

    hlnet::save_checkpoint(dir + "/other", model_info("other"), params.data(), state.data(), nullptr, {});
    CHECK_THROWS_WITH(hlnet::load_model(dir + "/other", info, p.data(), s.data()),
                      Contains("checkpoint of spec 'other', but this trainer is for 'small'"));

    std::vector<hlnet::NamedTensor> extra;
    for (const auto &t : kParams)
        extra.push_back({t.name, Dtype::F32, std::vector<int64_t>(t.shape, t.shape + t.rank), params.data()});
    for (const auto &t : kStates)
        extra.push_back({t.name, Dtype::F32, {2}, state.data()});
    extra.push_back({"fc.weight", Dtype::F32, {1}, params.data()});
    hlnet::write_safetensors(dir + "/extra", extra, {});
    CHECK_THROWS_WITH(hlnet::load_model(dir + "/extra", info, p.data(), s.data()),
                      Contains("tensor 'fc.weight' is not part of model 'small'"));
}

TEST_CASE("resuming needs the optimizer file of the same step", "[checkpoint]") {
    const std::string dir = test::temp_dir();
    const hlnet::ModelInfo info = model_info();
    const auto params = iota(8, 1), state = iota(4, -1), velocity = iota(8, 0);
    std::vector<float> p(8), s(4), v(8);

    hlnet::save_checkpoint(dir + "/a.safetensors", info, params.data(), state.data(), velocity.data(),
                           {0, 10, 0, 0, 1});
    hlnet::save_checkpoint(dir + "/b.safetensors", info, params.data(), state.data(), velocity.data(),
                           {0, 20, 0, 0, 1});
    // A model file whose optimizer file is from another step.
    std::rename((dir + "/b.optimizer.safetensors").c_str(), (dir + "/a.optimizer.safetensors").c_str());
    const hlnet::RunState run = hlnet::load_model(dir + "/a.safetensors", info, p.data(), s.data());
    CHECK_THROWS_WITH(hlnet::load_velocity(dir + "/a.safetensors", info, run, v.data()),
                      Contains("optimizer state of step 20, but") && Contains("is of step 10"));

    hlnet::save_checkpoint(dir + "/c.safetensors", info, params.data(), state.data(), nullptr, {});
    CHECK_THROWS_WITH(hlnet::load_velocity(dir + "/c.safetensors", info, run, v.data()),
                      Contains("c.optimizer.safetensors: cannot open"));
}

TEST_CASE("corrupt safetensors files name the byte", "[checkpoint]") {
    const std::string dir = test::temp_dir();
    const float w[2] = {1, 2};
    hlnet::write_safetensors(dir + "/good", {{"w", Dtype::F32, {2}, w}}, {});
    const Bytes good = test::read_file(dir + "/good");
    uint64_t header = 0;
    std::memcpy(&header, good.data(), 8);

    test::write_file(dir + "/short", Bytes(good.begin(), good.begin() + 5));
    CHECK_THROWS_WITH(hlnet::SafetensorsFile(dir + "/short"), Contains("truncated at byte 5"));

    Bytes huge = good;
    huge[6] = 1;
    test::write_file(dir + "/huge", huge);
    CHECK_THROWS_WITH(hlnet::SafetensorsFile(dir + "/huge"), Contains("at byte 0 does not fit the file's"));

    Bytes json = good;
    json[8] = '@';  // the header's opening brace
    test::write_file(dir + "/json", json);
    CHECK_THROWS_WITH(hlnet::SafetensorsFile(dir + "/json"), Contains("corrupt JSON header at byte 8"));

    test::write_file(dir + "/cut", Bytes(good.begin(), good.end() - 4));  // data ends early
    CHECK_THROWS_WITH(hlnet::SafetensorsFile(dir + "/cut"),
                      Contains("tensor 'w': data_offsets lie outside the 4 data bytes from byte " +
                               std::to_string(8 + header)));

    hlnet::write_safetensors(dir + "/dtype", {{"w", Dtype::F32, {2}, w}}, {});
    Bytes bf16 = test::read_file(dir + "/dtype");
    const std::string text(bf16.begin(), bf16.end());
    const size_t at = text.find("F32");
    bf16[at] = 'U', bf16[at + 1] = '1', bf16[at + 2] = '6';
    test::write_file(dir + "/dtype", bf16);
    CHECK_THROWS_WITH(hlnet::SafetensorsFile(dir + "/dtype"), Contains("has dtype U16"));
}

TEST_CASE("an atomic write leaves no temporary file", "[checkpoint]") {
    const std::string dir = test::temp_dir();
    const float w[1] = {1};
    hlnet::write_safetensors(dir + "/x", {{"w", Dtype::F32, {1}, w}}, {});
    hlnet::write_safetensors(dir + "/x", {{"w", Dtype::F32, {1}, w}}, {});  // over an existing file
    CHECK(test::read_file(dir + "/x").size() > 8);
    CHECK(test::list_dir(dir) == std::vector<std::string>{"x"});
    CHECK_THROWS_WITH(hlnet::write_safetensors(dir + "/no/such/dir/x", {}, {}), Contains("cannot create"));
}

// Every error path: exactly one message `FILE: /json/pointer: what is wrong (got X)`.
#include <catch2/catch.hpp>

#include <functional>

#include "test_util.h"

using namespace specc;
using specc_test::error_of;
using specc_test::error_of_text;

namespace {

// tiny.json with one edit applied.
json tiny_with(const std::function<void(json &)> &edit) {
    json spec = specc_test::spec_json("tiny");
    edit(spec);
    return spec;
}

json &at(json &document, const std::string &pointer) { return document[json::json_pointer(pointer)]; }

json tiny_set(const std::string &pointer, const json &value) {
    return tiny_with([&](json &s) { at(s, pointer) = value; });
}

// tiny.json with its layer list replaced.
json tiny_layers(const json &layers) { return tiny_set("/layers", layers); }

const json kConv = {{"name", "conv1"}, {"op", "conv"}, {"channels", 8}, {"kernel", 3}, {"padding", 1}};
const json kGap = {{"name", "gap"}, {"op", "global_avgpool"}};
const json kFc = {{"name", "fc"}, {"op", "dense"}, {"units", 10}};

}  // namespace

TEST_CASE("not JSON, truncated, empty") {
    const std::string tiny = specc_test::read_text(specc_test::spec_path("tiny"));
    CHECK(error_of_text("{\"name\": \"tiny\",, }") ==
          "spec.json: /: not JSON at line 1, column 17: syntax error while parsing object key - unexpected ','; "
          "expected string literal (got ',')");
    CHECK(error_of_text("name: tiny") ==
          "spec.json: /: not JSON at line 1, column 2: syntax error while parsing value - invalid literal (got 'na')");
    CHECK(error_of_text(tiny.substr(0, tiny.size() / 2)) == "spec.json: /: truncated: the JSON ends early at line 12, column 101 (got end of file)");
    CHECK(error_of_text("") == "spec.json: /: not JSON: the file is empty (got 0 bytes)");
    CHECK(error_of_text("{\"batch\": 1e999}") == "spec.json: /: not JSON: a number is out of range (got '1e999')");
    std::string deep_pointer;
    for (int i = 0; i < 65; i++) deep_pointer += "/0";  // the 66th array opens inside the 65th
    CHECK(error_of_text(std::string(100, '[') + std::string(100, ']')) ==
          "spec.json: " + deep_pointer + ": nested deeper than 64 levels (got 65 levels)");
    CHECK(error_of_text("[1, 2]") == "spec.json: /: must be an object (got [1,2])");
    std::string twice = tiny;
    twice.replace(twice.find("\"kernel\": 3,"), 12, "\"kernel\": 3, \"kernel\": 5,");
    CHECK(error_of_text(twice) == "spec.json: /layers/3/kernel: duplicate key (got \"kernel\")");
}

TEST_CASE("missing and wrongly typed values") {
    CHECK(error_of(tiny_with([](json &s) { s.erase("training"); })) ==
          "spec.json: /: missing key \"training\" (got {\"batch\":32,\"classes\":10,\"data\":{\"dataset\":\"fashion-mnist...)");
    CHECK(error_of(tiny_set("/batch", "32")) == "spec.json: /batch: must be an integer (got \"32\")");
    CHECK(error_of(tiny_set("/batch", 32.5)) == "spec.json: /batch: must be an integer (got 32.5)");
    CHECK(error_of(tiny_set("/input", 28)) == "spec.json: /input: must be an object (got 28)");
    CHECK(error_of(tiny_set("/layers", "conv")) == "spec.json: /layers: must be a list of layers (got \"conv\")");
    CHECK(error_of(tiny_set("/layers/0", "conv")) == "spec.json: /layers/0: must be an object (got \"conv\")");
    CHECK(error_of(tiny_set("/layers/0/op", 3)) == "spec.json: /layers/0/op: must be a string (got 3)");
    CHECK(error_of(tiny_set("/layers/0/name", 3)) == "spec.json: /layers/0/name: must be a string (got 3)");
    CHECK(error_of(tiny_set("/layers/0/kernel", 3.5)) == "spec.json: /layers/0/kernel: must be an integer (got 3.5)");
    CHECK(error_of(tiny_set("/layers/4/projection", "yes")) ==
          "spec.json: /layers/4/projection: must be true or false (got \"yes\")");
    CHECK(error_of(tiny_set("/layers/2/input", 1)) == "spec.json: /layers/2/input: must be a string (got 1)");
    CHECK(error_of(tiny_set("/training/lr", "0.05")) == "spec.json: /training/lr: must be a number (got \"0.05\")");
    CHECK(error_of(tiny_set("/training/seed", -1)) == "spec.json: /training/seed: must be a non-negative integer (got -1)");
    CHECK(error_of(tiny_set("/data/resize", 96)) ==
          "spec.json: /data/resize: must be [height, width], null or \"none\" (got 96)");
    CHECK(error_of(tiny_set("/description", 1)) == "spec.json: /description: must be a string (got 1)");
    CHECK(error_of(tiny_with([](json &s) { at(s, "/layers/0").erase("op"); })) ==
          "spec.json: /layers/0: missing key \"op\" (got {\"channels\":8,\"kernel\":7,\"name\":\"conv1\",\"padding\":3,\"stri...)");
    CHECK(error_of(tiny_with([](json &s) { at(s, "/layers/0").erase("kernel"); })) ==
          "spec.json: /layers/0: missing key \"kernel\" (got {\"channels\":8,\"name\":\"conv1\",\"op\":\"conv\",\"padding\":3,\"str...)");
}

TEST_CASE("values out of range") {
    CHECK(error_of(tiny_set("/batch", 0)) == "spec.json: /batch: must be positive (got 0)");
    CHECK(error_of(tiny_set("/classes", -10)) == "spec.json: /classes: must be positive (got -10)");
    CHECK(error_of(tiny_set("/layers/0/channels", 0)) == "spec.json: /layers/0/channels: must be positive (got 0)");
    CHECK(error_of(tiny_set("/layers/0/padding", -1)) == "spec.json: /layers/0/padding: must be at least 0 (got -1)");
    CHECK(error_of(tiny_set("/layers/0/stride", -2)) == "spec.json: /layers/0/stride: must be positive (got -2)");
    CHECK(error_of(tiny_set("/layers/4/blocks", 0)) == "spec.json: /layers/4/blocks: must be positive (got 0)");
    CHECK(error_of(tiny_set("/input/height", -28)) == "spec.json: /input/height: must be positive (got -28)");
    CHECK(error_of(tiny_set("/layers/0/kernel", 10000000000)) ==
          "spec.json: /layers/0/kernel: must be at most 2147483647 (got 10000000000)");
    CHECK(error_of(tiny_set("/layers/0/kernel", 18446744073709551615u)) ==
          "spec.json: /layers/0/kernel: must be at most 2147483647 (got 18446744073709551615)");
    CHECK(error_of(tiny_set("/training/lr", 0)) == "spec.json: /training/lr: must be positive (got 0)");
    CHECK(error_of(tiny_set("/training/momentum", 1)) == "spec.json: /training/momentum: must be less than 1.0 (got 1)");
    CHECK(error_of(tiny_set("/training/weight_decay", -0.1)) ==
          "spec.json: /training/weight_decay: must be at least 0.0 (got -0.1)");
    CHECK(error_of(tiny_set("/training/epochs", 0)) == "spec.json: /training/epochs: must be positive (got 0)");
    CHECK(error_of(tiny_set("/layers/3/padding", 2)) ==
          "spec.json: /layers/3/padding: must be at most half the kernel (3) (got 2)");
}

TEST_CASE("unknown keys, ops and names: the nearest valid name") {
    CHECK(error_of(tiny_with([](json &s) { at(s, "/layers/0/kernal") = 3; })) ==
          "spec.json: /layers/0/kernal: unknown key; did you mean \"kernel\"? (got \"kernal\")");
    CHECK(error_of(tiny_with([](json &s) { s["epochs"] = 5; })) ==
          "spec.json: /epochs: unknown key; it belongs in \"training\" (got \"epochs\")");
    CHECK(error_of(tiny_with([](json &s) { s["epoch"] = 5; })) ==
          "spec.json: /epoch: unknown key; did you mean \"batch\"? (got \"epoch\")");
    CHECK(error_of(tiny_with([](json &s) { at(s, "/training/learning_rate") = 0.1; })) ==
          "spec.json: /training/learning_rate: unknown key; did you mean \"init\"? (got \"learning_rate\")");
    CHECK(error_of(tiny_set("/layers/0/op", "convolution")) ==
          "spec.json: /layers/0/op: unknown op; did you mean \"conv\"? (got \"convolution\")");
    CHECK(error_of(tiny_set("/layers/1/op", "batch_norm")) ==
          "spec.json: /layers/1/op: unknown op; did you mean \"batchnorm\"? (got \"batch_norm\")");
    CHECK(error_of(tiny_set("/layers/4/block", "resnet")) ==
          "spec.json: /layers/4/block: unknown block; did you mean \"residual\"? (got \"resnet\")");
    CHECK(error_of(tiny_set("/training/optimizer", "adam")) ==
          "spec.json: /training/optimizer: unknown optimizer; did you mean \"sgd\"? (got \"adam\")");
    CHECK(error_of(tiny_set("/training/init", "kaiming")) ==
          "spec.json: /training/init: unknown init; did you mean \"xavier\"? (got \"kaiming\")");
    CHECK(error_of(tiny_set("/data/dataset", "mnist")) ==
          "spec.json: /data/dataset: unknown dataset; did you mean \"fashion-mnist\"? (got \"mnist\")");
    CHECK(error_of(tiny_with([](json &s) { at(s, "/layers/1/inputs") = {"conv1"}; })) ==
          "spec.json: /layers/1/inputs: unknown key; did you mean \"input\"? (got \"inputs\")");
    CHECK(error_of(tiny_with([](json &s) { at(s, "/layers/4/width") = 4; })) ==
          "spec.json: /layers/4/width: only a bottleneck has a width (got 4)");
    CHECK(error_of(tiny_with([](json &s) { s["a~b"] = 1; })) ==
          "spec.json: /a~0b: unknown key; did you mean \"name\"? (got \"a~b\")");
}

TEST_CASE("names and references") {
    CHECK(error_of(tiny_set("/layers/2/input", "relu")) ==
          "spec.json: /layers/2/input: unknown node; did you mean \"relu1\"? (got \"relu\")");
    CHECK(error_of(tiny_set("/layers/5/input", "stage")) ==
          "spec.json: /layers/5/input: unknown node; did you mean \"stage1\"? (got \"stage\")");
    CHECK(error_of(tiny_set("/layers/1/name", "conv1")) ==
          "spec.json: /layers/1/name: duplicate name, already used at /layers/0 (got \"conv1\")");
    CHECK(error_of(tiny_set("/layers/1/name", "input")) ==
          "spec.json: /layers/1/name: \"input\" names the network input; choose another name (got \"input\")");
    CHECK(error_of(tiny_set("/layers/1/name", "labels")) ==
          "spec.json: /layers/1/name: \"labels\" names the network input; choose another name (got \"labels\")");
    CHECK(error_of(tiny_set("/layers/1/name", "bn-1")) ==
          "spec.json: /layers/1/name: a name must start with a letter or '_' and hold only letters, digits and '_' "
          "(got \"bn-1\")");
    CHECK(error_of(tiny_set("/name", "tiny.v2")) ==
          "spec.json: /name: a name must start with a letter or '_' and hold only letters, digits and '_' "
          "(got \"tiny.v2\")");
    // The first layer reads the fourth: conv1 -> bn1 -> relu1 -> pool1 -> conv1.
    CHECK(error_of(tiny_set("/layers/0/input", "pool1")) ==
          "spec.json: /layers/0/input: cycle: conv1 -> bn1 -> relu1 -> pool1 -> conv1 (got \"pool1\")");
    CHECK(error_of(tiny_set("/layers/1/input", "bn1")) ==
          "spec.json: /layers/1/input: cycle: bn1 -> bn1 (got \"bn1\")");
}

TEST_CASE("add: missing inputs, mismatched shapes") {
    const json add = {{"name", "sum"}, {"op", "add"}, {"inputs", {"conv1", "input"}}};
    CHECK(error_of(tiny_layers({kConv, {{"name", "sum"}, {"op", "add"}}, kGap, kFc})) ==
          "spec.json: /layers/1: missing key \"inputs\" (got {\"name\":\"sum\",\"op\":\"add\"})");
    CHECK(error_of(tiny_layers({kConv, {{"name", "sum"}, {"op", "add"}, {"inputs", {"conv1"}}}, kGap, kFc})) ==
          "spec.json: /layers/1/inputs: must be a list of two node names (got [\"conv1\"])");
    CHECK(error_of(tiny_layers({kConv, {{"name", "sum"}, {"op", "add"}, {"inputs", {"conv1", 2}}}, kGap, kFc})) ==
          "spec.json: /layers/1/inputs/1: must be a node name (got 2)");
    CHECK(error_of(tiny_layers({kConv, {{"name", "sum"}, {"op", "add"}, {"inputs", {"conv1", "conv2"}}}, kGap, kFc})) ==
          "spec.json: /layers/1/inputs/1: unknown node; did you mean \"conv1\"? (got \"conv2\")");
    CHECK(error_of(tiny_layers({kConv, add, kGap, kFc})) ==
          "spec.json: /layers/1/inputs: add \"sum\": shapes differ: \"conv1\" is [32,8,28,28], \"input\" is "
          "[32,1,28,28] (got [32,8,28,28] and [32,1,28,28])");
    // A stage whose first block changes channels without its 1x1 projection.
    CHECK(error_of(tiny_set("/layers/5/projection", false)) ==
          "spec.json: /layers/5: add \"stage2.0.add\": shapes differ: \"stage2.0.bn2\" is [32,16,4,4], \"stage1.1.relu2\" "
          "is [32,8,7,7] (set \"projection\": true for a 1x1 conv on the shortcut) (got [32,16,4,4] and [32,8,7,7])");
}

TEST_CASE("windows larger than the padded input") {
    CHECK(error_of(tiny_set("/layers/0/kernel", 35)) ==
          "spec.json: /layers/0/kernel: conv \"conv1\": kernel is larger than the padded input 34x34 (input 28x28, "
          "padding 3) (got 35)");
    CHECK(error_of(tiny_set("/layers/3/kernel", 17)) ==
          "spec.json: /layers/3/kernel: maxpool \"pool1\": kernel is larger than the padded input 16x16 (input "
          "14x14, padding 1) (got 17)");
}

TEST_CASE("sizes whose element count overflows") {
    CHECK(error_of(tiny_set("/batch", 2147483647)) ==
          "spec.json: /input: input \"input\": output [2147483647,1,28,28] has more elements than a Halide buffer "
          "can index (2147483647) (got 1683627179248)");
    CHECK(error_of(tiny_set("/layers/0/channels", 2000000000)) ==
          "spec.json: /layers/0: conv \"conv1\": output [32,2000000000,14,14] has more elements than a Halide "
          "buffer can index (2147483647) (got 12544000000000)");
    CHECK(error_of(tiny_layers({kGap, {{"name", "fc"}, {"op", "dense"}, {"units", 2147483647}}})) ==
          "spec.json: /layers/1: dense \"fc\": output [32,2147483647] has more elements than a Halide buffer can "
          "index (2147483647) (got 68719476704)");
    // The output fits, the weight [400000, 8*28*28] does not.
    CHECK(error_of(tiny_layers({kConv, {{"name", "fc"}, {"op", "dense"}, {"units", 400000}}})) ==
          "spec.json: /layers/1: dense \"fc\": weight [400000,6272] has more elements than a Halide buffer can "
          "index (2147483647) (got 2508800000)");
}

TEST_CASE("graphs that cannot train") {
    CHECK(error_of(tiny_layers(json::array())) == "spec.json: /layers: empty layer list (got [])");
    CHECK(error_of(tiny_with([](json &s) {
              s["classes"] = 1;
              s["layers"] = {kGap, {{"name", "relu"}, {"op", "relu"}}};
          })) == "spec.json: /layers: the model has no trainable parameters (no conv, batchnorm or dense layer) "
                 "(got 0 parameters)");
    CHECK(error_of(tiny_layers({kConv, kGap})) ==
          "spec.json: /layers/1: the last layer must output the logits [32,10] = [batch, classes] (got [32,8,1,1])");
    CHECK(error_of(tiny_layers({kConv, {{"name", "extra"}, {"op", "relu"}}, {{"name", "gap"}, {"op", "global_avgpool"}, {"input", "conv1"}}, kFc})) ==
          "spec.json: /layers/1: the output of \"extra\" is never used (only the last layer may be unused) (got \"extra\")");
    CHECK(error_of(tiny_layers({kGap, kFc, {{"name", "conv2"}, {"op", "conv"}, {"channels", 10}, {"kernel", 1}}})) ==
          "spec.json: /layers/2: conv \"conv2\" needs a 4-D input [N,C,H,W] (got [32,10])");
}

TEST_CASE("the input section must match the data section") {
    CHECK(error_of(tiny_set("/input/channels", 3)) ==
          "spec.json: /input/channels: fashion-mnist images have 1 channel(s) (got 3)");
    CHECK(error_of(tiny_set("/input/height", 32)) ==
          "spec.json: /input: without data.resize the input must be the dataset's 28x28 (got 32x28)");
    CHECK(error_of(tiny_set("/data/resize", {32, 32})) ==
          "spec.json: /input: height x width must equal data.resize 32x32 (got 28x28)");
    CHECK(error_of(tiny_set("/data/resize", {32, 0})) == "spec.json: /data/resize/1: must be positive (got 0)");
    CHECK(error_of(tiny_set("/data/resize", "none")) == "no error");
}

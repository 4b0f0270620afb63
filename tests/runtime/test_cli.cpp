// The trainer's flags: values, defaults, and every usage error's message.
#include <catch2/catch.hpp>

#include "cli.h"

using Catch::Matchers::Contains;

namespace {

hlnet::TrainOptions parse(std::vector<const char *> args) {
    args.insert(args.begin(), "tiny_train");
    return hlnet::parse_train_args(int(args.size()), args.data());
}

}  // namespace

TEST_CASE("no flags leave the spec's recipe", "[cli]") {
    const hlnet::TrainOptions o = parse({});
    CHECK_FALSE(o.epochs);
    CHECK_FALSE(o.lr);
    CHECK_FALSE(o.seed);
    CHECK_FALSE(o.max_steps);
    CHECK_FALSE(o.no_shuffle);
    CHECK(o.data == "/usr/share/datasets/fashion-mnist");
    CHECK(o.save.empty());
}

TEST_CASE("flags take separate and attached values", "[cli]") {
    const hlnet::TrainOptions o = parse({"--epochs", "3", "--lr=0.01", "--seed", "0", "--max-steps=100",
                                         "--no-shuffle", "--data", "/d", "--save", "a.safetensors", "--log", "l"});
    CHECK(*o.epochs == 3);
    CHECK(*o.lr == 0.01);
    CHECK(*o.seed == 0);
    CHECK(*o.max_steps == 100);
    CHECK(o.no_shuffle);
    CHECK(o.data == "/d");
    CHECK(o.save == "a.safetensors");
    CHECK(o.log == "l");
    CHECK(parse({"--help"}).help);
    CHECK(parse({"--resume", "r"}).resume == "r");
    CHECK(parse({"--load", "r", "--eval-only"}).eval_only);
}

TEST_CASE("malformed flags are usage errors", "[cli]") {
    using E = hlnet::UsageError;
    CHECK_THROWS_AS(parse({"--epoch", "3"}), E);
    CHECK_THROWS_WITH(parse({"--epoch", "3"}), "unknown flag '--epoch'");
    CHECK_THROWS_WITH(parse({"-e"}), "unexpected argument '-e'");
    CHECK_THROWS_WITH(parse({"train.json"}), "unexpected argument 'train.json'");
    CHECK_THROWS_WITH(parse({"--epochs"}), "--epochs needs a value (N)");
    CHECK_THROWS_WITH(parse({"--epochs", "3x"}), "--epochs: '3x' is not a non-negative integer");
    CHECK_THROWS_WITH(parse({"--epochs", "-1"}), "--epochs: '-1' is not a non-negative integer");
    CHECK_THROWS_WITH(parse({"--epochs", "99999999999999999999"}), Contains("is not a non-negative integer"));
    CHECK_THROWS_WITH(parse({"--epochs", "0"}), "--epochs: must be at least 1");
    CHECK_THROWS_WITH(parse({"--lr", "fast"}), "--lr: 'fast' is not a finite number");
    CHECK_THROWS_WITH(parse({"--lr", "nan"}), "--lr: 'nan' is not a finite number");
    CHECK_THROWS_WITH(parse({"--lr", "0"}), "--lr: must be positive");
    CHECK_THROWS_WITH(parse({"--log-every", "0"}), "--log-every: must be at least 1");
    CHECK_THROWS_WITH(parse({"--save="}), "--save: the value is empty");
    CHECK_THROWS_WITH(parse({"--no-shuffle=1"}), "--no-shuffle takes no value");
    CHECK_THROWS_WITH(parse({"--load", "a", "--resume", "b"}), "--load and --resume exclude each other");
    CHECK_THROWS_WITH(parse({"--eval-only", "--save", "a"}), "--eval-only trains nothing to --save");
}

TEST_CASE("the usage text lists every flag", "[cli]") {
    hlnet::TrainOptions o;
    const auto flags = hlnet::train_flags(&o);
    const std::string text = hlnet::usage_text("tiny_train", "Trains.", flags);
    CHECK_THAT(text, Contains("usage: tiny_train [flags]\nTrains.\n"));
    CHECK_THAT(text, Contains("  --epochs N "));
    CHECK_THAT(text, Contains("  --no-shuffle "));
    for (const char *name : {"--epochs", "--lr", "--seed", "--max-steps", "--no-shuffle", "--eval-only", "--data",
                             "--save", "--load", "--resume", "--log", "--help"})
        CHECK_THAT(text, Contains(std::string("  ") + name + " "));
}

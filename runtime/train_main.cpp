// NAME_train: the fixed training binary of one spec (runtime/ + NAME_graph).
// Exit status: 0 done, 1 failed (message on stderr), 2 usage error.
#include <cstdio>

#include "cli.h"
#include "trainer.h"

int main(int argc, char **argv) {
    const char *summary =
        "Trains this build's model on an IDX image dataset (Fashion-MNIST by default) with its spec's recipe.";
    hlnet::TrainOptions options;
    try {
        options = hlnet::parse_train_args(argc, argv);
    } catch (const hlnet::UsageError &e) {
        std::fprintf(stderr, "%s: %s\nusage: %s [flags] (--help lists them)\n", argv[0], e.what(), argv[0]);
        return 2;
    }
    if (options.help) {
        std::printf("%s", hlnet::usage_text(argv[0], summary, hlnet::train_flags(&options)).c_str());
        return 0;
    }
    try {
        return hlnet::run_trainer(options);
    } catch (const hlnet::Error &e) {
        std::fflush(stdout);
        std::fprintf(stderr, "hlnet: %s\n", e.what());
        return 1;
    }
}

// NAME_train: the fixed training binary of one spec (runtime/ + NAME_graph).
// Started by mpirun, one data-parallel rank of a run (runtime/distributed.h).
// Exit status: 0 done, 1 failed (message on stderr), 2 usage error.
#include <cstdio>
#include <memory>

#include "cli.h"
#include "distributed.h"
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
    std::unique_ptr<hlnet::World> world;
    try {
        world = std::make_unique<hlnet::World>();
        return hlnet::run_trainer(options, *world);
    } catch (const hlnet::JobError &e) {  // every rank is here: rank 0 says why, all exit 1
        std::fflush(stdout);
        if (world->is_root()) std::fprintf(stderr, "hlnet: %s\n", e.what());
        return 1;
    } catch (const std::exception &e) {  // this rank alone: it ends the whole job
        if (world) world->abort(e.what());
        std::fprintf(stderr, "hlnet: %s\n", e.what());
        return 1;
    }
}

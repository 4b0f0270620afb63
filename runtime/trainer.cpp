#include "trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

#include "device.h"
#include "error.h"
#include "progress.h"
#include "random.h"
#include "scratch_pool.h"

namespace hlnet {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// The last message from Halide's runtime; check_pipeline() reports it.
char halide_error_message[2048];

void on_halide_error(void *, const char *message) {
    std::snprintf(halide_error_message, sizeof halide_error_message, "%s", message);
    const size_t n = std::strlen(halide_error_message);
    if (n > 0 && halide_error_message[n - 1] == '\n') halide_error_message[n - 1] = '\0';
}

// A 1-D float arena of `floats` elements (at least one, so it has an address).
Halide::Runtime::Buffer<float> arena(int64_t floats, const char *what) {
    if (floats > INT_MAX) fail("the %s arena needs %lld floats; Halide buffers hold at most %d", what,
                               (long long)floats, INT_MAX);
    Halide::Runtime::Buffer<float> b(int(std::max<int64_t>(floats, 1)));
    b.fill(0.0f);
    return b;
}

void fill_tensor(float *arena, const TensorInfo &t, Rng *rng) {
    float *p = arena + t.offset;
    const int64_t n = numel(shape_of(t));
    switch (t.init) {
    case Init::Zeros: std::fill(p, p + n, 0.0f); break;
    case Init::Ones: std::fill(p, p + n, 1.0f); break;
    case Init::Xavier: {
        const double a = std::sqrt(6.0 / double(t.fan_in + t.fan_out));
        for (int64_t i = 0; i < n; i++) p[i] = float((2.0 * rng->uniform() - 1.0) * a);
        break;
    }
    }
}

}  // namespace

void install_halide_error_handler() { halide_set_error_handler(on_halide_error); }

const char *last_halide_error() { return halide_error_message; }

void check_pipeline(int status, const char *phase, int64_t step) {
    if (status == 0) return;
    fail("%s failed at step %lld (Halide error %d): %s", phase, (long long)step, status,
         halide_error_message[0] ? halide_error_message : "no message");
}

// ---- Model ----------------------------------------------------------------------

Model::Model()
    : info(model_info()),
      params(arena(info.param_floats, "params")),
      grads(arena(info.param_floats, "grads")),
      velocity(arena(info.param_floats, "velocity")),
      state(arena(info.state_floats, "state")),
      activations(arena((info.activation_bytes + 3) / 4, "activation")) {
    arenas_ = {params.raw_buffer(), grads.raw_buffer(), velocity.raw_buffer(), state.raw_buffer(),
               activations.raw_buffer()};
    // The views that Graph makes are crops of the device allocations, so those
    // must exist first; they live until the Model goes.
    if (const halide_device_interface_t *device = pipeline_device()) {
        upload();
        if (activations.device_malloc(device) != 0) fail("cannot allocate the activation arena on the device");
    }
    graph_ = std::make_unique<Graph>(arenas_);
}

void Model::initialize(uint64_t seed) {
    Rng rng(stream_seed(seed, 0));
    for (int i = 0; i < info.num_params; i++) fill_tensor(params.data(), info.params[i], &rng);
    for (int i = 0; i < info.num_states; i++) {
        if (info.states[i].init == Init::Xavier) fail("state tensor '%s' asks for Xavier init", info.states[i].name);
        fill_tensor(state.data(), info.states[i], &rng);
    }
    velocity.fill(0.0f);
    upload();
}

RunState Model::load(const std::string &path) {
    const RunState run = load_model(path, info, params.data(), state.data());
    velocity.fill(0.0f);
    upload();
    return run;
}

RunState Model::resume(const std::string &path) {
    const RunState run = load_model(path, info, params.data(), state.data());
    load_velocity(path, info, run, velocity.data());
    upload();
    return run;
}

void Model::save(const std::string &path, const RunState &run) {
    download();
    save_checkpoint(path, info, params.data(), state.data(), velocity.data(), run);
}

void Model::upload() {
    const halide_device_interface_t *device = pipeline_device();
    if (!device) return;
    for (auto *b : {&params, &grads, &velocity, &state}) {
        b->set_host_dirty();
        if (b->copy_to_device(device) != 0) fail("cannot copy an arena to the device: %s", halide_error_message);
    }
}

void Model::download() {
    if (!pipeline_device()) return;
    // The pipelines write through views (device crops of the arenas), whose
    // dirty flags are their own: mark each arena device-dirty to copy it.
    for (auto *b : {&params, &grads, &velocity, &state}) {
        b->set_device_dirty();
        if (b->copy_to_host() != 0) fail("cannot copy an arena to the host: %s", halide_error_message);
    }
}

// ---- batches and evaluation ----------------------------------------------------------

BatchInput::BatchInput(Split &split, int batch) : split(split), indices(batch) {
    indices.fill(0);
    // The whole split lives on the device for the run; per step only the
    // indices move.
    if (const halide_device_interface_t *device = pipeline_device()) {
        split.images.set_host_dirty();  // filled through data(), which Halide cannot see
        split.labels.set_host_dirty();
        if (split.images.copy_to_device(device) != 0 || split.labels.copy_to_device(device) != 0)
            fail("cannot copy the dataset to the device: %s", halide_error_message);
    }
}

double evaluate(Model &model, BatchInput &input, const World &world) {
    const int batch = model.info.batch, global_batch = batch * world.size();
    const int count = input.split.count();
    double correct = 0;
    for (int global_first = 0; global_first < count; global_first += global_batch) {
        const int first = global_first + world.rank() * batch;
        const int valid = std::min(batch, count - first);
        if (valid <= 0) break;  // the last global batch has no slice for this rank
        for (int i = 0; i < batch; i++) input.indices(i) = first + std::min(i, valid - 1);
        input.indices.set_host_dirty();
        Metrics m{};
        check_pipeline(model.graph().forward(input.batch(), false, valid, &m), "evaluation", first / batch);
        correct += m.correct;
    }
    world.sum(&correct, 1);
    return correct / count;
}

void share_model(Model &model, const World &world) {
    if (world.size() == 1) return;
    model.download();
    for (auto *b : {&model.params, &model.state, &model.velocity})
        world.broadcast(b->data(), int64_t(b->number_of_elements()) * 4);
    model.upload();
}

// ---- one training step, on every rank ------------------------------------------------

TrainingStep::TrainingStep(Model &model, const World &world, bool sync_batchnorm)
    : model_(model), world_(world), averager_(world, model.info, model.grads.raw_buffer()), global_batchnorm_(&world) {
    if (world.size() > 1 && pipeline_device() && !world.on_device())
        fail("data-parallel training of a GPU build needs NCCL, which this build has not (a cuda build finds it "
             "in the CUDA toolkit; OpenCL builds have none): run one process, or use the host target");
    model.graph().set_batchnorm_reducer(sync_batchnorm ? &global_batchnorm_ : nullptr);
}

std::vector<Metrics> TrainingStep::forward(BatchInput &input, int64_t step) {
    Metrics m{};
    check_pipeline(model_.graph().forward(input.batch(), true, model_.info.batch, &m), "forward", step);
    const double mine[2] = {m.loss, double(m.correct)};
    const std::vector<double> all = world_.gather(mine, 2);
    std::vector<Metrics> by_rank;
    for (size_t r = 0; r < all.size() / 2; r++) by_rank.push_back({float(all[2 * r]), int(all[2 * r + 1])});
    return by_rank;
}

void TrainingStep::backward(int64_t step) {
    check_pipeline(model_.graph().backward(world_.size() > 1 ? &averager_ : nullptr), "backward", step);
    averager_.finish();
}

void TrainingStep::update(float lr, float momentum, float weight_decay, int64_t step) {
    check_pipeline(model_.graph().update(lr, momentum, weight_decay), "update", step);
    if (world_.on_device()) world_.broadcast_on_device(model_.state.raw_buffer());
    else world_.broadcast(model_.state.data(), int64_t(model_.state.number_of_elements()) * 4);
}

// ---- the training run ----------------------------------------------------------------

namespace {

struct FileCloser {
    void operator()(FILE *f) const { std::fclose(f); }
};

class TrainingRun {
public:
    TrainingRun(const TrainOptions &options, Model &model, const World &world, Split &train, Split &test,
                RunState run)
        : opt_(options), model_(model), info_(model.info), world_(world), step_(model, world, options.sync_bn),
          train_(train, info_.batch), test_(test, info_.batch), run_(run), order_(train.count()),
          // Plain lines under mpirun: it hands its processes a terminal even when its own output is a log.
          progress_(stdout, isatty(fileno(stdout)) && world.size() == 1, options.log_every.value_or(kDefaultLogEvery)) {
        epochs_ = opt_.epochs.value_or(info_.epochs);
        lr_ = float(opt_.lr.value_or(info_.lr));
        global_batch_ = info_.batch * world.size();
        steps_per_epoch_ = train.count() / global_batch_;  // the last partial batch is dropped
        if (steps_per_epoch_ == 0)
            fail("the training split holds %d images, fewer than one batch of %d", train.count(), global_batch_);
        if (run_.step < run_.epoch * steps_per_epoch_ || run_.step > (run_.epoch + 1) * steps_per_epoch_)
            fail("checkpoint at step %lld after %lld epochs does not match %lld steps per epoch",
                 (long long)run_.step, (long long)run_.epoch, (long long)steps_per_epoch_);
        if (!opt_.log.empty() && world.is_root()) {
            log_.reset(std::fopen(opt_.log.c_str(), "a"));  // appends: a resumed run continues its log
            if (!log_) fail("%s: cannot open for writing (%s)", opt_.log.c_str(), std::strerror(errno));
        }
    }

    void run() {
        if (run_.epoch >= epochs_)
            std::printf("nothing to train: %lld of %lld epochs are done\n", (long long)run_.epoch, (long long)epochs_);
        for (int64_t epoch = run_.epoch; epoch < epochs_; epoch++)
            if (!train_epoch(epoch)) break;
    }

private:
    static constexpr int64_t kDefaultLogEvery = 50;

    // Trains the rest of `epoch`, evaluates and reports; false when the run
    // stops inside it (--max-steps).
    bool train_epoch(int64_t epoch) {
        const auto start = Clock::now();
        const int batch = info_.batch, first_of_rank = world_.rank() * batch;
        int64_t step_in_epoch = run_.step - epoch * steps_per_epoch_;
        const int64_t first_step = step_in_epoch;

        // The order depends only on (seed, epoch): a resumed epoch sees the same batches.
        std::iota(order_.begin(), order_.end(), 0);
        if (!opt_.no_shuffle) Rng(stream_seed(run_.seed, 1 + uint64_t(epoch))).shuffle(order_.data(), int64_t(order_.size()));

        bool stopped = false;
        while (step_in_epoch < steps_per_epoch_) {
            if (opt_.max_steps && run_.step >= *opt_.max_steps) {
                stopped = true;
                break;
            }
            // This rank's slice of the global batch.
            for (int i = 0; i < batch; i++)
                train_.indices(i) = order_[size_t(step_in_epoch * global_batch_ + first_of_rank + i)];
            train_.indices.set_host_dirty();

            // Every rank sees every rank's metrics, so all stop together.
            const std::vector<Metrics> metrics = step_.forward(train_, run_.step);
            double loss = 0;
            for (size_t r = 0; r < metrics.size(); r++) {
                if (!std::isfinite(metrics[r].loss)) stop_on_bad_loss(metrics[r].loss, int(r), epoch, step_in_epoch);
                loss += metrics[r].loss / double(metrics.size());
                run_.epoch_correct += metrics[r].correct;
            }
            step_.backward(run_.step);
            step_.update(lr_, info_.momentum, info_.weight_decay, run_.step);

            run_.step++;
            step_in_epoch++;
            run_.epoch_loss_sum += loss * global_batch_;
            report_step(epoch, step_in_epoch, step_in_epoch - first_step, seconds_since(start), float(loss));
        }
        progress_.clear();
        if (stopped) std::printf("stopping after step %lld (--max-steps)\n", (long long)run_.step);
        if (step_in_epoch == 0) return !stopped;  // stopped before this epoch began

        const double test_acc = evaluate(model_, test_, world_);
        const double seconds = seconds_since(start);
        const double examples = double(step_in_epoch) * global_batch_;
        const double loss = run_.epoch_loss_sum / examples;
        const double train_acc = double(run_.epoch_correct) / examples;
        // The seed's line, verbatim in form.
        std::printf("epoch %lld, loss %.4f, train acc %.3f, test acc %.3f, time %.1f sec\n",
                    (long long)epoch + 1, loss, train_acc, test_acc, seconds);
        std::fflush(stdout);
        if (log_)
            log_record("epoch", epoch, step_in_epoch, loss, train_acc,
                       strprintf(", \"test_acc\": %.6g, \"time_s\": %.3f", test_acc, seconds).c_str());

        if (!stopped) run_ = {epoch + 1, run_.step, 0.0, 0, run_.seed, run_.ranks, ""};
        if (!opt_.save.empty() && world_.is_root()) {
            model_.save(opt_.save, run_);
            saved_ = true;
        }
        return !stopped;
    }

    void report_step(int64_t epoch, int64_t step_in_epoch, int64_t steps_here, double seconds, float batch_loss) {
        const double examples = double(step_in_epoch) * global_batch_;
        const double rate = steps_here * global_batch_ / std::max(seconds, 1e-9);
        ProgressInfo p{epoch + 1,
                       epochs_,
                       step_in_epoch,
                       steps_per_epoch_,
                       run_.epoch_loss_sum / examples,
                       double(run_.epoch_correct) / examples,
                       rate,
                       double(steps_per_epoch_ - step_in_epoch) * global_batch_ / std::max(rate, 1e-9)};
        progress_.update(p);
        if (log_ && step_in_epoch % opt_.log_every.value_or(kDefaultLogEvery) == 0) {
            char extra[128];
            std::snprintf(extra, sizeof extra, ", \"batch_loss\": %.6g, \"images_per_s\": %.1f", batch_loss, rate);
            log_record("step", epoch, step_in_epoch, p.loss, p.accuracy, extra);
        }
    }

    // One JSON line; `extra` continues the object (", \"key\": value ...").
    void log_record(const char *event, int64_t epoch, int64_t step_in_epoch, double loss, double train_acc,
                    const char *extra) {
        std::fprintf(log_.get(),
                     "{\"event\": \"%s\", \"spec\": \"%s\", \"epoch\": %lld, \"step_in_epoch\": %lld, "
                     "\"step\": %lld, \"loss\": %.6g, \"train_acc\": %.6g%s}\n",
                     event, info_.name, (long long)epoch + 1, (long long)step_in_epoch, (long long)run_.step,
                     loss, train_acc, extra);
        std::fflush(log_.get());
    }

    // Every rank stops here together, having seen the same metrics.
    [[noreturn]] void stop_on_bad_loss(float loss, int rank, int64_t epoch, int64_t step_in_epoch) {
        std::string kept = "no checkpoint was written (--save FILE keeps one per epoch)";
        if (saved_ || (!opt_.save.empty() && access(opt_.save.c_str(), F_OK) == 0))
            kept = "the last good checkpoint, " + opt_.save + ", is kept";
        const std::string where = world_.size() > 1 ? strprintf(" on rank %d", rank) : "";
        throw JobError(strprintf("loss is %s%s at step %lld (epoch %lld, batch %lld of %lld): stopping before the "
                                 "update; %s",
                                 std::isnan(loss) ? "NaN" : "infinite", where.c_str(), (long long)run_.step + 1,
                                 (long long)epoch + 1, (long long)step_in_epoch + 1, (long long)steps_per_epoch_,
                                 kept.c_str()));
    }

    const TrainOptions &opt_;
    Model &model_;
    const ModelInfo &info_;
    const World &world_;
    TrainingStep step_;
    BatchInput train_, test_;
    RunState run_;
    std::vector<int32_t> order_;  // this epoch's permutation of the training split
    Progress progress_;
    std::unique_ptr<FILE, FileCloser> log_;
    int64_t epochs_ = 0, steps_per_epoch_ = 0;
    int global_batch_ = 0;  // the spec's batch: info_.batch on each of the ranks
    float lr_ = 0;
    bool saved_ = false;
};

void print_model(const ModelInfo &info, int64_t epochs, double lr, uint64_t seed, int ranks) {
    int64_t weights = 0;
    for (int i = 0; i < info.num_params; i++) weights += numel(shape_of(info.params[i]));
    const std::string batch = ranks == 1 ? std::to_string(info.batch)
                                         : strprintf("%d (%d ranks x %d)", info.batch * ranks, ranks, info.batch);
    std::printf("%s: %lld parameters, input %dx%dx%d, %d classes, batch %s; epochs %lld, lr %g, "
                "momentum %g, weight decay %g, seed %llu\n",
                info.name, (long long)weights, info.channels, info.height, info.width, info.classes, batch.c_str(),
                (long long)epochs, lr, info.momentum, info.weight_decay, (unsigned long long)seed);
}

}  // namespace

int run_trainer(const TrainOptions &opt, const World &world) {
    install_halide_error_handler();
    install_scratch_pool();
    Model model;
    const ModelInfo &info = model.info;
    if (info.ranks != world.size())
        fail("this trainer is built for %d rank%s (HLNET_RANKS=%d, batch %d each) but runs as %d: %s", info.ranks,
             info.ranks == 1 ? "" : "s", info.ranks, info.batch, world.size(),
             info.ranks == 1 ? "rebuild with -DHLNET_RANKS=N to train on N ranks"
                             : strprintf("start it with mpirun -np %d, or rebuild with -DHLNET_RANKS", info.ranks).c_str());
    if (!world.is_root() && !std::freopen("/dev/null", "w", stdout))  // only rank 0 prints
        fail("cannot silence the standard output of rank %d", world.rank());
    if (!opt.schedule.empty()) model.graph().select_schedule(opt.schedule);  // before any work: it may fail

    // Rank 0 reads any checkpoint (only it needs the file), then sends the
    // model and the run's state to the others.
    RunState run;
    run.seed = opt.seed ? uint64_t(*opt.seed) : info.seed;
    run.ranks = world.size();
    if (!opt.resume.empty() && world.is_root()) {
        run = model.resume(opt.resume);
        if (opt.seed && uint64_t(*opt.seed) != run.seed)
            fail("--seed %lld: %s was trained with seed %llu, and a resumed run keeps it", (long long)*opt.seed,
                 opt.resume.c_str(), (unsigned long long)run.seed);
        if (run.ranks != world.size())
            fail("--resume %s: the run was trained on %lld rank%s and cannot go on with %d (the batch each rank "
                 "takes would change); resume it with mpirun -np %lld",
                 opt.resume.c_str(), (long long)run.ranks, run.ranks == 1 ? "" : "s", world.size(),
                 (long long)run.ranks);
        std::printf("resuming %s: %lld epochs and %lld steps done\n", opt.resume.c_str(), (long long)run.epoch,
                    (long long)run.step);
    } else if (!opt.load.empty() && world.is_root()) {
        model.load(opt.load);  // weights only: the run itself starts afresh
        std::printf("loaded %s\n", opt.load.c_str());
    } else {
        model.initialize(run.seed);
    }
    share_model(model, world);
    struct {
        int64_t epoch, step, correct;
        double loss_sum;
        uint64_t seed;
    } shared = {run.epoch, run.step, run.epoch_correct, run.epoch_loss_sum, run.seed};
    world.broadcast(&shared, sizeof shared);
    run = {shared.epoch, shared.step, shared.loss_sum, shared.correct, shared.seed, world.size(), ""};
    print_model(info, opt.epochs.value_or(info.epochs), opt.lr.value_or(info.lr), run.seed, world.size());
    if (!opt.schedule.empty()) std::printf("schedule %s\n", opt.schedule.c_str());

    Split test = load_split(opt.data, "t10k", info.classes);
    if (opt.eval_only) {
        const auto start = Clock::now();
        BatchInput input(test, info.batch);
        const double acc = evaluate(model, input, world);
        std::printf("test acc %.3f, time %.1f sec\n", acc, seconds_since(start));
        return 0;
    }
    Split train = load_split(opt.data, "train", info.classes);
    std::printf("data: %d training and %d test images of %dx%d from %s\n", train.count(), test.count(),
                train.images.dim(0).extent(), train.images.dim(1).extent(), opt.data.c_str());
    std::fflush(stdout);

    TrainingRun(opt, model, world, train, test, run).run();
    return 0;
}

}  // namespace hlnet

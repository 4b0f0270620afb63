// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header size, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian data.
//
// A model checkpoint holds exactly what PyTorch's state_dict() of the module
// that tools/torch_reference.py builds from the same spec holds, under the same
// names, so `module.load_state_dict(tensors, strict=True)` works: every
// parameter and BN running statistic (float32, PyTorch layouts) and one
// "<bn>.num_batches_tracked" (int64 scalar) per batch norm. The SGD velocity,
// needed only by --resume, lives beside it in a second file (optimizer_path()),
// keyed by parameter name, as PyTorch keeps optimizer state apart from the model.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "graph_api.h"

namespace hlnet {

// ---- the safetensors container ---------------------------------------------

enum class Dtype { F32, I64 };
using Metadata = std::map<std::string, std::string>;

struct NamedTensor {
    std::string name;
    Dtype dtype;
    std::vector<int64_t> shape;  // PyTorch order; empty for a scalar
    const void *data;            // numel * dtype size bytes
};

// Writes atomically: a temporary file beside `path`, fsync, then rename, so a
// crash leaves either the old file or the new one, never half of one.
void write_safetensors(const std::string &path, const std::vector<NamedTensor> &tensors,
                       const Metadata &metadata);

// A whole safetensors file read into memory, checked on the way in.
class SafetensorsFile {
public:
    struct Entry {
        Dtype dtype;
        std::vector<int64_t> shape;
        const uint8_t *data;
        int64_t bytes;
    };
    explicit SafetensorsFile(const std::string &path);
    const Entry *find(const std::string &name) const;  // nullptr if absent
    const std::map<std::string, Entry> &entries() const { return entries_; }
    const Metadata &metadata() const { return metadata_; }
    const std::string &path() const { return path_; }

private:
    std::string path_;
    std::vector<uint8_t> bytes_;
    std::map<std::string, Entry> entries_;
    Metadata metadata_;
};

// ---- hlnet checkpoints -----------------------------------------------------

std::vector<int64_t> shape_of(const TensorInfo &t);  // PyTorch order, rank entries
int64_t numel(const std::vector<int64_t> &shape);

// Where a run stands; stored as metadata so that --resume continues exactly.
struct RunState {
    int64_t epoch = 0;           // completed epochs
    int64_t step = 0;            // completed training steps, over all epochs
    double epoch_loss_sum = 0;   // sum of per-example losses so far in the current epoch
    int64_t epoch_correct = 0;   // correct predictions so far in the current epoch
    uint64_t seed = 0;           // the seed of the run (initialisation and shuffling)
    int64_t ranks = 1;           // data-parallel processes that trained it
    std::string pair;            // written to the model and optimizer files of one save (load_velocity)
};

// "run.safetensors" -> "run.optimizer.safetensors"; any other name gets
// ".optimizer.safetensors" appended.
std::string optimizer_path(const std::string &model_path);
std::string previous_optimizer_path(const std::string &model_path);  // "run.optimizer.previous.safetensors"

// Writes the model file and, when `velocity` is given, its optimizer file,
// both marked with one pair id (a hash of what they hold). The optimizer file goes first, and the
// one it replaces is kept as "<stem>.optimizer.previous.safetensors", so a
// crash between the two writes leaves the old model file with its optimizer
// file still beside it.
void save_checkpoint(const std::string &path, const ModelInfo &info, const float *params,
                     const float *state, const float *velocity, const RunState &run);

// Fills params and state from a model checkpoint of the same spec; every
// tensor must be there with its shape, and nothing else. Returns its RunState.
RunState load_model(const std::string &path, const ModelInfo &info, float *params, float *state);

// Fills velocity from the optimizer file that pairs with the model
// checkpoint at `path` (the current one, else the previous one); fails when
// neither does.
void load_velocity(const std::string &path, const ModelInfo &info, const RunState &run,
                   float *velocity);

}  // namespace hlnet

#include "checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <nlohmann/json.hpp>

#include "error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

namespace hlnet {

namespace {

constexpr int64_t kMaxHeaderBytes = 100 << 20;  // the limit the reference implementation uses

const char *dtype_name(Dtype d) { return d == Dtype::F32 ? "F32" : "I64"; }
int64_t dtype_bytes(Dtype d) { return d == Dtype::F32 ? 4 : 8; }

std::string shape_string(const std::vector<int64_t> &shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

void write_all(int fd, const void *data, size_t n, const std::string &path) {
    auto *p = static_cast<const uint8_t *>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) fail("%s: write failed: %s", path.c_str(), std::strerror(errno));
        p += w;
        n -= size_t(w);
    }
}

// Makes a finished rename durable: fsync the directory that holds the file.
void sync_directory_of(const std::string &path) {
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

std::string bn_prefix(const std::string &state_name) {
    static const std::string suffix = ".running_mean";
    if (state_name.size() > suffix.size() &&
        state_name.compare(state_name.size() - suffix.size(), suffix.size(), suffix) == 0)
        return state_name.substr(0, state_name.size() - suffix.size());
    return "";
}

// Copies named float32 tensors out of `file` into `arena` at their offsets.
void read_tensors(const SafetensorsFile &file, const TensorInfo *infos, int count, float *arena) {
    for (int i = 0; i < count; i++) {
        const TensorInfo &t = infos[i];
        const SafetensorsFile::Entry *e = file.find(t.name);
        if (!e) fail("%s: tensor '%s' is missing", file.path().c_str(), t.name);
        if (e->dtype != Dtype::F32 || e->shape != shape_of(t))
            fail("%s: tensor '%s' is %s %s but the model has F32 %s", file.path().c_str(), t.name,
                 dtype_name(e->dtype), shape_string(e->shape).c_str(),
                 shape_string(shape_of(t)).c_str());
        std::memcpy(arena + t.offset, e->data, size_t(e->bytes));
    }
}

const std::string &metadata_value(const SafetensorsFile &file, const char *key) {
    auto it = file.metadata().find(key);
    if (it == file.metadata().end())
        fail("%s: metadata has no \"%s\" (not an hlnet checkpoint?)", file.path().c_str(), key);
    return it->second;
}

// Counts and seeds: unsigned decimal integers.
uint64_t metadata_uint(const SafetensorsFile &file, const char *key) {
    const std::string &s = metadata_value(file, key);
    char *end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || !std::isdigit((unsigned char)s[0]) || *end || errno)
        fail("%s: metadata \"%s\" is '%s', not an unsigned integer", file.path().c_str(), key, s.c_str());
    return v;
}

double metadata_double(const SafetensorsFile &file, const char *key) {
    const std::string &s = metadata_value(file, key);
    char *end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end)
        fail("%s: metadata \"%s\" is '%s', not a number", file.path().c_str(), key, s.c_str());
    return v;
}

// The metadata every hlnet checkpoint file carries.
Metadata run_metadata(const ModelInfo &info, const RunState &run) {
    char loss[64];
    std::snprintf(loss, sizeof loss, "%.17g", run.epoch_loss_sum);  // round-trips exactly
    return {{"format", "hlnet"},
            {"spec", info.name},
            {"epoch", std::to_string(run.epoch)},
            {"step", std::to_string(run.step)},
            {"seed", std::to_string(run.seed)},
            {"epoch_loss_sum", loss},
            {"epoch_correct", std::to_string(run.epoch_correct)},
            {"ranks", std::to_string(run.ranks)},
            {"pair", run.pair}};
}

// What marks the two files of one save: a 64-bit hash of everything saved,
// so that it differs between saves yet a run repeated exactly writes the
// same bytes.
std::string pair_id(const ModelInfo &info, const float *params, const float *state, const float *velocity,
                    const RunState &run) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ uint64_t(run.step);
    auto mix = [&h](const float *data, int64_t floats) {
        for (int64_t i = 0; i < floats; i++) {
            uint32_t bits;
            std::memcpy(&bits, data + i, 4);
            h = (h ^ bits) * 0x100000001b3ull;
            h ^= h >> 29;
        }
    };
    mix(params, info.param_floats);
    mix(state, info.state_floats);
    if (velocity) mix(velocity, info.param_floats);
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", (unsigned long long)h);
    return text;
}

std::string metadata_string(const SafetensorsFile &file, const char *key) {
    auto it = file.metadata().find(key);
    return it == file.metadata().end() ? "" : it->second;
}

void check_spec(const SafetensorsFile &file, const ModelInfo &info) {
    auto it = file.metadata().find("spec");
    if (it != file.metadata().end() && it->second != info.name)
        fail("%s: checkpoint of spec '%s', but this trainer is for '%s'", file.path().c_str(),
             it->second.c_str(), info.name);
}

}  // namespace

// ---- safetensors ------------------------------------------------------------

void write_safetensors(const std::string &path, const std::vector<NamedTensor> &tensors,
                       const Metadata &metadata) {
    nlohmann::ordered_json header;
    if (!metadata.empty()) header["__metadata__"] = metadata;
    int64_t offset = 0;
    for (const NamedTensor &t : tensors) {
        const int64_t bytes = numel(t.shape) * dtype_bytes(t.dtype);
        header[t.name] = {{"dtype", dtype_name(t.dtype)},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string json = header.dump();
    json.append((8 - json.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
    const uint64_t header_size = json.size();

    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail("%s: cannot create (%s)", tmp.c_str(), std::strerror(errno));
    try {
        write_all(fd, &header_size, 8, tmp);
        write_all(fd, json.data(), json.size(), tmp);
        for (const NamedTensor &t : tensors)
            write_all(fd, t.data, size_t(numel(t.shape) * dtype_bytes(t.dtype)), tmp);
        if (::fsync(fd) != 0) fail("%s: fsync failed: %s", tmp.c_str(), std::strerror(errno));
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        fail("%s: cannot rename %s over it (%s)", path.c_str(), tmp.c_str(), std::strerror(err));
    }
    sync_directory_of(path);
}

SafetensorsFile::SafetensorsFile(const std::string &path) : path_(path) {
    const char *p = path.c_str();
    FILE *f = std::fopen(p, "rb");
    if (!f) fail("%s: cannot open (%s)", p, std::strerror(errno));
    std::fseek(f, 0, SEEK_END);
    const long size = std::ftell(f);
    std::fseek(f, 0, SEEK_SET);
    bytes_.resize(size_t(size > 0 ? size : 0));
    const size_t got = std::fread(bytes_.data(), 1, bytes_.size(), f);
    std::fclose(f);
    if (got != bytes_.size()) fail("%s: read failed at byte %zu", p, got);

    const int64_t file_bytes = int64_t(bytes_.size());
    if (file_bytes < 8) fail("%s: truncated at byte %lld: no 8-byte header size", p, (long long)file_bytes);
    uint64_t header_size;
    std::memcpy(&header_size, bytes_.data(), 8);
    if (header_size > uint64_t(kMaxHeaderBytes) || int64_t(header_size) > file_bytes - 8)
        fail("%s: header size %llu at byte 0 does not fit the file's %lld bytes", p,
             (unsigned long long)header_size, (long long)file_bytes);
    const int64_t data_start = 8 + int64_t(header_size);
    const int64_t data_bytes = file_bytes - data_start;

    nlohmann::json header;
    try {
        header = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + data_start);
    } catch (const nlohmann::json::parse_error &e) {
        fail("%s: corrupt JSON header at byte %lld", p, (long long)(8 + e.byte - 1));
    }
    if (!header.is_object()) fail("%s: the JSON header at byte 8 is not an object", p);

    for (auto &[name, value] : header.items()) {
        if (name == "__metadata__") {
            if (!value.is_object()) fail("%s: __metadata__ is not an object", p);
            for (auto &[k, v] : value.items()) {
                if (!v.is_string()) fail("%s: metadata \"%s\" is not a string", p, k.c_str());
                metadata_[k] = v.get<std::string>();
            }
            continue;
        }
        const char *n = name.c_str();
        try {
            const std::string dtype = value.at("dtype").get<std::string>();
            Entry e;
            if (dtype == "F32") e.dtype = Dtype::F32;
            else if (dtype == "I64") e.dtype = Dtype::I64;
            else fail("%s: tensor '%s' has dtype %s; hlnet reads F32 and I64", p, n, dtype.c_str());
            e.shape = value.at("shape").get<std::vector<int64_t>>();
            const auto range = value.at("data_offsets").get<std::vector<int64_t>>();
            for (int64_t d : e.shape)
                if (d < 0) fail("%s: tensor '%s' has a negative dimension", p, n);
            if (range.size() != 2 || range[0] < 0 || range[0] > range[1] || range[1] > data_bytes)
                fail("%s: tensor '%s': data_offsets lie outside the %lld data bytes from byte %lld",
                     p, n, (long long)data_bytes, (long long)data_start);
            e.bytes = range[1] - range[0];
            if (e.bytes != numel(e.shape) * dtype_bytes(e.dtype))
                fail("%s: tensor '%s': %lld bytes at byte %lld for shape %s of %s", p, n,
                     (long long)e.bytes, (long long)(data_start + range[0]),
                     shape_string(e.shape).c_str(), dtype.c_str());
            e.data = bytes_.data() + data_start + range[0];
            entries_[name] = e;
        } catch (const nlohmann::json::exception &) {
            fail("%s: tensor '%s': the header entry needs dtype, shape and data_offsets", p, n);
        }
    }
}

const SafetensorsFile::Entry *SafetensorsFile::find(const std::string &name) const {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : &it->second;
}

// ---- hlnet checkpoints ------------------------------------------------------

std::vector<int64_t> shape_of(const TensorInfo &t) { return std::vector<int64_t>(t.shape, t.shape + t.rank); }

int64_t numel(const std::vector<int64_t> &shape) {
    int64_t n = 1;
    for (int64_t e : shape) n *= e;
    return n;
}

std::string optimizer_path(const std::string &model_path) {
    static const std::string ext = ".safetensors";
    std::string stem = model_path;
    if (stem.size() > ext.size() && stem.compare(stem.size() - ext.size(), ext.size(), ext) == 0)
        stem.resize(stem.size() - ext.size());
    return stem + ".optimizer" + ext;
}

std::string previous_optimizer_path(const std::string &model_path) {
    const std::string current = optimizer_path(model_path);
    return current.substr(0, current.size() - std::string(".safetensors").size()) + ".previous.safetensors";
}

void save_checkpoint(const std::string &path, const ModelInfo &info, const float *params,
                     const float *state, const float *velocity, const RunState &run) {
    RunState marked = run;
    marked.pair = pair_id(info, params, state, velocity, run);
    const Metadata metadata = run_metadata(info, marked);
    if (velocity) {
        std::vector<NamedTensor> v;
        for (int i = 0; i < info.num_params; i++)
            v.push_back({info.params[i].name, Dtype::F32, shape_of(info.params[i]),
                         velocity + info.params[i].offset});
        // The optimizer file of the model file still on disk stays, as the previous one.
        const std::string current = optimizer_path(path), previous = previous_optimizer_path(path);
        if (access(current.c_str(), F_OK) == 0 && std::rename(current.c_str(), previous.c_str()) != 0)
            fail("%s: cannot rename to %s (%s)", current.c_str(), previous.c_str(), std::strerror(errno));
        write_safetensors(current, v, metadata);
    }

    std::vector<NamedTensor> tensors;
    for (int i = 0; i < info.num_params; i++)
        tensors.push_back({info.params[i].name, Dtype::F32, shape_of(info.params[i]),
                           params + info.params[i].offset});
    for (int i = 0; i < info.num_states; i++)
        tensors.push_back({info.states[i].name, Dtype::F32, shape_of(info.states[i]),
                           state + info.states[i].offset});
    // PyTorch counts BN forward passes in training; every step is one.
    const int64_t batches_tracked = run.step;
    for (int i = 0; i < info.num_states; i++) {
        const std::string bn = bn_prefix(info.states[i].name);
        if (!bn.empty()) tensors.push_back({bn + ".num_batches_tracked", Dtype::I64, {}, &batches_tracked});
    }
    write_safetensors(path, tensors, metadata);
}

RunState load_model(const std::string &path, const ModelInfo &info, float *params, float *state) {
    SafetensorsFile file(path);
    check_spec(file, info);
    read_tensors(file, info.params, info.num_params, params);
    read_tensors(file, info.states, info.num_states, state);

    // Strict, as PyTorch's load_state_dict: anything unknown means another model.
    std::set<std::string> known;
    for (int i = 0; i < info.num_params; i++) known.insert(info.params[i].name);
    for (int i = 0; i < info.num_states; i++) {
        known.insert(info.states[i].name);
        const std::string bn = bn_prefix(info.states[i].name);
        if (!bn.empty()) known.insert(bn + ".num_batches_tracked");
    }
    for (const auto &entry : file.entries())
        if (!known.count(entry.first))
            fail("%s: tensor '%s' is not part of model '%s'", path.c_str(), entry.first.c_str(), info.name);

    RunState run;
    if (file.metadata().count("step")) {  // written by hlnet (PyTorch's may carry none)
        run.epoch = int64_t(metadata_uint(file, "epoch"));
        run.step = int64_t(metadata_uint(file, "step"));
        run.seed = metadata_uint(file, "seed");
        run.epoch_correct = int64_t(metadata_uint(file, "epoch_correct"));
        run.epoch_loss_sum = metadata_double(file, "epoch_loss_sum");
        if (file.metadata().count("ranks")) run.ranks = int64_t(metadata_uint(file, "ranks"));
        run.pair = metadata_string(file, "pair");
    }
    return run;
}

void load_velocity(const std::string &path, const ModelInfo &info, const RunState &run,
                   float *velocity) {
    // The current optimizer file, else the one before it: a save that
    // stopped between its two files left the model file of the save before.
    const std::string current = optimizer_path(path);
    for (const std::string &candidate : {current, previous_optimizer_path(path)}) {
        if (access(candidate.c_str(), F_OK) != 0) continue;
        SafetensorsFile file(candidate);
        check_spec(file, info);
        const int64_t step = int64_t(metadata_uint(file, "step"));
        const bool pairs = run.pair.empty() ? step == run.step : metadata_string(file, "pair") == run.pair;
        if (pairs) return read_tensors(file, info.params, info.num_params, velocity);
    }
    SafetensorsFile file(current);
    const int64_t step = int64_t(metadata_uint(file, "step"));
    if (step != run.step)
        fail("%s: optimizer state of step %lld, but %s is of step %lld", file.path().c_str(), (long long)step,
             path.c_str(), (long long)run.step);
    fail("%s: optimizer state from another save than %s (pair %s, not %s)", file.path().c_str(), path.c_str(),
         metadata_string(file, "pair").c_str(), run.pair.c_str());
}

}  // namespace hlnet

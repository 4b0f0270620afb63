#include "spec.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <regex>
#include <set>

namespace specc {

const std::vector<DatasetInfo> &datasets() {
    static const std::vector<DatasetInfo> kDatasets = {{"fashion-mnist", 1, 28, 28, 60000}};
    return kDatasets;
}

namespace {

// Keys every layer may or must have, by op. "name" and "op" are always required.
struct OpKeys {
    std::string op;
    std::vector<std::string> required, optional;
};

const std::vector<OpKeys> &op_keys() {
    static const std::vector<OpKeys> kTable = {
        {"conv", {"channels", "kernel"}, {"input", "stride", "padding"}},
        {"batchnorm", {}, {"input"}},
        {"relu", {}, {"input"}},
        {"maxpool", {"kernel"}, {"input", "stride", "padding"}},
        {"global_avgpool", {}, {"input"}},
        {"add", {"inputs"}, {}},
        {"dense", {"units"}, {"input"}},
        {"residual", {"channels"}, {"input", "stride", "projection"}},
        {"bottleneck", {"channels"}, {"input", "width", "stride", "projection"}},
        {"preact_residual", {"channels"}, {"input", "stride", "projection"}},
        {"stage", {"block", "channels", "blocks"}, {"input", "width", "stride", "projection"}},
    };
    return kTable;
}

constexpr int kMaxBlocks = 1000;  // keeps a typo from expanding into millions of nodes
constexpr int kMaxDepth = 64;     // JSON nesting; deeper documents are not specs

const std::vector<std::string> kBlockOps = {"residual", "bottleneck", "preact_residual"};

std::vector<std::string> names_of(const std::vector<OpKeys> &table) {
    std::vector<std::string> names;
    for (const OpKeys &entry : table) names.push_back(entry.op);
    return names;
}

// One JSON object of the spec: rejects unknown keys up front, then hands out
// typed fields, each error pointing at the offending key.
class ObjectReader {
public:
    ObjectReader(const json &object, std::string pointer, std::vector<std::string> keys)
        : object_(object), pointer_(std::move(pointer)), keys_(std::move(keys)) {
        if (!object_.is_object()) throw SpecError(pointer_, "must be an object", describe(object_));
        for (const auto &item : object_.items()) {
            if (std::find(keys_.begin(), keys_.end(), item.key()) == keys_.end())
                throw SpecError(at(item.key()), "unknown key" + did_you_mean(item.key(), keys_),
                                quote(item.key()));
        }
    }

    std::string at(const std::string &key) const { return pointer_ + "/" + pointer_token(key); }
    bool has(const std::string &key) const { return object_.contains(key); }

    const json &required(const std::string &key) const {
        if (!has(key)) throw SpecError(pointer_, "missing key " + quote(key), describe(object_));
        return object_.at(key);
    }

    // An integer in [lo, hi].
    int integer(const std::string &key, int lo, int hi = INT_MAX) const { return to_int(required(key), at(key), lo, hi); }
    int integer_or(const std::string &key, int lo, int fallback) const {
        return has(key) ? integer(key, lo) : fallback;
    }

    // A finite number in [lo, hi) (or [lo, hi] when hi is infinite).
    double number(const std::string &key, double lo, double hi) const {
        const json &value = required(key);
        if (!value.is_number()) throw SpecError(at(key), "must be a number", describe(value));
        const double x = value.get<double>();
        if (!std::isfinite(x) || x < lo) throw SpecError(at(key), "must be at least " + json(lo).dump(), describe(value));
        if (x >= hi) throw SpecError(at(key), "must be less than " + json(hi).dump(), describe(value));
        return x;
    }

    std::string string(const std::string &key) const {
        const json &value = required(key);
        if (!value.is_string()) throw SpecError(at(key), "must be a string", describe(value));
        return value.get<std::string>();
    }

    // A string naming one of `choices`; `what` names the kind ("op", "optimizer").
    std::string choice(const std::string &key, const std::string &what, const std::vector<std::string> &choices) const {
        const std::string value = string(key);
        if (std::find(choices.begin(), choices.end(), value) == choices.end())
            throw SpecError(at(key), "unknown " + what + did_you_mean(value, choices), quote(value));
        return value;
    }

    // A name that can be referenced and used in generated C++ and file names.
    std::string identifier(const std::string &key) const {
        static const std::regex kIdentifier("[A-Za-z_][A-Za-z0-9_]*");
        const std::string value = string(key);
        if (!std::regex_match(value, kIdentifier))
            throw SpecError(at(key), "a name must start with a letter or '_' and hold only letters, digits and '_'",
                            quote(value));
        return value;
    }

    bool boolean_or(const std::string &key, bool fallback) const {
        if (!has(key)) return fallback;
        const json &value = object_.at(key);
        if (!value.is_boolean()) throw SpecError(at(key), "must be true or false", describe(value));
        return value.get<bool>();
    }

    static int to_int(const json &value, const std::string &pointer, int lo, int hi = INT_MAX) {
        if (!value.is_number_integer()) throw SpecError(pointer, "must be an integer", describe(value));
        if (value.is_number_unsigned() ? value.get<uint64_t>() > uint64_t(hi) : value.get<int64_t>() > hi)
            throw SpecError(pointer, "must be at most " + std::to_string(hi), describe(value));
        const int64_t x = value.get<int64_t>();
        if (x < lo) throw SpecError(pointer, lo == 1 ? "must be positive" : "must be at least " + std::to_string(lo),
                                    describe(value));
        return int(x);
    }

private:
    const json &object_;
    std::string pointer_;
    std::vector<std::string> keys_;
};

std::vector<std::string> with_name_and_op(const OpKeys &keys) {
    std::vector<std::string> all = {"name", "op"};
    all.insert(all.end(), keys.required.begin(), keys.required.end());
    all.insert(all.end(), keys.optional.begin(), keys.optional.end());
    return all;
}

// "inputs" of an add: exactly two node names.
std::vector<std::string> read_inputs(const ObjectReader &fields) {
    const json &value = fields.required("inputs");
    const std::string pointer = fields.at("inputs");
    if (!value.is_array() || value.size() != 2)
        throw SpecError(pointer, "must be a list of two node names", describe(value));
    std::vector<std::string> inputs;
    for (size_t i = 0; i < value.size(); i++) {
        if (!value[i].is_string())
            throw SpecError(pointer + "/" + std::to_string(i), "must be a node name", describe(value[i]));
        inputs.push_back(value[i].get<std::string>());
    }
    return inputs;
}

// The op decides which keys a layer may have, so it is read first.
const OpKeys &read_op(const json &value, const std::string &pointer) {
    if (!value.is_object()) throw SpecError(pointer, "must be an object", describe(value));
    if (!value.contains("op")) throw SpecError(pointer, "missing key \"op\"", describe(value));
    const json &op = value.at("op");
    if (!op.is_string()) throw SpecError(pointer + "/op", "must be a string", describe(op));
    for (const OpKeys &entry : op_keys())
        if (entry.op == op.get<std::string>()) return entry;
    throw SpecError(pointer + "/op", "unknown op" + did_you_mean(op.get<std::string>(), names_of(op_keys())),
                    describe(op));
}

Layer read_layer(const json &value, const std::string &pointer) {
    const OpKeys &keys = read_op(value, pointer);
    const ObjectReader fields(value, pointer, with_name_and_op(keys));
    Layer layer;
    layer.pointer = pointer;
    layer.op = keys.op;
    layer.name = fields.identifier("name");
    // Graph::tensor() serves the batch under these names.
    for (const char *reserved : {"input", "images", "labels"})
        if (layer.name == reserved)
            throw SpecError(fields.at("name"), quote(reserved) + " names the network input; choose another name",
                            quote(layer.name));
    if (fields.has("input")) layer.inputs = {fields.string("input")};
    if (layer.op == "add") layer.inputs = read_inputs(fields);

    const bool is_block = std::find(kBlockOps.begin(), kBlockOps.end(), layer.op) != kBlockOps.end();
    const bool is_stage = layer.op == "stage";
    if (is_stage) layer.block = fields.choice("block", "block", kBlockOps);
    if (layer.op == "conv" || is_block || is_stage) layer.channels = fields.integer("channels", 1);
    if (layer.op == "conv" || layer.op == "maxpool") layer.kernel = fields.integer("kernel", 1);
    const int default_stride = layer.op == "maxpool" ? layer.kernel : 1;  // PyTorch's defaults
    layer.stride = fields.integer_or("stride", 1, default_stride);
    layer.padding = fields.integer_or("padding", 0, 0);
    if (layer.op == "maxpool" && layer.padding > layer.kernel / 2)
        throw SpecError(fields.at("padding"), "must be at most half the kernel (" + std::to_string(layer.kernel) + ")",
                        std::to_string(layer.padding));
    if (layer.op == "dense") layer.units = fields.integer("units", 1);
    if (is_stage) layer.blocks = fields.integer("blocks", 1, kMaxBlocks);
    layer.projection = fields.boolean_or("projection", layer.stride != 1);

    const bool bottleneck = layer.op == "bottleneck" || layer.block == "bottleneck";
    if (fields.has("width") && !bottleneck)
        throw SpecError(fields.at("width"), "only a bottleneck has a width", describe(value.at("width")));
    if (bottleneck) {
        if (!fields.has("width") && layer.channels < 4)
            throw SpecError(fields.at("channels"), "a bottleneck without a width needs at least 4 channels (width = channels/4)",
                            std::to_string(layer.channels));
        layer.width = fields.integer_or("width", 1, layer.channels / 4);
    }
    return layer;
}

Training read_training(const json &value) {
    const ObjectReader fields(value, "/training",
                              {"optimizer", "lr", "momentum", "weight_decay", "epochs", "init", "seed"});
    Training training;
    training.optimizer = fields.choice("optimizer", "optimizer", {"sgd"});
    training.lr = fields.number("lr", 0, INFINITY);
    if (training.lr == 0) throw SpecError(fields.at("lr"), "must be positive", "0");
    training.momentum = fields.number("momentum", 0, 1);
    training.weight_decay = fields.number("weight_decay", 0, INFINITY);
    training.epochs = fields.integer("epochs", 1);
    training.init = fields.choice("init", "init", {"xavier"});
    const json &seed = fields.required("seed");
    if (!seed.is_number_integer() || (!seed.is_number_unsigned() && seed.get<int64_t>() < 0))
        throw SpecError(fields.at("seed"), "must be a non-negative integer", describe(seed));
    training.seed = seed.get<uint64_t>();
    return training;
}

Data read_data(const json &value) {
    std::vector<std::string> names;
    for (const DatasetInfo &dataset : datasets()) names.push_back(dataset.name);
    const ObjectReader fields(value, "/data", {"dataset", "resize"});
    Data data;
    data.dataset = fields.choice("dataset", "dataset", names);
    const json &resize = fields.required("resize");
    if (resize.is_null() || resize == "none") return data;
    if (!resize.is_array() || resize.size() != 2)
        throw SpecError(fields.at("resize"), "must be [height, width], null or \"none\"", describe(resize));
    data.resize = true;
    data.resize_height = ObjectReader::to_int(resize[0], "/data/resize/0", 1);
    data.resize_width = ObjectReader::to_int(resize[1], "/data/resize/1", 1);
    return data;
}

// The input section must describe what the input pipeline produces.
void check_input_matches_data(const Spec &spec) {
    const DatasetInfo *dataset = nullptr;
    for (const DatasetInfo &candidate : datasets())
        if (spec.data.dataset == candidate.name) dataset = &candidate;
    if (spec.channels != dataset->channels)
        throw SpecError("/input/channels", spec.data.dataset + " images have " + std::to_string(dataset->channels) +
                        " channel(s)", std::to_string(spec.channels));
    const int height = spec.data.resize ? spec.data.resize_height : dataset->height;
    const int width = spec.data.resize ? spec.data.resize_width : dataset->width;
    if (spec.height != height || spec.width != width) {
        const std::string expected = std::to_string(height) + "x" + std::to_string(width);
        const std::string got = std::to_string(spec.height) + "x" + std::to_string(spec.width);
        throw SpecError("/input", spec.data.resize ? "height x width must equal data.resize " + expected
                                                   : "without data.resize the input must be the dataset's " + expected,
                        got);
    }
}

}  // namespace

namespace {

// Follows the parser through the document to refuse what JSON allows but a
// spec must not have: a key twice in one object (the last would win silently)
// and absurd nesting (no later recursion then runs deep).
class StructureCheck {
public:
    bool operator()(int depth, json::parse_event_t event, json &parsed) {
        using Event = json::parse_event_t;
        if (depth > kMaxDepth)
            throw SpecError(pointer(), "nested deeper than " + std::to_string(kMaxDepth) + " levels",
                            std::to_string(depth) + " levels");
        switch (event) {
        case Event::object_start: frames_.emplace_back(); break;
        case Event::array_start: frames_.emplace_back().array = true; break;
        case Event::key:
            frames_.back().key = parsed.get<std::string>();
            if (!frames_.back().keys.insert(frames_.back().key).second)
                throw SpecError(pointer(), "duplicate key", quote(frames_.back().key));
            break;
        case Event::object_end:
        case Event::array_end:
            frames_.pop_back();
            next_element();
            break;
        case Event::value: next_element(); break;
        }
        return true;
    }

private:
    struct Frame {
        bool array = false;
        size_t index = 0;          // arrays: the element being read
        std::string key;           // objects: the key being read
        std::set<std::string> keys;
    };

    void next_element() {
        if (!frames_.empty() && frames_.back().array) frames_.back().index++;
    }

    std::string pointer() const {
        std::string text;
        for (const Frame &f : frames_) text += "/" + (f.array ? std::to_string(f.index) : pointer_token(f.key));
        return text;
    }

    std::vector<Frame> frames_;
};

}  // namespace

json parse_json(const std::string &text) {
    StructureCheck check;
    const json::parser_callback_t check_structure = [&check](int depth, json::parse_event_t event, json &parsed) {
        return check(depth, event, parsed);
    };
    try {
        return json::parse(text, check_structure);
    } catch (const json::parse_error &e) {
        // Locate the error; nlohmann reports the byte after which it gave up.
        size_t line = 1, column = 1;
        for (size_t i = 0; i + 1 < e.byte && i < text.size(); i++) {
            if (text[i] == '\n') { line++; column = 1; } else { column++; }
        }
        const std::string where = "line " + std::to_string(line) + ", column " + std::to_string(column);
        if (text.find_first_not_of(" \t\r\n") == std::string::npos)
            throw SpecError("", "not JSON: the file is empty", std::to_string(text.size()) + " bytes");
        if (e.byte > text.size())
            throw SpecError("", "truncated: the JSON ends early at " + where, "end of file");
        const std::string what = e.what();
        const size_t reason_at = what.find(": ", what.find("column"));
        std::string reason = reason_at == std::string::npos ? what : what.substr(reason_at + 2);
        // The lexer says what it read last; otherwise show the character it stopped at.
        std::string got = "'" + text.substr(e.byte - 1, 1) + "'";
        const size_t last_read = reason.find("; last read: ");
        if (last_read != std::string::npos) {
            got = reason.substr(last_read + 13);
            reason.erase(last_read);
        }
        throw SpecError("", "not JSON at " + where + ": " + reason, got);
    } catch (const json::out_of_range &e) {  // a number beyond double, e.g. 1e999
        const std::string what = e.what();
        const size_t quote_at = what.find('\'');
        throw SpecError("", "not JSON: a number is out of range",
                        quote_at == std::string::npos ? what : what.substr(quote_at));
    }
}

// A top-level key that belongs in a section ("epochs" at the top) is named with its section.
void check_misplaced_keys(const json &document) {
    static const std::vector<std::pair<std::string, std::vector<std::string>>> kSections = {
        {"input", {"channels", "height", "width"}},
        {"training", {"optimizer", "lr", "momentum", "weight_decay", "epochs", "init", "seed"}},
        {"data", {"dataset", "resize"}},
    };
    if (!document.is_object()) return;
    for (const auto &[section, keys] : kSections)
        for (const std::string &key : keys)
            if (document.contains(key))
                throw SpecError("/" + key, "unknown key; it belongs in " + quote(section), quote(key));
}

Spec read_spec(const json &document) {
    check_misplaced_keys(document);
    const ObjectReader top(document, "", {"name", "description", "input", "batch", "classes", "layers", "training", "data"});
    Spec spec;
    spec.name = top.identifier("name");
    if (top.has("description") && !document.at("description").is_string())
        throw SpecError("/description", "must be a string", describe(document.at("description")));
    const ObjectReader input(top.required("input"), "/input", {"channels", "height", "width"});
    spec.channels = input.integer("channels", 1);
    spec.height = input.integer("height", 1);
    spec.width = input.integer("width", 1);
    spec.batch = top.integer("batch", 1);
    spec.classes = top.integer("classes", 1);

    const json &layers = top.required("layers");
    if (!layers.is_array()) throw SpecError("/layers", "must be a list of layers", describe(layers));
    if (layers.empty()) throw SpecError("/layers", "empty layer list", "[]");
    for (size_t i = 0; i < layers.size(); i++) spec.layers.push_back(read_layer(layers[i], "/layers/" + std::to_string(i)));

    spec.training = read_training(top.required("training"));
    spec.data = read_data(top.required("data"));
    check_input_matches_data(spec);
    return spec;
}

}  // namespace specc

// Errors that specc reports, and the helpers that make them readable.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace specc {

using json = nlohmann::json;

// A problem in the user's spec. Printed as one line:
//   FILE: /json/pointer: what is wrong (got X)
class SpecError : public std::runtime_error {
public:
    SpecError(std::string pointer, const std::string &message, std::string got);
    const std::string &pointer() const { return pointer_; }
    const std::string &message() const { return message_; }
    const std::string &got() const { return got_; }
    // "FILE: pointer: message (got X)"; the whole document's pointer prints as "/".
    std::string format(const std::string &file) const;

private:
    std::string pointer_, message_, got_;
};

// A broken invariant of specc itself (an IR check failed); names the node.
class InternalError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

// A short JSON rendering of a value for "(got X)": at most ~60 characters.
std::string describe(const json &value);
// `s` as a JSON string literal: "s".
std::string quote(const std::string &s);
// One token of a JSON pointer, escaped as RFC 6901 says (~ → ~0, / → ~1).
std::string pointer_token(const std::string &key);
// The candidate closest to `name` by edit distance (first one on ties).
std::string nearest(const std::string &name, const std::vector<std::string> &candidates);
// "; did you mean "X"?" for the nearest candidate, or "" when there are none.
std::string did_you_mean(const std::string &name, const std::vector<std::string> &candidates);

}  // namespace specc

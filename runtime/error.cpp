#include "error.h"

#include <cstdarg>
#include <cstdio>

namespace hlnet {

static std::string vformat(const char *format, va_list args) {
    va_list copy;
    va_copy(copy, args);
    const int n = std::vsnprintf(nullptr, 0, format, copy);
    va_end(copy);
    std::string s(n > 0 ? n : 0, '\0');
    if (n > 0) std::vsnprintf(&s[0], n + 1, format, args);
    return s;
}

std::string strprintf(const char *format, ...) {
    va_list args;
    va_start(args, format);
    std::string s = vformat(format, args);
    va_end(args);
    return s;
}

void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    std::string s = vformat(format, args);
    va_end(args);
    throw Error(s);
}

}  // namespace hlnet

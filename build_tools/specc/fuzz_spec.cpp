// libFuzzer target for the spec compiler: any bytes must either compile (and
// render) or be refused with a SpecError. An InternalError, a crash, a leak or
// undefined behaviour is a bug.
//   cmake -DCMAKE_CXX_COMPILER=clang++ -DHLNET_FUZZ=ON ...; fuzz_spec -max_total_time=60 CORPUS specs/
#include <cstddef>
#include <cstdint>
#include <string>

#include "specc.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    try {
        const specc::Compiled compiled = specc::compile(text);
        (void)specc::render_files(compiled);
    } catch (const specc::SpecError &error) {
        (void)error.format("fuzz.json");
    }
    return 0;
}

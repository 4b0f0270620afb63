# Cross-compiling hlnet for 64-bit ARM Linux with Debian's toolchain
# (g++-aarch64-linux-gnu, zlib1g-dev:arm64), its programs run by qemu-user:
#
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux.cmake \
#         -Dhlnet-halide_generators_DIR=$PWD/build/cmake -DHLNET_HOST_TARGET=arm-64-linux ...
#
# The generators run on the build machine: a host build exports them
# (build/cmake/hlnet-halide_generatorsConfig.cmake) and this one imports them.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)  # Debian multiarch: /usr/lib/aarch64-linux-gnu
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
# No MPI: Debian's mpicc describes the build machine's libraries.
set(CMAKE_DISABLE_FIND_PACKAGE_MPI ON)

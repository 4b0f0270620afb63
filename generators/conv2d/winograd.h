// Winograd F(m x m, 3x3): the transform matrices and the plan of one
// convolution's tiles (used by conv2d_base.h's algorithm and the schedules).
#pragma once

#include <vector>

#include "../common.h"

namespace hlnet {

// The three matrices of Winograd F(m, 3) (Lavin & Gray, 2016): an m-output
// tile of a 3-tap correlation is AT [(G g) . (BT d)] over an (m+2)-wide input
// patch d, and in 2-D AT [(G g G^T) . (BT d B)] A. F(2, 3) is Lavin's; F(3, 3)
// was derived by Toom-Cook at the points 0, 1, -1, 2 and infinity and checked
// exactly in rational arithmetic. Measured float32 error of one tile summed over
// 256 channels, against double (normwise, median of 20): F(2, 3) 4e-7, F(3, 3)
// 1.4e-6 (F(4, 3) would be 2.8e-6, up to 1.2e-5: not used).
struct WinogradMatrices {
    int m;                                  // outputs per tile and axis
    std::vector<std::vector<double>> bt;    // (m+2) x (m+2)
    std::vector<std::vector<double>> g;     // (m+2) x 3
    std::vector<std::vector<double>> at;    // m x (m+2)
};

inline const WinogradMatrices &winograd_matrices(int m) {
    static const WinogradMatrices f2{2,
                                     {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}},
                                     {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}},
                                     {{1, 1, 1, 0}, {0, 1, -1, -1}}};
    static const WinogradMatrices f3{
        3,
        {{2, -1, -2, 1, 0}, {0, -2, -1, 1, 0}, {0, 2, -3, 1, 0}, {0, -1, 0, 1, 0}, {0, 2, -1, -2, 1}},
        {{0.5, 0, 0}, {-0.5, -0.5, -0.5}, {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 6, 1.0 / 3, 2.0 / 3}, {0, 0, 1}},
        {{1, 1, 1, 1, 0}, {0, 1, -1, 2, 0}, {0, 1, 1, 4, 1}}};
    return m == 3 ? f3 : f2;
}

// Row `i` of matrix t applied to the values v: mux(i, {t[0] . v, t[1] . v, ...}),
// each product written without its zero terms and unit factors. With i a
// constant (an unrolled loop), only that row is left.
inline Expr winograd_apply(const std::vector<std::vector<double>> &t, Expr i, const std::vector<Expr> &v) {
    std::vector<Expr> rows;
    for (const auto &coefficients : t) {
        Expr sum;
        for (size_t k = 0; k < v.size(); k++) {
            const double c = coefficients[k];
            if (c == 0) continue;
            Expr term = c == 1 || c == -1 ? v[k] : float(std::fabs(c)) * v[k];
            sum = !sum.defined() ? (c < 0 ? -term : term) : (c < 0 ? sum - term : sum + term);
        }
        rows.push_back(sum.defined() ? sum : Expr(0.0f));
    }
    return rows.size() == 1 ? rows[0] : mux(i, rows);
}

inline std::vector<std::vector<double>> transposed(const std::vector<std::vector<double>> &t) {
    std::vector<std::vector<double>> r(t[0].size(), std::vector<double>(t.size()));
    for (size_t i = 0; i < t.size(); i++)
        for (size_t j = 0; j < t[i].size(); j++) r[j][i] = t[i][j];
    return r;
}

// A Winograd convolution F(m x m, 3 x 3) of a stride-1 3x3 kernel: each m x m
// output tile takes (m+2)^2 multiplies per channel pair where the direct
// convolution takes 9 m^2 (F(2x2): 16 against 36; F(3x3): 25 against 81). The
// channel sums are (m+2)^2 matrix products (output channels x input channels
// times input channels x tiles), computed in register tiles like the direct
// convolution's.
struct Winograd {
    bool active = false;
    int m = 2, alpha = 4;           // outputs per tile and axis; input patch width m+2
    int B = 1, blocks = 1;          // output channel block, and how many
    int tiles_x = 0, tiles_y = 0;   // m x m tiles over the output
    int images = 1;                 // images per chunk (the CPU schedule's task)
    int group_rows = 0;             // tile rows transformed, multiplied and transformed back together (0: a chunk)
    RDom r;                         // input channels
    Func weight_taps{"winograd_weight_taps"};  // g(cb, c, kx, ky, kb): the kernel, channel-blocked
    Func weight_rows{"winograd_weight_rows"};  // G g along x: (cb, c, ky, kb, a)
    Func weights{"winograd_weights"};      // U(cb, c, kb, a, b) = G g G^T, channel-blocked
    Func input_rows{"winograd_input_rows"};  // B^T d along x: (c, tx, ty, n, a, row)
    Func input{"winograd_input"};          // V(c, tx, ty, n, a, b) = B^T d B
    Func product{"winograd_product"};      // M(cb, tx, ty, kb, n, a, b) = sum over c of U V
    Func output{"winograd_output"};        // Y(cb, x, y, kb, n) = init + A^T M A
    Func product_tiles;                    // M as the register tiles compute it
    const WinogradMatrices &matrices() const { return winograd_matrices(m); }
};

// Multiplies per channel pair of F(m x m, 3 x 3) over a (width, height) output.
inline double winograd_multiplies(int m, int width, int height) {
    return double((m + 2) * (m + 2)) * ((width + m - 1) / m) * ((height + m - 1) / m);
}
// The tile size with the fewest multiplies (the smaller on a tie).
inline int winograd_tile(int width, int height) {
    return winograd_multiplies(3, width, height) < winograd_multiplies(2, width, height) ? 3 : 2;
}

}  // namespace hlnet

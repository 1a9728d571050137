/* Fused CPU kernels of the noisy simulator (loaded with ctypes by native.py; see its docstring).
 *
 * Two loops that are memory- and RNG-bound in eager torch (one pass per op, single-threaded normals)
 * become one pass each here:
 *   program_rows: PCM programming noise, drift exponents, drift to t and read noise of the differential
 *                 pair of every weight of a segment, returning (G+ - G-)/g_max at t (pcm.py's model);
 *   adc_epilogue: output noise, ADC clamp and rounding, de-normalization and the digital sum of partial
 *                 outputs of a weight block (docs/analog_mvm.md steps 4-6).
 * Both run over a range of rows. Built with -fopenmp, they split it over the OpenMP threads of the
 * libgomp that torch already loaded (same soname, so one thread pool for torch and these kernels);
 * otherwise Python runs sub-ranges on several threads (ctypes releases the GIL). Random numbers are counter-based: a stream per (seed, key, counter, row) whose j-th 32 bits
 * are hash(hash(j ^ k1) + k2) (keys from SplitMix64), so results do not depend on the thread count and
 * the loops vectorize; normals by Box-Muller with branch-free polynomial log/sin/cos (float accuracy).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int kernels_openmp(void) {                            /* 1 when built with OpenMP */
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* ---- fast vectorizable math (float; relative error ~1e-7 over the ranges used here) ------------------ */

/* min/max as comparisons: unlike fminf/fmaxf (NaN and signed-zero rules) they vectorize without -ffast-math */
static inline float minf(float a, float b) { return a < b ? a : b; }
static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline float clipf(float v, float lo, float hi) { return minf(maxf(v, lo), hi); }

typedef union { float f; uint32_t u; } pun_t;
static inline float bits_to_float(uint32_t b) { pun_t x; x.u = b; return x.f; }
static inline uint32_t float_to_bits(float f) { pun_t x; x.f = f; return x.u; }

/* ln x for finite x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m-1)/(m+1) */
static inline float fast_logf(float x) {
    uint32_t b = float_to_bits(x);
    int32_t e = (int32_t)((b >> 23) & 0xFF) - 127;
    float m = bits_to_float((b & 0x007FFFFFu) | 0x3F800000u);       /* [1, 2) */
    int big = m > 1.41421356f;
    m *= 1.0f - 0.5f * (float)big;
    e += big;
    float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float series = s * (2.0f + s2 * (0.6666666667f + s2 * (0.4f + s2 * (0.2857142857f + s2 * 0.2222222222f))));
    return series + (float)e * 0.69314718056f;
}

/* e^x, x clamped to [-87, 88]: x = n ln2 + r, |r| <= ln2/2, e^r by its Taylor series to r^7 */
static inline float fast_expf(float x) {
    x = clipf(x, -87.0f, 88.0f);
    float n = rintf(x * 1.44269504089f);
    float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;   /* ln2 split in hi + lo */
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.666666667e-1f + r * (4.166666667e-2f + r * (8.333333333e-3f
              + r * (1.388888889e-3f + r * 1.984126984e-4f))))));
    return p * bits_to_float((uint32_t)((int32_t)n + 127) << 23);
}

/* sin and cos of (pi/2) f for f in [0, 1]: Taylor series to degree 11 / 12 (error < 1e-7) */
static inline void quarter_sincos(float f, float *s, float *c) {
    float a = f * 1.5707963268f, a2 = a * a;
    *s = a * (1.0f + a2 * (-1.666666667e-1f + a2 * (8.333333333e-3f + a2 * (-1.984126984e-4f
         + a2 * (2.755731922e-6f - a2 * 2.505210839e-8f)))));
    *c = 1.0f + a2 * (-0.5f + a2 * (4.166666667e-2f + a2 * (-1.388888889e-3f + a2 * (2.480158730e-5f
         + a2 * (-2.755731922e-7f + a2 * 2.087675699e-9f)))));
}

/* ---- random numbers ------------------------------------------------------------------------------ */

static inline uint64_t mix64(uint64_t z) {           /* SplitMix64 finalizer (Steele, Lea, Flood 2014) */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint32_t hash32(uint32_t x) {          /* "lowbias32" integer hash (C. Wellons, 2018) */
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
    return x;
}

typedef struct { uint32_t k1, k2; } stream_t;         /* one counter-based stream */

static inline stream_t make_stream(uint64_t seed, uint64_t key, uint64_t counter, uint64_t row) {
    uint64_t s = mix64(seed + 0x9E3779B97F4A7C15ULL);
    s = mix64(s ^ (key * 0xD1B54A32D192ED03ULL));
    s = mix64(s ^ (counter * 0xABC98388FB8FAC03ULL));
    s = mix64(s ^ (row * 0x8CB92BA72F3D8DD7ULL));
    stream_t st = {(uint32_t)s, (uint32_t)(s >> 32)};
    return st;
}

static inline uint32_t stream_bits(stream_t st, uint32_t j) { return hash32(hash32(j ^ st.k1) + st.k2); }

/* Standard normals out[0..n) (n even) from counters j0 .. j0 + n - 1 of a stream, by Box-Muller:
 * u1 = (32 random bits + 1/2) 2^-32 (the radius covers |x| up to 6.66 sigma: P(beyond) = 3e-11),
 * u2 = 24 random bits 2^-24 (the angle). Vectorizes: no branches, no library calls. */
static void normals(float *out, long n, stream_t st, uint32_t j0) {
    long half = n / 2;
    for (long p = 0; p < half; ++p) {
        uint32_t a = stream_bits(st, j0 + 2u * (uint32_t)p), b = stream_bits(st, j0 + 2u * (uint32_t)p + 1u);
        float u1 = (float)(int32_t)(a >> 8) * 0x1.0p-24f + ((float)(int32_t)(a & 0xFF) + 0.5f) * 0x1.0p-32f;
        float radius = sqrtf(-2.0f * fast_logf(u1));
        float turn = (float)(int32_t)(b >> 8) * 0x1.0p-22f;                /* [0, 4): quadrant + fraction */
        float quadrant = floorf(turn), f = turn - quadrant, s, c;
        quarter_sincos(f, &s, &c);
        int q = (int)quadrant;                                     /* rotate (cos, sin) by q quarter turns */
        float odd = (float)(q & 1);
        float sin_t = (s + odd * (c - s)) * (1.0f - 2.0f * (float)((q >> 1) & 1));
        float cos_t = (c + odd * (s - c)) * (1.0f - 2.0f * (float)(((q + 1) >> 1) & 1));
        out[p] = radius * cos_t;
        out[p + half] = radius * sin_t;
    }
}

void fill_normal(float *out, long n, uint64_t seed, uint64_t key, uint64_t counter, uint64_t row) {
    normals(out, n, make_stream(seed, key, counter, row), 0);
}

/* ---- PCM programming and drift ------------------------------------------------------------------- */

/* Device-model parameters, in this order (pcm.py computes them from the spec):
 *  0 programming noise on (0/1)   1-3 c0, c1, c2 of sigma_prog in normalized units
 *  4 drift on                     5-8 nu mean slope, intercept, lo, hi   9-12 nu std slope, intercept, lo, hi
 * 13 ln((t + t0) / t0)           14 read noise on   15-17 Qs coeff, exponent, max
 * 18 sqrt(ln((t + t0 + t_read) / (2 t_read)))      19 floor of g before its log (drift statistics)
 * 20 floor of g_prog^exponent in Qs */
enum { P_PROG, P_C0, P_C1, P_C2, P_DRIFT, P_MS, P_MI, P_MLO, P_MHI, P_SS, P_SI, P_SLO, P_SHI, P_LOGT,
       P_READ, P_QC, P_QE, P_QMAX, P_SPREAD, P_GFLOOR, P_QFLOOR, P_COUNT };

/* Rows [row0, row1) of a segment of R inputs: w (row stride ldw) normalized by w_max[row], clipped to
 * [-1, 1], split into G+ (devices 0..R-1) and G- (devices R..2R-1), each programmed and read at t:
 *   G_prog = max(G + sigma_prog(G) n1, 0); nu = |mu(G) + sigma_nu(G) n2|; G_d = G_prog e^(-nu ln((t+t0)/t0));
 *   G(t) = max(G_d + G_d Qs(G_prog) spread n3, 0)
 * with n1, n2, n3 from three streams of the row (keys 0, 1, 2), so the same seed is the same chip at
 * every t. Writes out[c, r] = (G+(t) - G-(t)) / g_max * row_mult[c] (row stride ldo: the caller folds its
 * static per-column factors in) and, per row, the sums of the effective programmed and drifted
 * conductances, unscaled (for global drift compensation). */
void program_rows(const float *w, long ldw, long R, const float *w_max, const double *pd, uint64_t seed,
                  uint64_t key, long row0, long row1, float *g_out, long ldo, const float *row_mult,
                  double *sum_prog, double *sum_t) {
    float p[P_COUNT];
    for (int i = 0; i < P_COUNT; ++i) p[i] = (float)pd[i];
    const long n = 2 * R;
#pragma omp parallel
    {
    float *buf = (float *)malloc(sizeof(float) * (size_t)(4 * n));
    float *restrict target = buf, *restrict noise = buf + n, *restrict g_prog = buf + 2 * n, *restrict g_t = buf + 3 * n;
#pragma omp for schedule(static)
    for (long c = row0; c < row1; ++c) {
        const float *restrict wr = w + c * ldw;
        const float inv = 1.0f / w_max[c];
        for (long r = 0; r < R; ++r) {
            float g = clipf(wr[r] * inv, -1.0f, 1.0f);
            target[r] = maxf(g, 0.0f);
            target[R + r] = maxf(-g, 0.0f);
        }
        if (p[P_PROG] != 0.0f) {                    /* programming noise */
            normals(noise, n, make_stream(seed, key, 0, (uint64_t)c), 0);
            for (long d = 0; d < n; ++d) {
                float g = target[d];
                g_prog[d] = maxf(g + (p[P_C0] + g * (p[P_C1] + p[P_C2] * g)) * noise[d], 0.0f);
            }
        } else {
            memcpy(g_prog, target, sizeof(float) * (size_t)n);
        }
        if (p[P_DRIFT] != 0.0f) {                   /* drift exponents, drift to t */
            normals(noise, n, make_stream(seed, key, 1, (uint64_t)c), 0);
            for (long d = 0; d < n; ++d) {
                float lg = fast_logf(maxf(target[d], p[P_GFLOOR]));
                float mean = clipf(p[P_MS] * lg + p[P_MI], p[P_MLO], p[P_MHI]);
                float std = clipf(p[P_SS] * lg + p[P_SI], p[P_SLO], p[P_SHI]);
                float nu = fabsf(mean + std * noise[d]);
                g_t[d] = g_prog[d] * fast_expf(-nu * p[P_LOGT]);
            }
        } else {
            memcpy(g_t, g_prog, sizeof(float) * (size_t)n);
        }
        if (p[P_READ] != 0.0f) {                    /* 1/f read noise accumulated up to t */
            normals(noise, n, make_stream(seed, key, 2, (uint64_t)c), 0);
            for (long d = 0; d < n; ++d) {
                /* g_prog^exponent, floored (a device programmed to 0 reads 0 whatever its Qs) */
                float power = maxf(fast_expf(p[P_QE] * fast_logf(maxf(g_prog[d], 1e-30f))), p[P_QFLOOR]);
                float qs = minf(p[P_QC] / power, p[P_QMAX]);   /* Qs = min(coeff / g_prog^exponent, max) */
                g_t[d] = maxf(g_t[d] + g_t[d] * qs * p[P_SPREAD] * noise[d], 0.0f);
            }
        }
        float *restrict out = g_out + c * ldo;
        const float mult = row_mult[c];
        double acc_prog = 0.0, acc_t = 0.0;
        for (long r = 0; r < R; ++r) {
            float eff = g_t[r] - g_t[R + r];
            out[r] = eff * mult;
            acc_prog += (double)(g_prog[r] - g_prog[R + r]);
            acc_t += (double)eff;
        }
        sum_prog[c] = acc_prog;
        sum_t[c] = acc_t;
    }
    free(buf);
    }
}

/* ---- output noise, ADC and the digital sum ------------------------------------------------------- */

/* y: (K, N, C) partial outputs of K row chunks, in ADC units (LSB when quantized). For rows [n0, n1):
 *   out[n, c] = bias[c] + sum_k s(k, n, c) * adc(y[k, n, c] + sigma[k, c] * N(0, 1))
 * with adc(v) = rint(clamp(v, -levels, levels)) when levels > 0 (identity otherwise) and
 * s = scale[k, c] * (dvec ? dvec[k, n] : 1). sigma may be NULL (no output noise), bias NULL. The normals
 * of row n come from stream (seed, key, counter, n), counters k C .. k C + C - 1 for chunk k. */
void adc_epilogue(const float *y, long K, long N, long C, const float *sigma, const float *scale,
                  const float *dvec, float levels, const float *bias, uint64_t seed, uint64_t key,
                  uint64_t counter, long n0, long n1, float *out) {
    long padded = C + C % 2;
#pragma omp parallel
    {
    float *noise = sigma ? (float *)malloc(sizeof(float) * (size_t)padded) : NULL;
#pragma omp for schedule(static)
    for (long n = n0; n < n1; ++n) {
        float *acc = out + n * C;
        for (long c = 0; c < C; ++c) acc[c] = bias ? bias[c] : 0.0f;
        stream_t st = make_stream(seed, key, counter, (uint64_t)n);
        for (long k = 0; k < K; ++k) {
            const float *yk = y + (k * N + n) * C;
            const float *sk = scale + k * C;
            const float d = dvec ? dvec[k * N + n] : 1.0f;
            if (noise) {
                const float *sig = sigma + k * C;
                normals(noise, padded, st, (uint32_t)(k * padded));
                if (levels > 0.0f) {
                    for (long c = 0; c < C; ++c)
                        acc[c] += rintf(clipf(yk[c] + sig[c] * noise[c], -levels, levels)) * sk[c] * d;
                } else {
                    for (long c = 0; c < C; ++c) acc[c] += (yk[c] + sig[c] * noise[c]) * sk[c] * d;
                }
            } else if (levels > 0.0f) {
                for (long c = 0; c < C; ++c) acc[c] += rintf(clipf(yk[c], -levels, levels)) * sk[c] * d;
            } else {
                for (long c = 0; c < C; ++c) acc[c] += yk[c] * sk[c] * d;
            }
        }
    }
    free(noise);
    }
}

/* ---- DAC codes and INT-n attention operands ------------------------------------------------------ */

/* DAC of one row chunk: rows [n0, n1) of x (N, R, row stride ldx) -> out (N, R contiguous):
 *   out = rint(clamp(x / d, -1, 1) * levels)       (levels > 0: the DAC codes)
 *   out = x / d                                    (levels <= 0: an ideal DAC)
 * with d = dac_range, or where dac_range <= 0 the row's max |x| (1 for an all-zero row), stored in dvec[n]. */
void dac_codes(const float *x, long ldx, long N, long R, float dac_range, float levels, float *out, float *dvec) {
    (void)N;
#pragma omp parallel for schedule(static)
    for (long n = 0; n < N; ++n) {
        const float *restrict xr = x + n * ldx;
        float *restrict o = out + n * R;
        float d = dac_range;
        if (d <= 0.0f) {
            float peak = 0.0f;
            for (long r = 0; r < R; ++r) peak = maxf(peak, fabsf(xr[r]));
            d = peak > 0.0f ? peak : 1.0f;
            dvec[n] = d;
        }
        if (levels > 0.0f) {
            const float k = levels / d;
            for (long r = 0; r < R; ++r) o[r] = rintf(clipf(xr[r] * k, -levels, levels));
        } else {
            const float k = 1.0f / d;
            for (long r = 0; r < R; ++r) o[r] = xr[r] * k;
        }
    }
}

/* Integer codes of the digital attention units (compiler/analog/integer.py), `groups` contiguous groups of
 * `size` values each: code = clamp(rint(x * (levels / s)), lower, levels), step[g] = s / levels, so that
 * code * step is the quantized value. s = scales[g] where `scales` is given (a fixed range, or a scale
 * over the real tokens only), else max |x| of the group (1 for an all-zero group). Same operations, in
 * the same order, as integer.py's torch path, so the two agree bit for bit. */
void quantize_groups(const float *x, long groups, long size, float levels, float lower, const float *scales,
                     float *codes, float *step) {
#pragma omp parallel for schedule(static)
    for (long g = 0; g < groups; ++g) {
        const float *restrict xg = x + g * size;
        float *restrict o = codes + g * size;
        float s;
        if (scales) {
            s = scales[g];
        } else {
            float peak = 0.0f;
            for (long i = 0; i < size; ++i) peak = maxf(peak, fabsf(xg[i]));
            s = peak > 0.0f ? peak : 1.0f;
        }
        const float k = levels / s;
        for (long i = 0; i < size; ++i) o[i] = clipf(rintf(xg[i] * k), lower, levels);
        step[g] = s / levels;
    }
}

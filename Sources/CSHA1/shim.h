// The SHA-1 compression function on the x86-64 SHA extensions (SHA-NI), for GutsGit's
// SHA1 and SHA1DC. Swift has no way to emit these instructions, so this one function
// is C, header-only (no library, no build step of its own), compiled for the SHA
// instructions only (the `target` attribute) and called only after
// `guts_sha1_hardware_available()` said the CPU has them. Elsewhere (other CPUs,
// other architectures) the Swift compression functions are used.
#ifndef GUTS_CSHA1_SHIM_H
#define GUTS_CSHA1_SHIM_H

#include <stdint.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/// 1 when the CPU has the SHA extensions and SSSE3/SSE4.1 (CPUID leaf 7 EBX bit 29;
/// leaf 1 ECX bits 9 and 19).
static inline int guts_sha1_hardware_available(void) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 9)) || !(c & (1u << 19))) return 0;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 29)) ? 1 : 0;
}

#define GUTS_SHA1_GROUP(g, f) \
    e = _mm_sha1nexte_epu32(prev, m[g]); \
    prev = abcd; \
    abcd = _mm_sha1rnds4_epu32(abcd, e, f);

/// Compresses `blocks` 64-byte blocks at `data` into `state` (h0...h4). With `expanded`
/// non-null (then `blocks` must be 1), also writes the expanded message words
/// W[32...67] of the block to expanded[32...67], for collision detection.
__attribute__((target("sha,ssse3,sse4.1")))
static inline void guts_sha1_hardware_compress(uint32_t *state, const void *data, long blocks, uint32_t *expanded) {
    const __m128i bswap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    // A in the highest lane, as the instructions want it.
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)state), 0x1B);
    __m128i e0 = _mm_set_epi32((int)state[4], 0, 0, 0);
    const unsigned char *p = (const unsigned char *)data;
    for (long n = 0; n < blocks; n++, p += 64) {
        const __m128i abcd0 = abcd, e00 = e0;
        // m[g] holds W[4g...4g+3], W[4g] in the highest lane.
        __m128i m[20];
        for (int g = 0; g < 4; g++) {
            m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
        }
        for (int g = 4; g < 20; g++) {
            m[g] = _mm_sha1msg2_epu32(_mm_xor_si128(_mm_sha1msg1_epu32(m[g - 4], m[g - 3]), m[g - 2]), m[g - 1]);
        }
        __m128i prev = abcd, e;
        abcd = _mm_sha1rnds4_epu32(abcd, _mm_add_epi32(e0, m[0]), 0);
        GUTS_SHA1_GROUP(1, 0) GUTS_SHA1_GROUP(2, 0) GUTS_SHA1_GROUP(3, 0) GUTS_SHA1_GROUP(4, 0)
        GUTS_SHA1_GROUP(5, 1) GUTS_SHA1_GROUP(6, 1) GUTS_SHA1_GROUP(7, 1) GUTS_SHA1_GROUP(8, 1) GUTS_SHA1_GROUP(9, 1)
        GUTS_SHA1_GROUP(10, 2) GUTS_SHA1_GROUP(11, 2) GUTS_SHA1_GROUP(12, 2) GUTS_SHA1_GROUP(13, 2) GUTS_SHA1_GROUP(14, 2)
        GUTS_SHA1_GROUP(15, 3) GUTS_SHA1_GROUP(16, 3) GUTS_SHA1_GROUP(17, 3) GUTS_SHA1_GROUP(18, 3) GUTS_SHA1_GROUP(19, 3)
        // E after the last round is A before the last group, rotated: sha1nexte adds it.
        e0 = _mm_sha1nexte_epu32(prev, e00);
        abcd = _mm_add_epi32(abcd, abcd0);
        if (expanded) {
            for (int g = 8; g < 17; g++) {
                _mm_storeu_si128((__m128i *)(expanded + 4 * g), _mm_shuffle_epi32(m[g], 0x1B));
            }
        }
    }
    _mm_storeu_si128((__m128i *)state, _mm_shuffle_epi32(abcd, 0x1B));
    state[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}

#undef GUTS_SHA1_GROUP

#else

static inline int guts_sha1_hardware_available(void) { return 0; }

static inline void guts_sha1_hardware_compress(uint32_t *state, const void *data, long blocks, uint32_t *expanded) {
    (void)state; (void)data; (void)blocks; (void)expanded;
}

#endif

#endif

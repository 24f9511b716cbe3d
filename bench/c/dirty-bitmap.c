/*
 * C baselines of the dirty-bitmap kernels, compiled by the bench with gcc -O3 -march=native.
 * They run on the very bytes the TypeScript kernels use (pointers into the same buffers).
 */
#include <stddef.h>
#include <stdint.h>

/* OR src into dst, count the newly set bits, zero src: every word, branch-free. */
uint64_t merge_plain(uint64_t *restrict dst, uint64_t *restrict src, size_t words)
{
	uint64_t newly = 0;
	for (size_t i = 0; i < words; i++) {
		uint64_t s = src[i], d = dst[i];
		newly += (uint64_t)__builtin_popcountll(s & ~d);
		dst[i] = d | s;
		src[i] = 0;
	}
	return newly;
}

/* The same, skipping zero source words (faster for sparse reports, slower for random ones). */
uint64_t merge_skip(uint64_t *restrict dst, uint64_t *restrict src, size_t words)
{
	uint64_t newly = 0;
	for (size_t i = 0; i < words; i++) {
		uint64_t s = src[i];
		if (!s)
			continue;
		uint64_t d = dst[i];
		newly += (uint64_t)__builtin_popcountll(s & ~d);
		dst[i] = d | s;
		src[i] = 0;
	}
	return newly;
}

/*
 * Visit every set bit with a ctz loop; the visit sums the bit numbers modulo 2^32 (so none is
 * optimised away, and the TypeScript visit can do the same in int32 arithmetic).
 */
uint32_t ctz_sum(const uint64_t *words, size_t n)
{
	uint32_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t w = words[i];
		while (w) {
			sum += (uint32_t)(i * 64 + (uint64_t)__builtin_ctzll(w));
			w &= w - 1;
		}
	}
	return sum;
}

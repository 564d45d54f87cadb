/*
 * common/codecs — turn the bytes of one stored chunk back into its elements:
 * the HDF5 filter pipeline undone in reverse order with libdeflate, libzstd,
 * our own bounds-checked LZF decoder, an SSE2 unshuffle and Fletcher-32.
 * Thread: a decode worker; a scf__filter_ctx belongs to one worker at a time.
 */
#include "common/codecs.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <zstd.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "scfetch.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

const char *scf__filter_name(int id, char *buf, size_t len)
{
	switch (id) {
	case 1: return "deflate";
	case 2: return "shuffle";
	case 3: return "fletcher32";
	case 4: return "szip";
	case 5: return "nbit";
	case 6: return "scaleoffset";
	case 32000: return "lzf";
	case 32001: return "blosc";
	case 32015: return "zstd";
	}
	snprintf(buf, len, "filter %d", id);
	return buf;
}

enum {
	F_DEFLATE = 1,
	F_SHUFFLE = 2,
	F_FLETCHER32 = 3,
	F_LZF = 32000,
	F_ZSTD = 32015,
};

#define FLETCHER_LEN 4
#define MASK_BITS 32 /* a chunk's filter mask has one bit per pipeline entry */

struct scf__filter_ctx {
	struct libdeflate_decompressor *inflater;
	struct inflate_state *partial; /* ISA-L: inflates stop where asked (prefixes) */
	ZSTD_DCtx *zstd;
	uint8_t *buf[2]; /* ping-pong scratch between stages */
	size_t cap[2];
};

/* The bytes between two stages: where they are and how many. */
typedef struct span {
	const uint8_t *p;
	size_t len;
} span;

/* What one call needs to know while it walks the pipeline. */
typedef struct job {
	scf__filter_ctx *c;
	uint8_t *out;
	size_t out_len;
	size_t elem_size;
	char *err;
	size_t errlen;
} job;

/* One per worker: the decompressors' state and the scratch are reused per chunk. */
scf__filter_ctx *scf__filter_ctx_new(void)
{
	scf__filter_ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->inflater = libdeflate_alloc_decompressor();
	if (!c->inflater)
		goto fail_inflater;
	c->zstd = ZSTD_createDCtx();
	if (!c->zstd)
		goto fail_zstd;
	c->partial = malloc(sizeof(*c->partial));
	if (!c->partial)
		goto fail_partial;
	return c;

fail_partial:
	ZSTD_freeDCtx(c->zstd);
fail_zstd:
	libdeflate_free_decompressor(c->inflater);
fail_inflater:
	free(c);
	return NULL;
}

/* Accepts NULL, like ZSTD_freeDCtx, so error paths can call it blindly. */
void scf__filter_ctx_free(scf__filter_ctx *c)
{
	if (!c)
		return;
	libdeflate_free_decompressor(c->inflater);
	ZSTD_freeDCtx(c->zstd);
	free(c->partial);
	free(c->buf[0]);
	free(c->buf[1]);
	free(c);
}

/* The loader asks at open, so a file the engine cannot decode fails early. */
int scf__filter_supported(int id)
{
	return id == F_DEFLATE || id == F_SHUFFLE || id == F_FLETCHER32 || id == F_LZF ||
	       id == F_ZSTD;
}

/* Compressors change the length unpredictably; the others do not. */
static int is_compressor(int id)
{
	return id == F_DEFLATE || id == F_LZF || id == F_ZSTD;
}

/* Bit i of a chunk's mask set: filter i was skipped when the chunk was written. */
static int is_active(uint32_t mask, unsigned i)
{
	return !(mask & (UINT32_C(1) << i));
}

/* Every failure leaves one sentence in err, prefixed by the filter's name. */
__attribute__((format(printf, 4, 5)))
static int fail(const job *j, int code, int id, const char *fmt, ...)
{
	char name[32];
	size_t n;
	va_list ap;

	if (!j->errlen)
		return code;
	j->err[0] = '\0';
	if (id > 0)
		snprintf(j->err, j->errlen, "%s: ", scf__filter_name(id, name, sizeof(name)));
	n = strlen(j->err);
	va_start(ap, fmt);
	vsnprintf(j->err + n, j->errlen - n, fmt, ap);
	va_end(ap);
	return code;
}

/* ---- scratch ---- */

/* The scratch buffer that is not `src`, at least `need` bytes; grows, never shrinks. */
static uint8_t *scratch_for(const job *j, const uint8_t *src, size_t need, int id)
{
	scf__filter_ctx *c = j->c;
	int k = src == c->buf[0];

	if (c->cap[k] < need) {
		size_t cap = need + need / 8 + 64; /* slack: neighbours' sizes differ a little */
		uint8_t *b = malloc(cap);
		if (!b) {
			fail(j, -ENOMEM, id, "cannot allocate %zu bytes of scratch", cap);
			return NULL;
		}
		free(c->buf[k]);
		c->buf[k] = b;
		c->cap[k] = cap;
	}
	return c->buf[k];
}

/* ---- deflate ---- */

/* HDF5's deflate filter writes a zlib stream (header and Adler-32 included). */
static int undo_deflate(const job *j, span *s, uint8_t *dst, size_t want)
{
	size_t got = 0;
	enum libdeflate_result r = libdeflate_zlib_decompress(j->c->inflater, s->p, s->len,
	                                                      dst, want, &got);
	if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
		return fail(j, SCF_E_CORRUPT, F_DEFLATE,
		            "stream does not end within the expected %zu bytes "
		            "(corrupt or truncated chunk)", want);
	if (r != LIBDEFLATE_SUCCESS)
		return fail(j, SCF_E_CORRUPT, F_DEFLATE,
		            "stream of %zu bytes is corrupt (bad zlib data or Adler-32)", s->len);
	if (got != want)
		return fail(j, SCF_E_CORRUPT, F_DEFLATE,
		            "stream inflates to %zu bytes, expected %zu", got, want);
	s->p = dst;
	s->len = want;
	return 0;
}

/*
 * The first `want` bytes of a zlib stream and no more.  libdeflate decodes
 * whole buffers only; ISA-L's streaming inflate stops when the output is
 * full.  The stream's Adler-32 covers all of it, so a prefix goes unchecked
 * (the header is still checked, and a damaged prefix usually fails to parse).
 */
static int inflate_prefix(scf__filter_ctx *c, const uint8_t *in, size_t in_len, uint8_t *dst,
                          size_t want, char *err, size_t errlen)
{
	struct inflate_state *st = c->partial;

	isal_inflate_init(st);
	st->crc_flag = ISAL_ZLIB;
	st->next_in = (uint8_t *)in;
	st->avail_in = (uint32_t)in_len;
	st->next_out = dst;
	st->avail_out = (uint32_t)want;
	int r = isal_inflate(st);
	if (r < 0 || st->avail_out != 0) {
		snprintf(err, errlen, "deflate: %s after %zu of the %zu bytes needed",
		         r < 0 ? "stream is corrupt (bad zlib data)" : "stream ends",
		         want - st->avail_out, want);
		return SCF_E_CORRUPT;
	}
	return 0;
}

/* ---- zstd ---- */

/* hdf5plugin's Zstd filter stores one plain zstd frame per chunk. */
static int undo_zstd(const job *j, span *s, uint8_t *dst, size_t want)
{
	unsigned long long fcs = ZSTD_getFrameContentSize(s->p, s->len);
	size_t r;

	if (fcs == ZSTD_CONTENTSIZE_ERROR)
		return fail(j, SCF_E_CORRUPT, F_ZSTD,
		            "%zu stored bytes do not start with a zstd frame header", s->len);
	if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != want)
		return fail(j, SCF_E_CORRUPT, F_ZSTD,
		            "frame declares %llu bytes of content, expected %zu", fcs, want);
	r = ZSTD_decompressDCtx(j->c->zstd, dst, want, s->p, s->len);
	if (ZSTD_isError(r))
		return fail(j, SCF_E_CORRUPT, F_ZSTD, "frame of %zu bytes is corrupt (%s)",
		            s->len, ZSTD_getErrorName(r));
	if (r != want)
		return fail(j, SCF_E_CORRUPT, F_ZSTD,
		            "frame decompresses to %zu bytes, expected %zu", r, want);
	s->p = dst;
	s->len = want;
	return 0;
}

/* ---- lzf ---- */

/* 16 bytes, unaligned: the unit of the copies below. */
static inline void copy16(uint8_t *d, const uint8_t *s)
{
	uint8_t t[16];
	memcpy(t, s, 16);
	memcpy(d, t, 16);
}

/*
 * Copy a back-reference that may overlap its own output, as LZF means it.
 * Far references with room to spare go 16 bytes at a time (a step may copy
 * past len, never past the end of dst); near ones repeat the period, whose
 * length doubles with each copy.
 */
static inline void lzf_copy_ref(uint8_t *op, const uint8_t *ref, size_t len, const uint8_t *oe)
{
	size_t dist = (size_t)(op - ref);

	if (dist >= 16 && (size_t)(oe - op) >= len + 15) {
		for (size_t k = 0; k < len; k += 16)
			copy16(op + k, ref + k);
	} else if (dist >= len) {
		memcpy(op, ref, len);
	} else if (dist == 1) {
		memset(op, *ref, len);
	} else {
		while (len) {
			size_t n = (size_t)(op - ref) < len ? (size_t)(op - ref) : len;
			memcpy(op, ref, n);
			op += n;
			len -= n;
		}
	}
}

/* A literal run of n <= 32 bytes; a fixed 32-byte copy when both sides have room. */
static inline void lzf_copy_lit(uint8_t *op, const uint8_t *ip, size_t n, const uint8_t *oe,
                                const uint8_t *ie)
{
	if ((size_t)(oe - op) >= 32 && (size_t)(ie - ip) >= 32) {
		copy16(op, ip);
		copy16(op + 16, ip + 16);
	} else {
		memcpy(op, ip, n);
	}
}

/* Say why the stream is bad and report failure, in one return statement. */
static ptrdiff_t lzf_bad(const char **why, const char *what)
{
	*why = what;
	return -1;
}

/*
 * Raw LZF (h5py writes no header): ctrl < 32 starts ctrl+1 literals; else a
 * back-reference of (ctrl>>5)+2 bytes (7 means "add the next byte") at
 * distance ((ctrl&31)<<8 | next byte) + 1.  Returns bytes written or -1
 * with *why set; never touches memory outside in[0..in_len) and dst[0..cap).
 */
static ptrdiff_t lzf_decode(const uint8_t *in, size_t in_len, uint8_t *dst, size_t cap,
                            const char **why)
{
	const uint8_t *ip = in, *ie = in + in_len;
	uint8_t *op = dst, *oe = dst + cap;

	while (ip < ie) {
		size_t ctrl = *ip++;
		if (ctrl < 32) {
			size_t n = ctrl + 1;
			if ((size_t)(ie - ip) < n)
				return lzf_bad(why, "a literal run goes past the end of the stored bytes");
			if ((size_t)(oe - op) < n)
				return lzf_bad(why, "a literal run goes past the expected size");
			lzf_copy_lit(op, ip, n, oe, ie);
			ip += n;
			op += n;
			continue;
		}
		size_t len = ctrl >> 5;
		if (len == 7) {
			if (ip >= ie)
				return lzf_bad(why, "the stream ends inside a back-reference");
			len += *ip++;
		}
		if (ip >= ie)
			return lzf_bad(why, "the stream ends inside a back-reference");
		size_t dist = ((ctrl & 31) << 8) + *ip++ + 1;
		len += 2;
		if ((size_t)(op - dst) < dist)
			return lzf_bad(why, "a back-reference points before the start of the chunk");
		if ((size_t)(oe - op) < len)
			return lzf_bad(why, "a back-reference goes past the expected size");
		lzf_copy_ref(op, op - dist, len, oe);
		op += len;
	}
	return op - dst;
}

/* LZF records no size; the chunk size is the only check that all of it arrived. */
static int undo_lzf(const job *j, span *s, uint8_t *dst, size_t want)
{
	const char *why = NULL;
	ptrdiff_t got = lzf_decode(s->p, s->len, dst, want, &why);

	if (got < 0)
		return fail(j, SCF_E_CORRUPT, F_LZF, "stream of %zu bytes is corrupt: %s",
		            s->len, why);
	if ((size_t)got != want)
		return fail(j, SCF_E_CORRUPT, F_LZF, "stream decodes to %td bytes, expected %zu",
		            got, want);
	s->p = dst;
	s->len = want;
	return 0;
}

/* ---- fletcher32 ---- */

/*
 * HDF5's H5_checksum_fletcher32, reproduced bit for bit: big-endian 16-bit
 * words, sums starting at 0, folded every 360 words, an odd last byte taken
 * as the high half of a word.  The folding order decides whether a sum
 * lands on 0 or 0xffff, so it must not be "simplified" to a modulo.
 */
static uint32_t fletcher32(const uint8_t *p, size_t n)
{
	size_t words = n / 2;
	uint32_t s1 = 0, s2 = 0;

	while (words) {
		size_t t = words > 360 ? 360 : words;
		words -= t;
		do {
			s1 += ((uint32_t)p[0] << 8) | p[1];
			p += 2;
			s2 += s1;
		} while (--t);
		s1 = (s1 & 0xffff) + (s1 >> 16);
		s2 = (s2 & 0xffff) + (s2 >> 16);
	}
	if (n % 2) {
		s1 += (uint32_t)p[0] << 8;
		s2 += s1;
		s1 = (s1 & 0xffff) + (s1 >> 16);
		s2 = (s2 & 0xffff) + (s2 >> 16);
	}
	s1 = (s1 & 0xffff) + (s1 >> 16);
	s2 = (s2 & 0xffff) + (s2 >> 16);
	return (s2 << 16) | s1;
}

/*
 * The checksum trails the data, little-endian.  HDF5 before 1.6.3 stored it
 * with the bytes of each half swapped on little-endian machines, and HDF5
 * still accepts that form; so do we.  Stripping needs no copy.
 */
static int undo_fletcher32(const job *j, span *s)
{
	if (s->len < FLETCHER_LEN)
		return fail(j, SCF_E_CORRUPT, F_FLETCHER32,
		            "%zu bytes are too few to hold the 4-byte checksum", s->len);
	size_t n = s->len - FLETCHER_LEN;
	const uint8_t *t = s->p + n;
	uint32_t stored = t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
	uint32_t sum = fletcher32(s->p, n);
	uint32_t swapped = ((sum & 0x00ff00ffu) << 8) | ((sum >> 8) & 0x00ff00ffu);

	if (stored != sum && stored != swapped)
		return fail(j, SCF_E_CORRUPT, 0,
		            "fletcher32 checksum mismatch (stored 0x%08x, computed 0x%08x "
		            "over %zu bytes)", stored, sum, n);
	s->len = n;
	return 0;
}

/* ---- shuffle ---- */

/* Any element size: byte plane b holds byte b of every element. */
static void unshuffle_any(uint8_t *dst, const uint8_t *src, size_t n, size_t k, size_t from)
{
	for (size_t b = 0; b < k; b++) {
		const uint8_t *plane = src + b * n;
		for (size_t e = from; e < n; e++)
			dst[e * k + b] = plane[e];
	}
}

#ifdef __SSE2__
/* 16 elements of 2 bytes per step: interleave two byte planes. */
static size_t unshuffle2_sse2(uint8_t *dst, const uint8_t *src, size_t n)
{
	size_t e = 0;

	for (; e + 16 <= n; e += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(src + e));
		__m128i b = _mm_loadu_si128((const __m128i *)(src + n + e));
		_mm_storeu_si128((__m128i *)(dst + 2 * e), _mm_unpacklo_epi8(a, b));
		_mm_storeu_si128((__m128i *)(dst + 2 * e + 16), _mm_unpackhi_epi8(a, b));
	}
	return e;
}

/* 16 elements of 4 bytes per step: bytes to pairs, pairs to quads. */
static size_t unshuffle4_sse2(uint8_t *dst, const uint8_t *src, size_t n)
{
	size_t e = 0;

	for (; e + 16 <= n; e += 16) {
		__m128i p0 = _mm_loadu_si128((const __m128i *)(src + e));
		__m128i p1 = _mm_loadu_si128((const __m128i *)(src + n + e));
		__m128i p2 = _mm_loadu_si128((const __m128i *)(src + 2 * n + e));
		__m128i p3 = _mm_loadu_si128((const __m128i *)(src + 3 * n + e));
		__m128i lo01 = _mm_unpacklo_epi8(p0, p1), hi01 = _mm_unpackhi_epi8(p0, p1);
		__m128i lo23 = _mm_unpacklo_epi8(p2, p3), hi23 = _mm_unpackhi_epi8(p2, p3);
		uint8_t *d = dst + 4 * e;
		_mm_storeu_si128((__m128i *)d, _mm_unpacklo_epi16(lo01, lo23));
		_mm_storeu_si128((__m128i *)(d + 16), _mm_unpackhi_epi16(lo01, lo23));
		_mm_storeu_si128((__m128i *)(d + 32), _mm_unpacklo_epi16(hi01, hi23));
		_mm_storeu_si128((__m128i *)(d + 48), _mm_unpackhi_epi16(hi01, hi23));
	}
	return e;
}

/* Four planes' 16 bytes each, as 16 little 4-byte groups in q[0..3]. */
static inline void quads(const uint8_t *src, size_t n, size_t e, __m128i q[4])
{
	__m128i p0 = _mm_loadu_si128((const __m128i *)(src + e));
	__m128i p1 = _mm_loadu_si128((const __m128i *)(src + n + e));
	__m128i p2 = _mm_loadu_si128((const __m128i *)(src + 2 * n + e));
	__m128i p3 = _mm_loadu_si128((const __m128i *)(src + 3 * n + e));
	__m128i lo01 = _mm_unpacklo_epi8(p0, p1), hi01 = _mm_unpackhi_epi8(p0, p1);
	__m128i lo23 = _mm_unpacklo_epi8(p2, p3), hi23 = _mm_unpackhi_epi8(p2, p3);
	q[0] = _mm_unpacklo_epi16(lo01, lo23);
	q[1] = _mm_unpackhi_epi16(lo01, lo23);
	q[2] = _mm_unpacklo_epi16(hi01, hi23);
	q[3] = _mm_unpackhi_epi16(hi01, hi23);
}

/* 16 elements of 8 bytes per step: low and high quads, then interleaved. */
static size_t unshuffle8_sse2(uint8_t *dst, const uint8_t *src, size_t n)
{
	size_t e = 0;
	__m128i lo[4], hi[4];

	for (; e + 16 <= n; e += 16) {
		quads(src, n, e, lo);
		quads(src + 4 * n, n, e, hi);
		uint8_t *d = dst + 8 * e;
		for (int k = 0; k < 4; k++) {
			_mm_storeu_si128((__m128i *)(d + 32 * k), _mm_unpacklo_epi32(lo[k], hi[k]));
			_mm_storeu_si128((__m128i *)(d + 32 * k + 16), _mm_unpackhi_epi32(lo[k], hi[k]));
		}
	}
	return e;
}
#endif

/* The vector loop for the common widths, the plain loop for what is left. */
static void unshuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t k)
{
	size_t done = 0;

#ifdef __SSE2__
	if (k == 2)
		done = unshuffle2_sse2(dst, src, n);
	else if (k == 4)
		done = unshuffle4_sse2(dst, src, n);
	else if (k == 8)
		done = unshuffle8_sse2(dst, src, n);
#endif
	unshuffle_any(dst, src, n, k, done);
}

/* Element size as HDF5's set_local recorded it, else the dataset's. */
static size_t shuffle_width(const job *j, const scf__filter *f)
{
	return f->n_cd >= 1 && f->cd[0] ? f->cd[0] : j->elem_size;
}

/*
 * HDF5 leaves 1-byte elements and single elements alone, and copies the
 * len % k tail bytes after the planes unchanged; so do we.
 */
static int undo_shuffle(const job *j, const scf__filter *f, span *s, uint8_t *dst)
{
	size_t k = shuffle_width(j, f), n = k ? s->len / k : 0;

	if (k <= 1 || n <= 1)
		return 0; /* identity: the bytes stay where they are */
	unshuffle(dst, s->p, n, k);
	memcpy(dst + n * k, s->p + n * k, s->len - n * k);
	s->p = dst;
	return 0;
}

/* ---- the pipeline ---- */

/*
 * Refuse what cannot be undone before touching any bytes: unknown filters
 * that were applied, and two compressors stacked (the inner one's output
 * size is not recorded anywhere).
 */
static int check_pipeline(const job *j, const scf__filter *pl, unsigned nf, uint32_t mask)
{
	char name[32];
	int seen = 0;

	if (nf > MASK_BITS)
		return fail(j, SCF_E_UNSUPPORTED, 0,
		            "a pipeline of %u filters is longer than a chunk's filter mask", nf);
	for (unsigned i = 0; i < nf; i++) {
		if (!is_active(mask, i))
			continue;
		if (!scf__filter_supported(pl[i].id))
			return fail(j, SCF_E_UNSUPPORTED, 0,
			            "%s (HDF5 filter id %d) was applied to this chunk and the "
			            "engine cannot undo it", scf__filter_name(pl[i].id, name,
			            sizeof(name)), pl[i].id);
		if (is_compressor(pl[i].id) && seen++)
			return fail(j, SCF_E_UNSUPPORTED, pl[i].id,
			            "stacked on another compression filter in the same pipeline");
	}
	return 0;
}

/*
 * Bytes that went into filter i when the chunk was written: the chunk plus
 * one checksum per Fletcher-32 applied before it (compressors are alone,
 * so nothing else below i changes the length).
 */
static size_t size_before(const job *j, const scf__filter *pl, unsigned i, uint32_t mask)
{
	size_t n = j->out_len;

	for (unsigned k = 0; k < i; k++)
		if (is_active(mask, k) && pl[k].id == F_FLETCHER32)
			n += FLETCHER_LEN;
	return n;
}

/*
 * The stage that may write straight into `out`: the last one to produce a
 * new buffer, provided no checksum is stripped after it.  UINT_MAX if none.
 */
static unsigned direct_stage(const scf__filter *pl, unsigned nf, uint32_t mask)
{
	for (unsigned i = 0; i < nf; i++) {
		if (!is_active(mask, i))
			continue;
		if (pl[i].id == F_FLETCHER32)
			return UINT_MAX;
		return i;
	}
	return UINT_MAX;
}

/* Where stage i writes `need` bytes: `out` when it is the direct stage, else scratch. */
static uint8_t *stage_dst(const job *j, int direct, const span *s, size_t need, int id)
{
	if (!direct)
		return scratch_for(j, s->p, need, id);
	if (need != j->out_len) {
		fail(j, SCF_E_CORRUPT, id, "%zu bytes at the last stage, expected the chunk's %zu",
		     need, j->out_len);
		return NULL;
	}
	return j->out;
}

/* Undo filter i of the pipeline on s. */
static int undo_one(const job *j, const scf__filter *pl, unsigned i, uint32_t mask,
                    int direct, span *s)
{
	int id = pl[i].id;

	if (id == F_FLETCHER32)
		return undo_fletcher32(j, s);
	size_t need = id == F_SHUFFLE ? s->len : size_before(j, pl, i, mask);
	uint8_t *dst = stage_dst(j, direct, s, need, id);
	if (!dst)
		return direct ? SCF_E_CORRUPT : -ENOMEM;
	switch (id) {
	case F_DEFLATE: return undo_deflate(j, s, dst, need);
	case F_ZSTD:    return undo_zstd(j, s, dst, need);
	case F_LZF:     return undo_lzf(j, s, dst, need);
	default:        return undo_shuffle(j, &pl[i], s, dst);
	}
}

/* The result, wherever the last stage left it, lands in `out` with the right size. */
static int finish(const job *j, const span *s)
{
	if (s->len != j->out_len) {
		snprintf(j->err, j->errlen,
		         "decoded chunk is %zu bytes, expected %zu (chunk dims times element size)",
		         s->len, j->out_len);
		return SCF_E_CORRUPT;
	}
	if (s->p != j->out)
		memcpy(j->out, s->p, s->len);
	return 0;
}

/* Whether the only filter applied to the chunk is deflate: a prefix can be had alone. */
static int deflate_only(const scf__filter *pl, unsigned nf, uint32_t mask)
{
	unsigned active = 0, deflate = 0;

	for (unsigned i = 0; i < nf && i < MASK_BITS; i++) {
		if (!is_active(mask, i))
			continue;
		active++;
		deflate += pl[i].id == F_DEFLATE;
	}
	return active == 1 && deflate == 1;
}

int scf__filter_decode_prefix(scf__filter_ctx *c, const scf__filter *pipeline,
                              unsigned n_filters, uint32_t filter_mask, size_t elem_size,
                              const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                              size_t want, size_t *made, char *err, size_t errlen)
{
	if (want < out_len && in_len <= UINT32_MAX && want <= UINT32_MAX &&
	    deflate_only(pipeline, n_filters, filter_mask)) {
		int rc = inflate_prefix(c, in, in_len, out, want, err, errlen);
		*made = rc < 0 ? 0 : want;
		return rc;
	}
	int rc = scf__filter_decode(c, pipeline, n_filters, filter_mask, elem_size, in, in_len,
	                            out, out_len, err, errlen);
	*made = rc < 0 ? 0 : out_len;
	return rc;
}

/* Undo the active filters last-applied first; see common/codecs.h. */
int scf__filter_decode(scf__filter_ctx *c, const scf__filter *pipeline, unsigned n_filters,
                       uint32_t filter_mask, size_t elem_size,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                       char *err, size_t errlen)
{
	job j = { .c = c, .out = out, .out_len = out_len, .elem_size = elem_size,
	          .err = err, .errlen = errlen };
	span s = { .p = in, .len = in_len };
	int rc = check_pipeline(&j, pipeline, n_filters, filter_mask);

	if (rc < 0)
		return rc;
	unsigned direct = direct_stage(pipeline, n_filters, filter_mask);
	for (unsigned i = n_filters; i-- > 0;) {
		if (!is_active(filter_mask, i))
			continue;
		rc = undo_one(&j, pipeline, i, filter_mask, i == direct, &s);
		if (rc < 0)
			return rc;
	}
	return finish(&j, &s);
}

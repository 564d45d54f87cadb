/*
 * tests/test_strategies — what a training run needs beyond block shuffling:
 * weighted and class-balanced epochs (frequencies within chi-square bounds
 * of the weights), subsets, column selection (equal to slicing the full
 * row), kill-and-resume (the concatenation equals an uninterrupted epoch),
 * equal batch counts across ranks, and seeded splits.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scfetch.h"
#include "tests/fixtures.h"

static char *dir, *path;
static fx_ref ref;

static void setup(void)
{
	dir = fx_tmpdir();
	path = fx_path(dir, "s.h5ad");
	fx_csr_spec s = { .n_rows = 2000, .n_cols = 300, .mean_nnz = 20, .empty_every = 7,
	                  .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 900,
	                  .resizable = 1, .n_labels = 4, .seed = 5 };
	cr_assert_eq(fx_write_csr(path, &s), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
}

static void teardown(void)
{
	fx_ref_free(&ref);
	free(path);
	fx_rmdir(dir);
}

TestSuite(strategies, .init = setup, .fini = teardown, .timeout = 120);

static scf_options base(void)
{
	return (scf_options){ .size = sizeof(scf_options), .batch_size = 16, .block_size = 4,
	                      .fetch_factor = 4, .seed = 3 };
}

/* Count how often each row is delivered in `epochs` epochs. */
static uint64_t *counts(scf_options o, int epochs, uint64_t *total)
{
	char err[512];
	scf_loader *l;
	scf_batch *b;
	uint64_t *c = calloc(ref.n_rows, sizeof(uint64_t));
	int rc;

	*total = 0;
	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	for (int e = 0; e < epochs; e++) {
		while ((rc = scf_next(l, &b)) == 0) {
			for (uint64_t j = 0; j < b->n_rows; j++) {
				c[b->row_ids[j]]++;
				(*total)++;
			}
			scf_release(l, b);
		}
		cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	}
	scf_close(l);
	return c;
}

/*
 * Pearson chi-square of grouped counts against expected shares.  With 9
 * degrees of freedom the 0.999 quantile is 27.88: a fixed seed and a stated
 * false-failure rate of 1 in 1000 for a correct sampler.
 */
static double chi_square(const double *obs, const double *exp, int k)
{
	double x = 0;
	for (int i = 0; i < k; i++)
		x += (obs[i] - exp[i]) * (obs[i] - exp[i]) / exp[i];
	return x;
}

Test(strategies, weighted_with_replacement_follows_the_weights)
{
	double *w = malloc(ref.n_rows * sizeof(double));
	for (uint64_t r = 0; r < ref.n_rows; r++)
		w[r] = (double)(r % 10 + 1); /* 10 groups, weights 1..10 */
	scf_options o = base();
	o.strategy = SCF_STRATEGY_BLOCK_WEIGHTED;
	o.weights = w;
	o.n_weights = ref.n_rows;
	o.total_size = 5000;
	uint64_t total;
	uint64_t *c = counts(o, 4, &total);
	cr_assert_eq(total, 4 * 5000);
	double ob[10] = { 0 }, ex[10];
	for (uint64_t r = 0; r < ref.n_rows; r++)
		ob[r % 10] += (double)c[r];
	for (int g = 0; g < 10; g++)
		ex[g] = (double)total * (g + 1) / 55.0;
	double x = chi_square(ob, ex, 10);
	cr_assert_lt(x, 27.88, "chi-square %.2f over 9 degrees of freedom", x);
	free(c);
	free(w);
}

Test(strategies, weighted_without_replacement_has_no_repeats)
{
	double *w = malloc(ref.n_rows * sizeof(double));
	for (uint64_t r = 0; r < ref.n_rows; r++)
		w[r] = r < 100 ? 0.0 : 1.0 + (double)(r % 3);
	scf_options o = base();
	o.strategy = SCF_STRATEGY_BLOCK_WEIGHTED;
	o.flags = SCF_F_NO_REPLACEMENT;
	o.weights = w;
	o.n_weights = ref.n_rows;
	o.total_size = 1500;
	uint64_t total;
	uint64_t *c = counts(o, 1, &total);
	cr_assert_eq(total, 1500);
	for (uint64_t r = 0; r < ref.n_rows; r++) {
		cr_assert_leq(c[r], 1, "row %lu drawn twice without replacement", r);
		cr_assert(r >= 100 || c[r] == 0, "row %lu has weight 0", r);
	}
	free(c);
	/* more draws than rows with weight: rounds (scDataset's sampling_size),
	 * each without repeats: every positive row once per full round */
	o.total_size = 1900 * 2 + 300;
	c = counts(o, 1, &total);
	cr_assert_eq(total, 4100);
	uint64_t thrice = 0;
	for (uint64_t r = 0; r < ref.n_rows; r++) {
		cr_assert(r >= 100 || c[r] == 0, "row %lu has weight 0", r);
		if (r >= 100)
			cr_assert(c[r] == 2 || c[r] == 3, "row %lu drawn %lu times in 2.16 rounds", r,
			          c[r]);
		thrice += c[r] == 3;
	}
	cr_assert_eq(thrice, 300, "the third round draws 300 distinct rows");
	free(c);
	free(w);
}

/* Weights one per row while sampling a subset: the subset's rows' weights. */
Test(strategies, weights_per_row_with_indices)
{
	uint64_t idx[600];
	double *w = calloc(ref.n_rows, sizeof(double));
	for (uint64_t i = 0; i < 600; i++)
		idx[i] = 1999 - 3 * i; /* any order */
	for (uint64_t r = 0; r < ref.n_rows; r++)
		w[r] = r % 2 ? 1.0 : 0.0; /* odd rows only */
	scf_options o = base();
	o.strategy = SCF_STRATEGY_BLOCK_WEIGHTED;
	o.indices = idx;
	o.n_indices = 600;
	o.weights = w;
	o.n_weights = ref.n_rows;
	o.total_size = 3000;
	uint64_t total, *c = counts(o, 1, &total);
	uint64_t in_subset_odd = 0;
	for (uint64_t i = 0; i < 600; i++)
		in_subset_odd += idx[i] % 2;
	for (uint64_t r = 0; r < ref.n_rows; r++) {
		int member = r <= 1999 && (1999 - r) % 3 == 0;
		cr_assert(c[r] == 0 || (member && r % 2), "row %lu: outside the subset or weight 0",
		          r);
	}
	cr_assert_eq(total, 3000);
	cr_assert_gt(in_subset_odd, 250);
	free(c);
	/* neither per entry of indices nor per row: refused, naming both counts */
	o.n_weights = 601;
	char err[512];
	scf_loader *l;
	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "600 entries in indices and 2000 rows"), "%s", err);
	free(w);
}

/*
 * Class balance with a subset counts the classes in the whole column
 * (scDataset), or in the subset with SCF_F_BALANCE_SUBSET: a subset holding
 * all of class 0 and a tenth of the others shows the difference.
 */
Test(strategies, class_balanced_counts_whole_column_or_subset)
{
	int32_t *codes = fx_read_codes(path, "obs/cell_type/codes", ref.n_rows);
	uint64_t *idx = malloc(ref.n_rows * sizeof(uint64_t)), n = 0;
	for (uint64_t r = 0; r < ref.n_rows; r++)
		if (codes[r] == 0 || r % 10 == 0)
			idx[n++] = r;
	double sub[4] = { 0 }, all[4] = { 0 };
	for (uint64_t i = 0; i < n; i++)
		sub[codes[idx[i]]]++;
	for (uint64_t r = 0; r < ref.n_rows; r++)
		all[codes[r]]++;
	for (int pass = 0; pass < 2; pass++) {
		scf_options o = base();
		o.strategy = SCF_STRATEGY_CLASS_BALANCED;
		o.balance_obs = "cell_type";
		o.indices = idx;
		o.n_indices = n;
		o.total_size = 6000;
		o.flags = pass ? SCF_F_BALANCE_SUBSET : 0;
		uint64_t total, *c = counts(o, 1, &total);
		double ob[4] = { 0 }, ex[4], mass = 0;
		for (uint64_t r = 0; r < ref.n_rows; r++)
			ob[codes[r]] += (double)c[r];
		/* each subset row of class k weighs 1 / count_k: class k's share is
		 * sub_k / count_k, normalised */
		for (int k = 0; k < 4; k++)
			mass += sub[k] / (pass ? sub[k] : all[k]);
		for (int k = 0; k < 4; k++)
			ex[k] = (double)total * (sub[k] / (pass ? sub[k] : all[k])) / mass;
		double x = chi_square(ob, ex, 4);
		cr_assert_lt(x, 16.27, "pass %d: chi-square %.2f: got %g %g %g %g, expected %g %g %g %g",
		             pass, x, ob[0], ob[1], ob[2], ob[3], ex[0], ex[1], ex[2], ex[3]);
		free(c);
	}
	free(idx);
	free(codes);
}

/*
 * drop_last leaves out a random remainder each epoch (scDataset's way): the
 * rows left out change from epoch to epoch, and over epochs every row is
 * delivered sometimes, the last ones included.
 */
Test(strategies, drop_last_leaves_out_a_random_remainder)
{
	scf_options o = base();
	o.block_size = 7; /* 2000 = 285 * 7 + 5: five rows left out per epoch */
	o.batch_size = 7;
	o.fetch_factor = 5;
	o.flags = SCF_F_DROP_LAST;
	char err[512];
	scf_loader *l;
	scf_batch *b;
	uint8_t *seen = calloc(ref.n_rows, 1), *ever = calloc(ref.n_rows, 1);
	uint64_t left_out_before[5] = { 0 }, differ = 0;
	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	for (int e = 0; e < 12; e++) {
		int rc;
		uint64_t rows = 0;
		memset(seen, 0, ref.n_rows);
		while ((rc = scf_next(l, &b)) == 0) {
			cr_assert_eq(b->n_rows, 7, "short batch under drop_last");
			for (uint64_t j = 0; j < b->n_rows; j++) {
				cr_assert_eq(seen[b->row_ids[j]], 0, "row twice in an epoch");
				seen[b->row_ids[j]] = ever[b->row_ids[j]] = 1;
			}
			rows += b->n_rows;
			scf_release(l, b);
		}
		cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
		cr_assert_eq(rows, 1995, "epoch %d: %lu rows", e, rows);
		uint64_t out[5], k = 0;
		for (uint64_t r = 0; r < ref.n_rows; r++)
			if (!seen[r] && k < 5)
				out[k++] = r;
		cr_assert_eq(k, 5);
		if (e > 0 && memcmp(out, left_out_before, sizeof(out)))
			differ++;
		memcpy(left_out_before, out, sizeof(out));
	}
	scf_close(l);
	cr_assert_geq(differ, 10, "the remainder left out must change between epochs");
	uint64_t never = 0;
	for (uint64_t r = 0; r < ref.n_rows; r++)
		never += !ever[r];
	cr_assert_eq(never, 0, "%lu rows never delivered in 12 epochs", never);
	cr_assert(ever[1999] && ever[1998], "the last rows are not always the ones left out");
	free(seen);
	free(ever);
}

Test(strategies, class_balanced_evens_out_labels)
{
	int32_t *codes = fx_read_codes(path, "obs/cell_type/codes", ref.n_rows);
	scf_options o = base();
	o.strategy = SCF_STRATEGY_CLASS_BALANCED;
	o.balance_obs = "cell_type";
	o.total_size = 4000;
	uint64_t total;
	uint64_t *c = counts(o, 2, &total);
	double ob[4] = { 0 }, ex[4];
	for (uint64_t r = 0; r < ref.n_rows; r++)
		ob[codes[r]] += (double)c[r];
	for (int g = 0; g < 4; g++)
		ex[g] = (double)total / 4.0;
	/* 3 degrees of freedom: 0.999 quantile 16.27 */
	double x = chi_square(ob, ex, 4);
	cr_assert_lt(x, 16.27, "chi-square %.2f: classes %g %g %g %g", x, ob[0], ob[1], ob[2], ob[3]);
	free(c);
	free(codes);
}

Test(strategies, subsets_deliver_only_their_rows)
{
	uint64_t *idx = malloc(700 * sizeof(uint64_t));
	for (uint64_t i = 0; i < 700; i++)
		idx[i] = (i * 7919) % ref.n_rows; /* unique: 7919 is prime, n = 2000 */
	const uint32_t strategies[] = { SCF_STRATEGY_BLOCK_SHUFFLING, SCF_STRATEGY_STREAMING };
	for (int s = 0; s < 2; s++) {
		scf_options o = base();
		o.strategy = strategies[s];
		o.indices = idx;
		o.n_indices = 700;
		uint64_t total;
		uint64_t *c = counts(o, 2, &total);
		cr_assert_eq(total, 2 * 700);
		uint8_t *in = calloc(ref.n_rows, 1);
		for (uint64_t i = 0; i < 700; i++)
			in[idx[i]] = 1;
		for (uint64_t r = 0; r < ref.n_rows; r++)
			cr_assert_eq(c[r], in[r] ? 2u : 0u, "row %lu", r);
		free(in);
		free(c);
	}
	/* a row given twice, or past the end: a clear error */
	idx[5] = idx[6];
	scf_options o = base();
	o.indices = idx;
	o.n_indices = 700;
	char err[512];
	scf_loader *l;
	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "twice"), "%s", err);
	free(idx);
}

Test(strategies, column_selection_equals_slicing)
{
	const int32_t cols[] = { 299, 0, 17, 150, 3, 42, 298 };
	const uint32_t outputs[] = { SCF_OUTPUT_CSR, SCF_OUTPUT_DENSE };
	for (int k = 0; k < 2; k++) {
		scf_options o = base();
		o.columns = cols;
		o.n_columns = 7;
		o.output = outputs[k];
		char err[512];
		scf_loader *l;
		scf_batch *b;
		int rc;
		cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
		while ((rc = scf_next(l, &b)) == 0) {
			cr_assert_eq(b->n_cols, 7);
			for (uint64_t j = 0; j < b->n_rows; j++) {
				uint64_t r = b->row_ids[j];
				float want[7] = { 0 }, got[7] = { 0 };
				for (int64_t e = ref.indptr[r]; e < ref.indptr[r + 1]; e++)
					for (int c = 0; c < 7; c++)
						if (ref.indices[e] == cols[c])
							want[c] = (float)ref.data[e];
				if (b->output == SCF_OUTPUT_DENSE) {
					memcpy(got, b->data + j * 7, sizeof(got));
				} else {
					for (int64_t e = b->indptr[j]; e < b->indptr[j + 1]; e++) {
						cr_assert(b->indices[e] >= 0 && b->indices[e] < 7);
						got[b->indices[e]] = b->data[e];
					}
				}
				cr_assert_eq(memcmp(want, got, sizeof(want)), 0, "row %lu", r);
			}
			scf_release(l, b);
		}
		cr_assert_eq(rc, SCF_END_OF_EPOCH);
		scf_close(l);
	}
}

/* Stop after k batches, save, reopen, load: together they equal one epoch. */
Test(strategies, kill_and_resume_equals_an_uninterrupted_epoch)
{
	scf_options o = base();
	o.epoch = 2;
	char err[512];
	scf_loader *l;
	scf_batch *b;
	uint64_t *full = malloc(ref.n_rows * 2 * sizeof(uint64_t)), nf = 0;
	int rc;

	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	while ((rc = scf_next(l, &b)) == 0) {
		memcpy(full + nf, b->row_ids, b->n_rows * 8);
		nf += b->n_rows;
		scf_release(l, b);
	}
	scf_close(l);

	const uint64_t stops[] = { 0, 1, 3, 4, 5, 17, 125 };
	for (size_t t = 0; t < sizeof(stops) / sizeof(stops[0]); t++) {
		uint64_t *got = malloc(ref.n_rows * 2 * sizeof(uint64_t)), ng = 0;
		scf_state st;
		cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
		for (uint64_t k = 0; k < stops[t] && (rc = scf_next(l, &b)) == 0; k++) {
			memcpy(got + ng, b->row_ids, b->n_rows * 8);
			ng += b->n_rows;
			scf_release(l, b);
		}
		cr_assert_eq(scf_state_save(l, &st), 0);
		scf_close(l); /* the job dies */

		cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(scf_state_load(l, &st), 0, "%s", scf_errmsg(l));
		while ((rc = scf_next(l, &b)) == 0) {
			cr_assert_eq(b->epoch, 2);
			memcpy(got + ng, b->row_ids, b->n_rows * 8);
			ng += b->n_rows;
			scf_release(l, b);
		}
		cr_assert_eq(rc, SCF_END_OF_EPOCH);
		cr_assert_eq(ng, nf, "stop %lu: %lu rows, expected %lu", stops[t], ng, nf);
		cr_assert_eq(memcmp(got, full, nf * 8), 0, "stop %lu: order differs", stops[t]);
		scf_close(l);
		free(got);
	}

	/* a state from other options does not load */
	scf_state st;
	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	scf_state_save(l, &st);
	scf_close(l);
	o.seed = 4;
	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(scf_state_load(l, &st), -EINVAL);
	cr_assert_not_null(strstr(scf_errmsg(l), "does not fit"), "%s", scf_errmsg(l));
	scf_close(l);
	free(full);
}

Test(strategies, even_ranks_get_equal_batch_counts)
{
	/* 2000 rows, batches of 16, fetches of 64 rows, with 1 to 5 ranks and 1
	 * or 2 workers: every rank delivers floor(2000 / (W * 16)) full batches,
	 * ranks are disjoint, and fewer than W * 16 rows are dropped */
	for (uint32_t w = 1; w <= 5; w++) {
		for (uint32_t nw = 1; nw <= 2; nw++) {
			uint8_t *seen = calloc(ref.n_rows, 1);
			uint64_t want = ref.n_rows / (w * 16), seen_rows = 0;
			for (uint32_t r = 0; r < w; r++) {
				uint64_t batches = 0;
				for (uint32_t k = 0; k < nw; k++) {
					scf_options o = base();
					o.flags = SCF_F_EVEN_RANKS;
					o.rank = r;
					o.world_size = w;
					o.worker = k;
					o.num_workers = nw;
					uint64_t total;
					uint64_t *c = counts(o, 1, &total);
					cr_assert_eq(total % 16, 0, "rank %u: short batch", r);
					batches += total / 16;
					for (uint64_t i = 0; i < ref.n_rows; i++) {
						cr_assert(c[i] <= 1 && !(c[i] && seen[i]),
						          "W=%u: row %lu twice", w, (unsigned long)i);
						seen[i] |= c[i] != 0;
						seen_rows += c[i];
					}
					free(c);
				}
				cr_assert_eq(batches, want, "W=%u workers=%u rank %u: %lu batches, "
				             "%lu possible", w, nw, r, (unsigned long)batches,
				             (unsigned long)want);
			}
			cr_assert_gt(seen_rows + w * 16, ref.n_rows, "W=%u: %lu of %lu rows kept",
			             w, (unsigned long)seen_rows, (unsigned long)ref.n_rows);
			free(seen);
		}
	}
}

Test(strategies, seeded_split)
{
	const double fr[3] = { 0.8, 0.1, 0.1 };
	uint32_t *a = malloc(1000 * 4), *b = malloc(1000 * 4), *c = malloc(1000 * 4);
	cr_assert_eq(scf_split(1000, 9, fr, 3, a), 0);
	cr_assert_eq(scf_split(1000, 9, fr, 3, b), 0);
	cr_assert_eq(scf_split(1000, 10, fr, 3, c), 0);
	cr_assert_eq(memcmp(a, b, 4000), 0, "same seed, same split");
	cr_assert_neq(memcmp(a, c, 4000), 0, "another seed, another split");
	uint64_t n[3] = { 0 };
	for (int i = 0; i < 1000; i++)
		n[a[i]]++;
	cr_assert(n[0] == 800 && n[1] == 100 && n[2] == 100, "%lu %lu %lu", n[0], n[1], n[2]);
	const double bad[2] = { 0.5, 0.6 };
	cr_assert_eq(scf_split(1000, 9, bad, 2, a), -EINVAL);
	free(a); free(b); free(c);
}

/*
 * normalize_total and log1p, done in the decode threads: every delivered
 * value equals log1p(x * target / rowsum) computed in double from the
 * H5Dread reference, in CSR and dense output, with and without a column
 * selection (the row sum covers every gene, selected or not).
 */
Test(strategies, normalize_total_and_log1p_match_the_reference)
{
	const int32_t cols[5] = { 7, 0, 299, 42, 150 };
	for (int variant = 0; variant < 4; variant++) {
		int dense = variant & 1, select = variant >> 1;
		scf_options o = base();
		o.normalize_total = 1e4;
		o.flags = SCF_F_LOG1P;
		o.output = dense ? SCF_OUTPUT_DENSE : SCF_OUTPUT_CSR;
		if (select) {
			o.columns = cols;
			o.n_columns = 5;
		}
		char err[512];
		scf_loader *l;
		scf_batch *b;
		uint64_t rows = 0;
		cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
		while (scf_next(l, &b) == 0) {
			for (uint64_t j = 0; j < b->n_rows; j++) {
				uint64_t r = b->row_ids[j];
				double sum = 0, want[300] = { 0 };
				for (int64_t e = ref.indptr[r]; e < ref.indptr[r + 1]; e++)
					sum += ref.data[e];
				for (int64_t e = ref.indptr[r]; e < ref.indptr[r + 1]; e++)
					want[ref.indices[e]] += ref.data[e];
				for (int c = 0; c < 300; c++)
					want[c] = log1p(sum ? want[c] * 1e4 / sum : want[c]);
				uint64_t n_out = select ? 5 : 300;
				float got[300] = { 0 };
				if (dense) {
					memcpy(got, b->data + j * n_out, n_out * sizeof(float));
				} else {
					for (int64_t e = b->indptr[j]; e < b->indptr[j + 1]; e++)
						got[b->indices[e]] = b->data[e];
				}
				for (uint64_t c = 0; c < n_out; c++) {
					double w = want[select ? cols[c] : (int)c];
					cr_assert(fabs(got[c] - w) <= 1e-5 * (1 + fabs(w)),
					          "variant %d row %lu col %lu: %g, expected %g", variant,
					          (unsigned long)r, (unsigned long)c, got[c], w);
				}
				rows++;
			}
			scf_release(l, b);
		}
		cr_assert_eq(rows, ref.n_rows);
		scf_close(l);
	}
	scf_options bad = base();
	bad.normalize_total = -1;
	char err[512];
	scf_loader *l;
	cr_assert_eq(scf_open(&l, path, &bad, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "normalize_total"), "%s", err);
}

/*
 * drop_last cuts a fetch's short last batch: the rows cut are read (their
 * neighbours need the bytes) but never placed.  Every rank, CSR and dense,
 * with a column selection: only whole batches, each row equal to the
 * reference (a cut row once read its output slot out of bounds).
 */
Test(strategies, drop_last_cut_rows_are_never_placed)
{
	const int32_t cols[4] = { 10, 56, 48, 58 };
	for (int dense = 0; dense < 2; dense++) {
		for (uint32_t r = 0; r < 3; r++) {
			scf_options o = base();
			o.batch_size = 16;
			o.block_size = 2;
			o.fetch_factor = 7;
			o.fetches_in_flight = 1;
			o.flags = SCF_F_DROP_LAST;
			o.rank = r;
			o.world_size = 3;
			o.columns = cols;
			o.n_columns = 4;
			o.output = dense ? SCF_OUTPUT_DENSE : SCF_OUTPUT_CSR;
			char err[512];
			scf_loader *l;
			scf_batch *b;
			cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
			while (scf_next(l, &b) == 0) {
				cr_assert_eq(b->n_rows, 16);
				for (uint64_t j = 0; j < b->n_rows; j++) {
					uint64_t row = b->row_ids[j];
					float want[4] = { 0 }, got[4] = { 0 };
					for (int64_t e = ref.indptr[row]; e < ref.indptr[row + 1]; e++)
						for (int c = 0; c < 4; c++)
							if (ref.indices[e] == cols[c])
								want[c] += (float)ref.data[e];
					if (dense)
						memcpy(got, b->data + j * 4, sizeof(got));
					else
						for (int64_t e = b->indptr[j]; e < b->indptr[j + 1]; e++)
							got[b->indices[e]] = b->data[e];
					cr_assert_eq(memcmp(got, want, sizeof(got)), 0, "row %lu",
					             (unsigned long)row);
				}
				scf_release(l, b);
			}
			scf_close(l);
		}
	}
}

/* SPDX-License-Identifier: MIT */
/*
 * The ABI's growth rules (lazymm(7), VERSIONS AND ABI): the version macros
 * and lmm_version(), lmm_stats for a caller built against an older or a
 * newer header, lmm_config's reserved words, and what lmm_stats.switches
 * counts.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#if !LAZYMM_CHECK_VERSION(0, 2, 0) || LAZYMM_CHECK_VERSION(LAZYMM_VERSION_MAJOR, LAZYMM_VERSION_MINOR, LAZYMM_VERSION_PATCH + 1)
#error "LAZYMM_CHECK_VERSION: wrong in #if"
#endif

Test(abi, version)
{
	char s[32];
	snprintf(s, sizeof(s), "%d.%d.%d", LAZYMM_VERSION_MAJOR, LAZYMM_VERSION_MINOR, LAZYMM_VERSION_PATCH);
	cr_assert_str_eq(s, LAZYMM_VERSION_STRING);
	cr_assert_eq(lmm_version(), (unsigned)LAZYMM_VERSION, "the library loaded is the header's");
	cr_assert(LAZYMM_CHECK_VERSION(LAZYMM_VERSION_MAJOR, LAZYMM_VERSION_MINOR, LAZYMM_VERSION_PATCH));
	cr_assert(LAZYMM_CHECK_VERSION(0, 0, 0));
	cr_assert(!LAZYMM_CHECK_VERSION(LAZYMM_VERSION_MAJOR + 1, 0, 0));
	cr_assert(!LAZYMM_CHECK_VERSION(LAZYMM_VERSION_MAJOR, LAZYMM_VERSION_MINOR + 1, 0));
}

/* A domain whose counters moved: a context made, used lazily and freed. */
static struct lmm_domain *busy_domain(void)
{
	struct lmm_domain *d = h_domain(LMM_SCHEME_REFCOUNT, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, true);
	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL);
	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL);
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_barrier(d), 0);
	return d;
}

/*
 * A program built against an older header knows a shorter struct lmm_stats
 * (later versions only append): here, the current one without its last
 * field, with guard bytes right behind it.
 */
#define OLD_WORDS (offsetof(struct lmm_stats, rcu_nudges) / sizeof(uint64_t))
struct old_caller {
	uint64_t stats[OLD_WORDS];
	unsigned char guard[64];
};

Test(abi, stats_fills_an_older_callers_struct_only)
{
	struct lmm_domain *d = busy_domain();
	struct lmm_stats now;
	struct old_caller old;
	memset(&old, 0xa5, sizeof(old));
	cr_assert_eq(lmm_stats(d, &now), 0);
	cr_assert_eq(lmm_stats_get(d, (struct lmm_stats *)(void *)old.stats, sizeof(old.stats)), 0);
	for (size_t i = 0; i < sizeof(old.guard); i++)
		cr_assert_eq(old.guard[i], 0xa5, "byte %zu past the old struct's end written", i);
	cr_assert_eq(memcmp(old.stats, &now, sizeof(old.stats)), 0, "the fields it knows are filled");
	cr_assert_gt(old.stats[offsetof(struct lmm_stats, frees) / sizeof(uint64_t)], 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

Test(abi, stats_zeroes_a_newer_callers_unknown_fields)
{
	struct lmm_domain *d = busy_domain();
	struct {
		struct lmm_stats known;
		uint64_t later[4]; /* fields of a later version */
	} newer;
	memset(&newer, 0xa5, sizeof(newer));
	cr_assert_eq(lmm_stats_get(d, &newer.known, sizeof(newer)), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(newer.later[i], 0);
	cr_assert_gt(newer.known.frees, 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

Test(abi, stats_rejects_bad_sizes)
{
	struct lmm_domain *d = h_domain(LMM_SCHEME_REFCOUNT, 0, 0);
	struct lmm_stats st;
	cr_assert_eq(lmm_stats_get(d, &st, 0), -EINVAL);
	cr_assert_eq(lmm_stats_get(d, &st, sizeof(st) - 1), -EINVAL);
	cr_assert_eq(lmm_stats_get(d, NULL, sizeof(st)), -EINVAL);
	cr_assert_eq(lmm_stats_get(NULL, &st, sizeof(st)), -EINVAL);
	cr_assert_eq(lmm_stats_get(d, &st, sizeof(uint64_t)), 0, "one field is a valid old struct");
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

Test(abi, config_reserved_must_be_zero)
{
	struct lmm_config cfg = { .scheme = LMM_SCHEME_REFCOUNT, .ops = &harness_ops };
	struct lmm_domain *d;
	/* The room 0.2 made while breaking the ABI anyway: a word per later field. */
	cr_assert_eq(sizeof(cfg.reserved), 8 * sizeof(uint64_t));
	cr_assert_eq(offsetof(struct lmm_config, reserved) + sizeof(cfg.reserved), sizeof(cfg),
		     "reserved is the struct's end");
	for (size_t i = 0; i < sizeof(cfg.reserved) / sizeof(cfg.reserved[0]); i++) {
		cfg.reserved[i] = 1;
		cr_assert_eq(lmm_domain_create(&cfg, &d), -EINVAL, "reserved[%zu] set: a field this library does not know", i);
		cfg.reserved[i] = 0;
	}
	cr_assert_eq(lmm_domain_create(&cfg, &d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/* lmm_stats.switches: the calls that began or resumed a lazy hold or installed. */
Test(abi, switches_counts_what_it_says)
{
	struct lmm_domain *d = h_domain(LMM_SCHEME_REFCOUNT, 0, 0);
	struct lmm_worker *w = h_online(d);
	struct tctx *a = h_ctx(d, false);
	struct lmm_stats st;

	lmm_switch(w, &a->ctx); /* install */
	lmm_switch(w, &a->ctx); /* already current: nothing */
	lmm_switch(w, NULL);    /* lazy enter */
	lmm_switch(w, NULL);    /* already context-less: nothing */
	lmm_switch(w, &a->ctx); /* lazy hit */
	cr_assert_eq(lmm_stats(d, &st), 0);
	cr_assert_eq(st.switches, 3);
	cr_assert_eq(st.switches, st.lazy_enters + st.lazy_hits + st.installs - st.unlazies);
	lmm_switch(w, NULL);
	lmm_put(&a->ctx);
	lmm_unlazy(w);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
	free(a);
}

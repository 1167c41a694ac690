/* SPDX-License-Identifier: MIT */
/*
 * A program that passes lazymm:free_deferred once per context, for
 * tests/probe-attach.sh. Plain C against the public API only.
 * Usage: probe-driver [contexts [wait]]; with "wait", it reads a line from
 * stdin first (the tracer attaches meanwhile, filtering on our pid).
 */
#include <lazymm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	(void)w; (void)prev; (void)next;
}
static void teardown(struct lmm_ctx *c) { (void)c; }
static void free_ctx(struct lmm_ctx *c) { free(c); }

int main(int argc, char **argv)
{
	static const struct lmm_ops ops = { switch_ctx, teardown, free_ctx };
	struct lmm_config cfg = { .scheme = LMM_SCHEME_REFCOUNT, .ops = &ops, .flags = LMM_F_DEFER_FREE };
	struct lmm_domain *d;
	int n = argc > 1 ? atoi(argv[1]) : 10;
	char line[16];

	if (argc > 2 && strcmp(argv[2], "wait") == 0 && !fgets(line, sizeof(line), stdin))
		return 1;

	if (lmm_domain_create(&cfg, &d))
		return 1;
	for (int i = 0; i < n; i++) {
		struct lmm_ctx *c = malloc(sizeof(*c));
		if (!c || lmm_ctx_init(d, c))
			return 1;
		lmm_put(c); /* the last user: teardown, then the deferred free */
	}
	if (lmm_barrier(d) || lmm_domain_destroy(d))
		return 1;
	printf("probe-driver: %d deferred frees\n", n);
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The smallest complete lazymm program (the README's usage example): one
 * worker runs a task of a context, then a context-less task that keeps the
 * context installed lazily; the context's last user leaves meanwhile, and
 * the context is freed only once the worker has switched away.
 *
 *   cc minimal.c $(pkg-config --cflags --libs lazymm)
 *   ./a.out [refcount|shootdown|hazard|rcu]
 */
#include <lazymm.h>
#include <stdio.h>
#include <stdlib.h>

struct proc {
	struct lmm_ctx ctx; /* first member: a struct lmm_ctx * is a struct proc * */
	const char *name;
};

static void switch_ctx(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	(void)w; (void)prev; (void)next; /* install next's page tables, TLB, ... here */
}
static void teardown(struct lmm_ctx *c) { printf("teardown %s\n", ((struct proc *)c)->name); }
static void free_proc(struct lmm_ctx *c) { printf("free %s\n", ((struct proc *)c)->name); free(c); }

int main(int argc, char **argv)
{
	static const struct lmm_ops ops = { switch_ctx, teardown, free_proc };
	struct lmm_config cfg = { .scheme = LMM_SCHEME_REFCOUNT, .ops = &ops };
	struct lmm_domain *d;
	struct lmm_worker *w;

	if (argc > 1 && lmm_scheme_parse(argv[1], &cfg.scheme)) {
		fprintf(stderr, "unknown scheme %s\n", argv[1]);
		return 2;
	}
	if (lmm_domain_create(&cfg, &d) || lmm_worker_online(d, NULL, &w))
		return 1;
	struct proc *p = calloc(1, sizeof(*p));
	if (!p || lmm_ctx_init(d, &p->ctx))
		return 1;
	p->name = "guest0";

	lmm_switch(w, &p->ctx); /* run a task of guest0: installs it */
	lmm_switch(w, NULL);    /* a context-less task: guest0 stays installed, lazily */
	lmm_put(&p->ctx);       /* guest0's last user exits: teardown now, free later */
	lmm_unlazy(w);          /* the worker moves to init: now it can be freed */
	lmm_barrier(d);         /* wait for every free that is due */

	struct lmm_stats st;
	lmm_stats(d, &st);
	printf("%s: %llu installs, %llu frees\n", lmm_scheme_name(cfg.scheme),
	       (unsigned long long)st.installs, (unsigned long long)st.frees);
	lmm_worker_offline(w);
	return lmm_domain_destroy(d) ? 1 : 0;
}

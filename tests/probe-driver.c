/* SPDX-License-Identifier: MIT */
/*
 * A program that passes given probes a known number of times, for
 * tests/probe-attach.sh. Plain C against the public API only.
 * Usage: probe-driver [contexts [wait]]; with "wait", it reads a line from
 * stdin first (the tracer attaches meanwhile, filtering on our pid).
 * For each of the N contexts, lazymm:free_deferred once under refcount;
 * then, under shootdown, lazymm:defer_handoff and lazymm:free_deferred once
 * each: a worker holds the context lazily when its last user drops it, so
 * LMM_F_DEFER_FREE hands it to the reclaim thread at once. N + N frees, N
 * hand-offs in all.
 */
#include <errno.h>
#include <lazymm.h>
#include <pthread.h>
#include <semaphore.h>
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
static const struct lmm_ops ops = { switch_ctx, teardown, free_ctx };

/* The holder: installs each context, keeps it lazily until it is dropped. */
static struct lmm_domain *sd_domain;
static struct lmm_ctx *volatile sd_next;
static sem_t sd_held, sd_dropped;
static int sd_n;

static void wait_sem(sem_t *s)
{
	while (sem_wait(s) != 0 && errno == EINTR) /* the shootdown's signal */
		;
}

static void *holder(void *arg)
{
	struct lmm_worker *w;
	(void)arg;
	if (lmm_worker_online(sd_domain, NULL, &w))
		abort();
	for (int i = 0; i < sd_n; i++) {
		wait_sem(&sd_dropped); /* the next context is ready */
		lmm_switch(w, sd_next);
		lmm_switch(w, NULL); /* a context-less task: held lazily */
		sem_post(&sd_held);
	}
	wait_sem(&sd_dropped);
	if (lmm_worker_offline(w))
		abort();
	return NULL;
}

static int run(enum lmm_scheme scheme, int n)
{
	struct lmm_config cfg = { .scheme = scheme, .ops = &ops, .flags = LMM_F_DEFER_FREE };
	struct lmm_domain *d;
	pthread_t t;

	if (lmm_domain_create(&cfg, &d))
		return 1;
	if (scheme == LMM_SCHEME_SHOOTDOWN) {
		sd_domain = d, sd_n = n;
		if (sem_init(&sd_held, 0, 0) || sem_init(&sd_dropped, 0, 0) ||
		    pthread_create(&t, NULL, holder, NULL))
			return 1;
	}
	for (int i = 0; i < n; i++) {
		struct lmm_ctx *c = malloc(sizeof(*c));
		if (!c || lmm_ctx_init(d, c))
			return 1;
		if (scheme == LMM_SCHEME_SHOOTDOWN) {
			sd_next = c;
			sem_post(&sd_dropped);
			wait_sem(&sd_held);
		}
		lmm_put(c); /* the last user: teardown, then the deferred free */
	}
	if (scheme == LMM_SCHEME_SHOOTDOWN) {
		sem_post(&sd_dropped);
		if (pthread_join(t, NULL))
			return 1;
	}
	return lmm_barrier(d) || lmm_domain_destroy(d);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10;
	char line[16];

	if (argc > 2 && strcmp(argv[2], "wait") == 0 && !fgets(line, sizeof(line), stdin))
		return 1;
	if (run(LMM_SCHEME_REFCOUNT, n) || run(LMM_SCHEME_SHOOTDOWN, n))
		return 1;
	printf("probe-driver: %d deferred frees, %d deferred hand-offs\n", 2 * n, n);
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The tests' hook library: application hooks that check the contract of
 * lazymm.h's struct lmm_ops from the inside, used by every Criterion
 * program whichever library it links (harness.c uses only the public
 * interface). Every context the tests make is a struct tctx; the hooks
 * record what each worker has installed and abort (async-signal-safely:
 * switch_ctx may run in the domain's signal handler) on any violation:
 * prev not what was installed, NULL or equal arguments, an install of a
 * freed context, a free while installed, teardown or free not exactly once.
 */
#ifndef LMM_TEST_HARNESS_H
#define LMM_TEST_HARNESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>

#include "lazymm.h"
#include "schemes.h"

#define TCTX_LIVE 0x4c495645u
#define TCTX_POISON 0xdeadbeefu

struct tctx {
	struct lmm_ctx ctx;
	atomic_uint canary;
	atomic_int teardowns;
	atomic_int frees;
	atomic_int installed;  /* workers that have it installed, per the hooks */
	struct lmm_ctx *drop_on_free; /* a free that drops another context */
	atomic_ulong free_thread;     /* pthread_self() of the thread that ran free */
	bool release_memory;           /* free() the tctx in the free hook */
};

#define TCTX(c) ((struct tctx *)((char *)(c) - offsetof(struct tctx, ctx)))

extern const struct lmm_ops harness_ops;
extern atomic_long harness_frees, harness_teardowns, harness_installs;
/* A test's own action at the end of every free hook (NULL: none). */
extern void (*h_free_extra)(struct lmm_ctx *c);

/* A domain with the harness hooks and a 20 s barrier timeout; aborts the test on failure. */
struct lmm_domain *h_domain(enum lmm_scheme s, unsigned flags, unsigned max_workers);
/* The same with the barrier timeout timeout_ms (0: the library's default). */
struct lmm_domain *h_domain_timeout(enum lmm_scheme s, unsigned flags, unsigned max_workers,
				    unsigned timeout_ms);
/* A new context in d (users = 1, count = 1); release_memory: the free hook frees it. */
struct tctx *h_ctx(struct lmm_domain *d, bool release_memory);
/* A context of the caller's own memory: canary set, not yet lmm_ctx_init'ed. */
void h_tctx_prepare(struct tctx *t, bool release_memory);
/* lmm_worker_online + harness bookkeeping for the calling thread. */
struct lmm_worker *h_online(struct lmm_domain *d);
/* Abort with a message; async-signal-safe. */
_Noreturn void h_fail(const char *msg);
/* The schemes this build has (schemes.h), for loops over them. */
extern const enum lmm_scheme h_schemes[H_NSCHEMES];

/*
 * A test written once and registered for every scheme this build has, from
 * the one list in schemes.h: SCHEME_TEST(suite, behaviour) { ...scheme... }
 * registers suite/behaviour_<scheme> (behaviour_refcount, ...), each running
 * the body with that scheme. SCHEME_TEST has a 60 s timeout; SCHEME_TEST_OPTS
 * takes Criterion's test options instead.
 */
#define H_SCHEME_TEST_ONE(s, S, suite, name, ...) \
	Test(suite, name##_##s, __VA_ARGS__) { h_run(LMM_SCHEME_##S, suite##_##name##_body); }
#define SCHEME_TEST_OPTS(suite, name, ...)                                 \
	static void suite##_##name##_body(enum lmm_scheme scheme);          \
	H_SCHEMES(H_SCHEME_TEST_ONE, suite, name, __VA_ARGS__)              \
	static void suite##_##name##_body(enum lmm_scheme scheme)
#define SCHEME_TEST(suite, name) SCHEME_TEST_OPTS(suite, name, .timeout = 60)

void h_run(enum lmm_scheme s, void (*body)(enum lmm_scheme));

/* Sleep us microseconds. */
void h_nap_us(long us);

/* Run fn(arg) on a new thread and join it. */
void h_on_thread(void *(*fn)(void *), void *arg);

/* A worker thread that idles (lmm_idle_enter/exit around short sleeps) until told to stop. */
struct h_idler {
	struct lmm_domain *d;
	struct lmm_ctx *run_first;  /* run a task of this context once, then go lazy */
	atomic_bool ready, stop;
	pthread_t thread;
	struct lmm_worker *w;
};
void h_idler_start(struct h_idler *t);
void h_idler_stop(struct h_idler *t);

#endif

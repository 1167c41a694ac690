/* SPDX-License-Identifier: MIT */
/*
 * The reclaim engine (reclaim.c): at most one library thread per domain,
 * lmm-reclaim, behind the deferred frees (LMM_F_DEFER_FREE) and a scheme's
 * own reclaim work (shootdown's stragglers, rcu's grace periods). A dying
 * context is on at most one of its queues at a time, through its one link,
 * struct ctx_impl's reclaim_next: the scheme's queue first (its pass gives
 * it back to the core with lmm__ctx_release), then, with LMM_F_DEFER_FREE,
 * the free queue.
 *
 * A scheme plugs in through its ops table (lib/internal.h): reclaim_pass
 * runs the work queued for it; reclaim_at_create asks for the thread from
 * lmm_domain_create on. It queues work with lmm__reclaim_queue and wakes the
 * thread with lmm__reclaim_kick. With LMM_F_NO_THREADS there is no thread:
 * lmm_poll and lmm_barrier run the passes (lmm__reclaim_poll).
 */
#ifndef LMM_RECLAIM_H
#define LMM_RECLAIM_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>

struct ctx_impl;
struct lmm_domain;

struct lmm_reclaim {
	pthread_mutex_t lock; /* guards the fields below; never held across a free, a pass or thread_create */
	struct ctx_impl *work, **work_tail;   /* queued for the scheme's reclaim_pass, oldest first */
	struct ctx_impl *frees, **frees_tail; /* LMM_F_DEFER_FREE: released, their free due, oldest first */
	bool started;  /* the thread exists (joined by lmm__reclaim_fini) */
	bool starting; /* a dropper runs cfg.thread_create, without the lock (lmm__reclaim_queue) */
	bool stop;
	pthread_t thread;
	/*
	 * The thread's wake-up: a semaphore, since sem_post is
	 * async-signal-safe (rcu's handler kicks: leave_torn). kicked: a post
	 * is on its way that no pass consumed yet; a kick then posts nothing.
	 */
	sem_t wake;
	atomic_bool kicked;
};

/* At lmm_domain_create, before anything may queue: 0 or a negative errno. */
LMM_HIDDEN int lmm__reclaim_init(struct lmm_domain *d);
/* lmm_domain_create: start the thread now (LMM_F_DEFER_FREE, reclaim_at_create); 0 or a negative errno. */
LMM_HIDDEN int lmm__reclaim_start(struct lmm_domain *d);
/* Stop and join the thread, if any (its queues are empty), and free the engine. Cancellation disabled. */
LMM_HIDDEN void lmm__reclaim_fini(struct lmm_domain *d);
/*
 * Queue the dying context c for the scheme's reclaim_pass. Starts the
 * thread if it does not exist yet, with no lock held (cfg.thread_create
 * is the runtime's hook). false if there is no thread to take it: its
 * start failed, or another caller is starting it (no caller waits for
 * another's start); the caller keeps c and tries again later.
 */
LMM_HIDDEN bool lmm__reclaim_queue(struct lmm_domain *d, struct ctx_impl *c);
/*
 * Queue c even with no thread to take it (lmm__reclaim_queue said false,
 * and the caller cannot keep the work: it holds c itself). A thread that
 * starts later takes it; until then lmm__reclaim_help's caller runs it.
 */
LMM_HIDDEN void lmm__reclaim_park(struct lmm_domain *d, struct ctx_impl *c);
/* lmm_barrier's wait: wake the thread, or run a pass here while there is none. */
LMM_HIDDEN void lmm__reclaim_help(struct lmm_domain *d);
/* LMM_F_DEFER_FREE: run c's free on the thread (or in lmm_poll). */
LMM_HIDDEN void lmm__reclaim_free(struct lmm_domain *d, struct ctx_impl *c);
/* Wake the thread for a pass: work queued, or lmm_barrier waits. Async-signal-safe. */
LMM_HIDDEN void lmm__reclaim_kick(struct lmm_domain *d);
/* LMM_F_NO_THREADS: one pass on the caller's thread; true if work is left. */
LMM_HIDDEN bool lmm__reclaim_poll(struct lmm_domain *d);

#endif

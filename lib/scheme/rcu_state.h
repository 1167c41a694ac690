/* SPDX-License-Identifier: MIT */
/* The rcu scheme's state in the core's objects (lib/internal.h); rcu.c has the protocol. */
#ifndef LMM_SCHEME_RCU_STATE_H
#define LMM_SCHEME_RCU_STATE_H

#include <stdatomic.h>
#include <stdint.h>

struct lmm_ctx;
struct rcu_domain; /* rcu.c: the grace periods' bookkeeping and backpressure */

/*
 * Per worker, hot: what the lazy hit reads (rcu_lazy_resume, rcu.h), two
 * words typed in lazymm.h's inline layout, struct lmm_inline_rcu (state:
 * RS_*, written by the worker inside critical sections and by its own nudge
 * handler; gp_waiting: non-zero while a grace period waits): LMM_INLINE
 * callers share them.
 */

/* Per worker, cold. */
struct rcu_cold {
	/*
	 * A context whose count the nudge handler took to 0 when it left a
	 * counted lazy hold (leave_torn). The handler cannot run the final drop
	 * (it takes locks): it kicks the reclaim engine (lmm__reclaim_kick, a
	 * sem_post), whose pass, the worker's next install, lmm_idle_exit or offline, or the
	 * last user waiting in users_zero, runs it (one exchange decides who).
	 */
	_Atomic(struct lmm_ctx *) orphan;
	/*
	 * When the worker last reported, in microseconds of the monotonic
	 * clock (0: never). A nudge round skips a worker that reported within
	 * its domain's nudge delay (nudge_worker).
	 */
	_Atomic(uintptr_t) reported;
};

/* Its members of the core's per-scheme unions (lib/internal.h). */
#define LMM_RCU_WORKER_HOT struct lmm_inline_rcu rcu;
#define LMM_RCU_WORKER_COLD struct rcu_cold rcu;
#define LMM_RCU_CTX /* its queue link is the reclaim engine's, reclaim_next */
#define LMM_RCU_DOMAIN struct rcu_domain *rcu;

#endif

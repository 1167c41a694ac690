/* SPDX-License-Identifier: MIT */
/*
 * lmm_membarrier: a full barrier on every worker that runs a task of a
 * context, so that the code those tasks run can pair compiler-only barriers
 * with it (the asymmetric fences of membarrier(2), scoped to one context).
 *
 * With membarrier(2) the kernel does more than asked: every running thread of
 * the process executes a barrier, and the scheduler orders the ones that are
 * not running. Without it, the caller signals exactly the workers whose
 * current context is ctx and waits until each handler has run. Workers that
 * hold ctx lazily are skipped: a context-less task runs no code of ctx
 * (the reason the kernel's membarrier reads p->mm, never active_mm). Workers
 * that make ctx current after we looked are ordered by the fence in
 * switch.c's current_published(), which only this fallback turns on. The
 * whole argument is in docs/design.md, "lmm_membarrier".
 */
#include "internal.h"

/*
 * Requests, numbered for the whole process. A handler acknowledges the newest
 * number it saw, so one landing can serve several callers, whoever sent it.
 */
static atomic_ulong requests;

bool lmm__membarrier_fallback(void)
{
	/* Registration is tried once and cached; every later answer is the same. */
	return !lmm_plat_membarrier_register();
}

/* The domain's signal landed on w (signal.c): async-signal-safe, lock-free. */
void lmm__membarrier_ack(struct lmm_worker *w)
{
	/*
	 * Acquire pairs with the callers' fetch_add: their writes before the call
	 * are visible below (litmus: membarrier-signal-early, -middle, -late, as
	 * for the fence and the release below). The fence alone is enough, and
	 * so is this acquire with the release alone (herd7: Never with either
	 * taken out, at each of the three points): each covers the other, which
	 * is why membarrier-signal-*-neg take out both.
	 */
	unsigned long seen = atomic_load_explicit(&requests, memory_order_acquire);
	/* The full barrier asked for; pairs with the callers' seq_cst fences. */
	atomic_thread_fence(memory_order_seq_cst);
	/* Release pairs with the caller's acquire of the ack: this thread's accesses so far are visible to it. */
	atomic_store_explicit(&w->membarrier_ack, seen, memory_order_release);
}

static bool acked(struct lmm_worker *w, unsigned long ticket)
{
	/* Acquire pairs with the release in lmm__membarrier_ack (litmus: membarrier-signal-*). */
	unsigned long ack = atomic_load_explicit(&w->membarrier_ack, memory_order_acquire);
	return (long)(ack - ticket) >= 0;
}

/* w left the domain (or its slot was reused) since we signalled it: it runs no task of ctx. */
static bool gone(struct lmm_worker *w, unsigned generation)
{
	/* kill_lock orders the worker's accesses before its offline before our return
	 * (litmus: membarrier-gone; its current_leaving fence, read through online by
	 * our fence before return, orders them too: each is enough alone). */
	pthread_mutex_lock(&w->kill_lock);
	bool left = !atomic_load_explicit(&w->online, memory_order_relaxed) ||
		    atomic_load_explicit(&w->generation, memory_order_relaxed) != generation;
	pthread_mutex_unlock(&w->kill_lock);
	return left;
}

#define BATCH 64 /* workers signalled before we wait: bounded stack, parallel round trips */

struct target {
	struct lmm_worker *w;
	unsigned generation;
};

#define RESEND_FIRST_NS 1000000000ull /* a signal unanswered this long may have been lost */

static int wait_batch(struct target *t, unsigned n, unsigned long ticket,
		      unsigned long long deadline)
{
	struct backoff backoff = BACKOFF_INIT;
	unsigned long long resend_gap = RESEND_FIRST_NS;
	unsigned long long resend_at = deadline_after(resend_gap);
	unsigned spins = 0;

	while (n) {
		for (unsigned i = 0; i < n;) {
			if (acked(t[i].w, ticket) || (spins > 16 && gone(t[i].w, t[i].generation)))
				t[i] = t[--n];
			else
				i++;
		}
		if (!n)
			break;
		unsigned long long now = lmm_plat_now_ns();
		if (now > deadline)
			return -ETIMEDOUT;
		if (now >= resend_at) {
			/*
			 * Still pending (blocked, not scheduled) or taken by
			 * something else (a sigwait, a sanitizer's runtime): send
			 * again, 1 s, 2 s, 4 s ... apart. A duplicate is harmless:
			 * the handler only acknowledges.
			 */
			LMM_PROBE(membarrier_resend, t[0].w->domain, n);
			for (unsigned i = 0; i < n; i++)
				lmm__signal_worker(t[i].w);
			resend_gap *= 2;
			resend_at = now + resend_gap;
		}
		if (++spins > 16)
			backoff_nap(&backoff);
	}
	return 0;
}

static int membarrier_signals(struct ctx_impl *c)
{
	struct lmm_domain *d = c->domain;
	struct lmm_ctx *ctx = ctx_public(c);
	struct target batch[BATCH];
	unsigned n = 0;
	int ret = 0;

	/* Acq_rel: releases our earlier writes to every handler that acquires a newer number
	 * (litmus: membarrier-signal-*). */
	unsigned long ticket = atomic_fetch_add_explicit(&requests, 1, memory_order_acq_rel) + 1;
	/*
	 * Pairs with current_published() on the workers: either we read a
	 * worker's new current and signal it, or its accesses after the switch
	 * see everything we wrote before this fence (litmus: membarrier-published).
	 */
	atomic_thread_fence(memory_order_seq_cst);

	unsigned long long deadline = deadline_after(d->barrier_timeout_ms * 1000000ull);
	for (unsigned i = 0; i < d->max_workers && !ret; i++) {
		/* Acquire pairs with the release publication in lmm_worker_online
		 * (litmus: worker-publish). */
		struct lmm_worker *w = atomic_load_explicit(&d->workers[i], memory_order_acquire);
		/* Ourselves: our own fences are the barrier. */
		if (!w || w == lmm__self)
			continue;
		/* Relaxed: the fence above orders it (see current_published). */
		if (atomic_load_explicit(&w->current, memory_order_relaxed) != ctx)
			continue;
		/* Relaxed: a stale value only makes gone() say "left" later, which is then true. */
		unsigned generation = atomic_load_explicit(&w->generation, memory_order_relaxed);
		if (acked(w, ticket) || !lmm__signal_worker(w))
			continue; /* served by another caller's signal already, or offline */
		batch[n++] = (struct target){ w, generation };
		if (n == BATCH) {
			ret = wait_batch(batch, n, ticket, deadline);
			n = 0;
		}
	}
	if (!ret)
		ret = wait_batch(batch, n, ticket, deadline);
	if (ret)
		LMM_PROBE(membarrier_timeout, d, ctx);
	/*
	 * Pairs with the handlers' fences, and acquires for the relaxed reads
	 * of current above: a worker we skipped because it had left ctx
	 * released its accesses of ctx (current_leaving) before we return
	 * (litmus: membarrier-leaving, membarrier-signal-*).
	 */
	atomic_thread_fence(memory_order_seq_cst);
	return ret;
}

int lmm_membarrier(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = ctx_impl(ctx);

	if (!ctx || c->magic != CTX_MAGIC)
		return -EINVAL;
	if (!lmm__membarrier_fallback())
		return lmm_plat_membarrier();
	int cancel = cancel_off(); /* wait_batch's naps are cancellation points */
	int ret = membarrier_signals(c);
	cancel_restore(cancel);
	return ret;
}

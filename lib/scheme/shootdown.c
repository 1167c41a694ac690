/* SPDX-License-Identifier: MIT */
/*
 * The shootdown scheme (MMU_LAZY_TLB_SHOOTDOWN, Piggin,
 * 20230203071837.1136453-6-npiggin@gmail.com), signals as IPIs.
 *
 * A lazy hold is uncounted and writes nothing shared: entering and leaving
 * lazy mode are no-ops here. The price is paid once per context, when its
 * count reaches 0: every worker that may still have it installed (its bit in
 * the worker mask) must switch away before free runs.
 *
 *   1. The dropper, if it is itself lazy on the context, switches inline.
 *   2. (a) Every other worker in the mask whose published active is not the
 *      context loses its bit without a signal.
 *   3. The rest are sent the domain's signal; the handler (sd_signal) moves a
 *      worker that is lazy on a dying context to init. The dropper polls the
 *      published active of each until none has the context installed.
 *   4. After a bounded wait (a worker blocks the signal, or is stuck in a
 *      switch), the context goes to the reclaim engine (lib/reclaim.h),
 *      whose thread keeps retrying; lmm_barrier waits for it. A dropper
 *      inside a switch with the context installed hands it over at once.
 *
 * (b) A worker leaving a dying context by itself clears its own bit.
 * (c) Droppers share signals: a signal already on its way to a worker, sent
 * after this dropper's request, serves it too; a round over several contexts
 * (the reclaim thread's batches, every drop with LMM_F_DEFER_FREE) signals
 * each worker once.
 * (d) A holder is signalled again only once its last signal was handled,
 * or after that signal has gone unanswered for a second, then 2, 4 ... 64:
 * a pending signal serves every dropper, but one that something else took
 * (a sigwait of the application's, a sanitizer's runtime) must not leave
 * the context waiting forever.
 */
#include <stdlib.h>
#include <string.h>

#include "../alloc.h"
#include "shootdown.h"

#define SD_WAIT_NS (100ull * 1000000)       /* the dropper's bounded wait */
#define SD_RESEND_FIRST_NS (10ull * 1000000) /* re-signal a holder that has not moved */
#define SD_PATIENCE_FIRST_MS 1000u /* (d): an unanswered signal is sent again after this */
#define SD_PATIENCE_MAX_MS 64000u  /* doubling up to this */

/* The worker's words are struct shootdown_cold, the context's struct shootdown_ctx (shootdown_state.h). */

static bool ctx_dying(struct lmm_ctx *ctx)
{
	/*
	 * Relaxed: the core stores DYING before count_zero; a reader that must
	 * see it (the handler) first acquires the ticket released after it
	 * (litmus: sd-ticket).
	 */
	return atomic_load_explicit(&ctx_impl(ctx)->state, memory_order_relaxed) == CTX_DYING;
}

/* --- the worker side --- */

/* Uncounted lazy holds: no lazy hooks at all, nothing to take or give back. */

/* The scheme's own unlazy of w (inline in the dropper, or in the handler). */
static void shoot_self(struct lmm_worker *w)
{
	/* Relaxed: owner-only flag, read by this thread's switched_away. */
	atomic_store_explicit(&w->cold.shootdown.shooting, true, memory_order_relaxed);
	lmm__unlazy(w);
	atomic_store_explicit(&w->cold.shootdown.shooting, false, memory_order_relaxed);
}

/*
 * (b): switch_ctx just moved w off prev, which it held lazily. If prev is
 * dying, take w out of its mask now so that no dropper signals or polls it.
 * Runs inside the switch's critical section, before the core stores active.
 */
static void sd_switched_away(struct lmm_worker *w, struct lmm_ctx *prev)
{
	if (!ctx_dying(prev))
		return;
	/*
	 * Clear the bit before the core publishes the new active: once a
	 * dropper sees active move it may free prev, mask included, so this
	 * must be our last touch of prev. switch_ctx is done with prev; after
	 * this the core only stores active. Release pairs with sweep's acquire
	 * of the word: switch_ctx's last use of prev happens before the free
	 * (litmus: sd-self-clear; the order against the filter's free of the
	 * mask: sd-self-clear-filter).
	 * (LMM_F_DEBUG's check tolerates the few instructions until active is
	 * stored: see debug_check_worker.)
	 */
	_Atomic(unsigned long) *word = &ctx_impl(prev)->worker_mask[w->id / BITS_PER_LONG];
	/* Release: pairs with sweep's acquire of the word (see above; litmus: sd-self-clear,
	 * sd-self-clear-filter). */
	atomic_fetch_and_explicit(word, ~(1ul << (w->id % BITS_PER_LONG)), memory_order_release);
	/* Relaxed: owner-only flag. */
	if (!atomic_load_explicit(&w->cold.shootdown.shooting, memory_order_relaxed))
		stat_add(w->domain, ST_SIGNALS_AVOIDED_SELFCLEAR, 1);
}

/*
 * The domain's signal (do_shoot_lazy_tlb). Runs in the handler, or as a
 * switch ends if the signal landed inside it; never on half-updated state.
 * Only atomics and the application's async-signal-safe switch_ctx.
 */
static void sd_signal(struct lmm_worker *w)
{
	/*
	 * Acquire pairs with the release ticket in request(): every context
	 * whose dropper asked before the ticket we read is seen DYING below.
	 * A ticket we do not see yet comes with a signal of its own, later.
	 * (litmus: sd-ticket)
	 */
	unsigned long seen = atomic_load_explicit(&w->cold.shootdown.req, memory_order_acquire);
	/* Relaxed: own state (we are not inside a switch: see critical). */
	struct lmm_ctx *active = atomic_load_explicit(&w->active, memory_order_relaxed);
	if (!ctx_is_init(active) && !atomic_load_explicit(&w->current, memory_order_relaxed) &&
	    ctx_dying(active))
		shoot_self(w);
	/* Relaxed: only a hint for resend(); a stale value just delays a resend. */
	atomic_store_explicit(&w->cold.shootdown.seen, seen, memory_order_relaxed);
}

/* --- the dropper side --- */

static unsigned long now_ms(void)
{
	return (unsigned long)(lmm_plat_now_ns() / 1000000);
}

/*
 * Ask for a signal to reach w after now; send it unless someone else will.
 * @patience: how long resend() waits for it to be handled before sending
 * another. true if this call sent one.
 */
static bool request(struct lmm_worker *w, unsigned long patience)
{
	/* Release: pairs with the acquire in sd_signal (the DYING state before us;
	 * litmus: sd-ticket). */
	unsigned long ticket = atomic_fetch_add_explicit(&w->cold.shootdown.req, 1, memory_order_release) + 1;
	/* Relaxed: SENT only decides who sends; REQ carries the ordering. */
	unsigned long sent = atomic_load_explicit(&w->cold.shootdown.sent, memory_order_relaxed);
	do {
		if (sent >= ticket) {
			/* A sender that took its ticket after ours will signal: (c). */
			stat_add(w->domain, ST_SIGNALS_AVOIDED_BATCHED, 1);
			return false;
		}
	} while (!atomic_compare_exchange_weak_explicit(&w->cold.shootdown.sent, &sent, ticket,
						       memory_order_relaxed, memory_order_relaxed));
	/* Relaxed: hints for resend(); a stale pair costs one signal early or late. */
	atomic_store_explicit(&w->cold.shootdown.sent_at, now_ms(), memory_order_relaxed);
	atomic_store_explicit(&w->cold.shootdown.patience, patience, memory_order_relaxed);
	/*
	 * False when w went offline meanwhile (it left every context first,
	 * kernel commit a08311b423; litmus: sd-offline), or if the send
	 * failed: then let the next resend send.
	 */
	if (lmm__signal_worker(w))
		return true;
	/* Relaxed: a hint, see resend(). */
	atomic_store_explicit(&w->cold.shootdown.seen, ticket, memory_order_relaxed);
	return false;
}

/*
 * A holder that has not moved after a while: signal again if the last
 * signal sent to it was already handled. One still pending (blocked, or the
 * thread not scheduled yet) will act when it runs: it was sent after our
 * first request, so its handler sees our context dying. Unless it was lost
 * (d): after a long silence, send another, and wait twice as long for that.
 */
static void resend(struct lmm_worker *w)
{
	/* Relaxed: hints; the worst a stale value does is delay the resend a round. */
	unsigned long sent = atomic_load_explicit(&w->cold.shootdown.sent, memory_order_relaxed);
	if (atomic_load_explicit(&w->cold.shootdown.seen, memory_order_relaxed) >= sent) {
		request(w, SD_PATIENCE_FIRST_MS);
		return;
	}
	/* Relaxed: hints, as above. */
	unsigned long patience = atomic_load_explicit(&w->cold.shootdown.patience, memory_order_relaxed);
	unsigned long sent_at = atomic_load_explicit(&w->cold.shootdown.sent_at, memory_order_relaxed);
	if (now_ms() - sent_at < patience)
		return;
	LMM_PROBE(shootdown_resend, w->domain, w->id, (unsigned long)patience);
	if (request(w, patience < SD_PATIENCE_MAX_MS / 2 ? 2 * patience : SD_PATIENCE_MAX_MS))
		stat_add(w->domain, ST_SIGNALS_UNANSWERED, 1);
}

enum sweep_mode {
	SWEEP_FILTER, /* first look: count what (a) saves */
	SWEEP_POLL,   /* clear the bits of workers that moved */
	SWEEP_SIGNAL, /* and signal those that did not */
	SWEEP_RESEND, /* and signal again those whose last signal was handled */
};

/*
 * Visit c's mask: drop the bit of every worker that does not have c
 * installed, act on those that do. Returns how many still do. @signalled,
 * if not NULL, collects the workers signalled in this round over several
 * contexts, so each is signalled once.
 */
static unsigned sweep(struct ctx_impl *c, enum sweep_mode mode, unsigned long *signalled)
{
	struct lmm_domain *d = c->domain;
	struct lmm_ctx *ctx = ctx_public(c);
	unsigned holders = 0;

	/* The mask words with acquire: the walk pairs with sd_switched_away's release clear. */
	struct mask_walk m = mask_walk_start(c);
	while (mask_walk_next(&m)) {
		struct lmm_worker *w = m.w;
		/*
		 * Acquire pairs with the release store of active after
		 * switch_ctx: a worker seen elsewhere is done with ctx.
		 * No new install can race: the count is 0. The worker
		 * cleared its own bit before storing active, so the
		 * free of the mask comes after its last touch (litmus:
		 * install-active, sd-mask-visible, sd-self-clear-filter).
		 */
		if (!w || atomic_load_explicit(&w->active, memory_order_acquire) != ctx) {
			mask_clear(c, m.id);
			if (mode == SWEEP_FILTER)
				stat_add(d, ST_SIGNALS_AVOIDED_PUBLISHED, 1);
			continue;
		}
		holders++;
		if (mode == SWEEP_POLL || mode == SWEEP_FILTER)
			continue;
		unsigned long bit = 1ul << (m.id % BITS_PER_LONG);
		if (signalled && (signalled[m.word] & bit)) {
			stat_add(d, ST_SIGNALS_AVOIDED_BATCHED, 1);
			continue;
		}
		if (signalled)
			signalled[m.word] |= bit;
		if (mode == SWEEP_RESEND)
			resend(w);
		else
			request(w, SD_PATIENCE_FIRST_MS);
	}
	return holders;
}

/*
 * One signal round over the list @batch (linked through reclaim_next): signal the
 * holders, poll until none is left or @budget_ns passed, re-signalling the
 * slow ones now and then. Releases every context that came free; returns the
 * list of the others. Called with no lock held.
 */
static struct ctx_impl *shoot_round(struct lmm_domain *d, struct ctx_impl *batch,
				    unsigned long long budget_ns)
{
	unsigned long *signalled = NULL;
	if (batch && batch->reclaim_next)
		signalled = lmm__calloc(d->mask_words, sizeof(*signalled)); /* NULL: no dedup */

	unsigned long long now = lmm_plat_now_ns();
	unsigned long long deadline = now + budget_ns;
	LMM_PROBE(shootdown_round, d, ctx_public(batch), (unsigned long)(budget_ns / 1000));
	unsigned long long resend_gap = SD_RESEND_FIRST_NS, resend_at = now;
	struct backoff backoff = BACKOFF_INIT;
	struct ctx_impl *done = NULL;

	for (;;) {
		bool resend = now >= resend_at;
		if (resend) {
			if (signalled)
				memset(signalled, 0, d->mask_words * sizeof(*signalled));
			resend_at = now + resend_gap;
			resend_gap *= 2;
		}
		struct ctx_impl *left = NULL, *c = batch;
		while (c) {
			struct ctx_impl *next = c->reclaim_next;
			/* The list is ours alone: plain word, no atomics needed. */
			enum sweep_mode mode = !resend ? SWEEP_POLL
					     : c->scheme.shootdown.signalled ? SWEEP_RESEND : SWEEP_SIGNAL;
			c->scheme.shootdown.signalled |= resend;
			if (sweep(c, mode, signalled)) {
				c->reclaim_next = left;
				left = c;
			} else {
				c->reclaim_next = done;
				done = c;
			}
			c = next;
		}
		batch = left;
		now = lmm_plat_now_ns();
		if (!batch || now >= deadline)
			break;
		/* A signal for the caller itself (a worker) lands here too: EINTR is fine. */
		backoff_nap(&backoff);
		now = lmm_plat_now_ns();
	}
	free(signalled);
	/* free runs under no lock of ours: a final free must not re-enter its caller's locks. */
	while (done) {
		struct ctx_impl *next = done->reclaim_next;
		lmm__ctx_release(ctx_public(done));
		done = next;
	}
	return batch;
}

/* --- the reclaim engine's pass --- */

/*
 * The engine's pass (on its thread: a round with the dropper's bound; in
 * lmm_poll: one sweep, signal or resend, release who left). The contexts
 * still held go back to the engine, which passes again after its pause, or
 * at once when kicked (a new hand-off, lmm_barrier).
 */
static struct ctx_impl *sd_reclaim_pass(struct lmm_domain *d, struct ctx_impl *batch, bool poll)
{
	return batch ? shoot_round(d, batch, poll ? 0 : SD_WAIT_NS) : NULL;
}

static void sd_count_zero(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = ctx_impl(ctx);
	struct lmm_domain *d = c->domain;
	struct lmm_worker *self = lmm__self;
	bool self_stuck = false;

	/* The common exit path: the last user was the worker that holds it lazily. */
	if (self && self->domain == d &&
	    atomic_load_explicit(&self->active, memory_order_relaxed) == ctx) { /* Relaxed: own state. */
		/* Relaxed: own state. */
		bool lazy = !atomic_load_explicit(&self->current, memory_order_relaxed);
		if (!lazy && self->debug)
			lmm__die("lmm_drop", "last reference to context %p dropped while it is current",
				 (void *)ctx);
		/* Relaxed: own state; inside a switch (a switch_ctx hook dropped it) we cannot move. */
		if (lazy && atomic_load_explicit(&self->critical, memory_order_relaxed) == 0)
			shoot_self(self);
		else
			self_stuck = true;
	}

	if (!sweep(c, SWEEP_FILTER, NULL)) {
		lmm__ctx_release(ctx); /* nobody has it: no signal at all */
		return;
	}
	stat_add(d, ST_SHOOTDOWNS, 1);
	LMM_PROBE(shootdown, d, ctx);
	c->reclaim_next = NULL;
	/*
	 * lmm__reclaim_queue starts the engine's thread at the
	 * first hand-off, here, with no lock of ours held (cfg.thread_create is
	 * the runtime's hook, lazymm(7)); false if there is no thread (yet):
	 * a dropper that is not a holder keeps shooting and tries again. A
	 * dropper that finds another starting it does not wait for it.
	 *
	 * With LMM_F_DEFER_FREE the caller never waits: the reclaim thread
	 * (started with the domain) batches the rounds (c). Once queued, c and
	 * d may be gone: the probe passes the pointers' values only.
	 */
	if ((d->cfg.flags & LMM_F_DEFER_FREE) && lmm__reclaim_queue(d, c)) {
		LMM_PROBE(defer_handoff, d, ctx);
		return;
	}
	if (self_stuck) {
		/*
		 * Waiting on ourselves would never end: hand it over, or, if no
		 * thread can take it, park it with the engine (lmm_barrier runs
		 * its pass while there is no thread; the next hand-off tries to
		 * start one). Counted before: once queued, c may be freed and d
		 * destroyed.
		 */
		stat_add(d, ST_RECLAIM_HANDOFFS, 1);
		LMM_PROBE(reclaim_handoff, d, ctx);
		if (!lmm__reclaim_queue(d, c))
			lmm__reclaim_park(d, c);
		return;
	}
	c = shoot_round(d, c, SD_WAIT_NS);
	if (!c)
		return;
	stat_add(d, ST_RECLAIM_HANDOFFS, 1);
	LMM_PROBE(reclaim_handoff, d, ctx);
	/*
	 * Counted before, as above. No thread to hand it to: keep trying
	 * here rather than free early (we are not a holder: they move).
	 */
	while (!lmm__reclaim_queue(d, c) && (c = shoot_round(d, c, SD_WAIT_NS)))
		;
}

const struct lmm_scheme_ops lmm_scheme_shootdown = {
	.id = LMM_SCHEME_SHOOTDOWN,
	.uses_signals = true,
	.switched_away = sd_switched_away,
	.count_zero = sd_count_zero,
	.reclaim_pass = sd_reclaim_pass,
	.signal = sd_signal,
};

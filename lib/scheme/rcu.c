/* SPDX-License-Identifier: MIT */
/*
 * The rcu scheme: a lazy hold is part of the worker's RCU read-side section
 * (liburcu, QSBR flavour; docs/rcu.md has the measurements behind the
 * choice). Going lazy and coming back cost nothing shared: no reference, no
 * fence. When a context's count reaches 0 it is queued on the domain's
 * reclaim engine (lib/reclaim.h), whose thread frees whole batches after one
 * grace period (rcu_reclaim_pass).
 *
 * The rule every quiescent-state report obeys: at the moment of the report
 * the worker holds no *uncounted* lazy hold. A worker that runs a task holds
 * that task's reference; a worker that is lazy either reports nothing, or
 * first turns its lazy hold into a counted reference (one atomic, only on the
 * slow paths: idle, lmm_barrier, backpressure, a nudge), or leaves the
 * context if its count already reached 0. So a grace period that starts
 * after a count reached 0 cannot end before every worker left that context.
 *
 * Quiescent states are reported at the end of a lazy window (the lazy hit,
 * or the install that ends it) only while some grace period is waiting: the
 * reclaim thread raises a flag in every worker's hot block for that time, so
 * the fast path reads its own line and nothing else. Workers that never end a
 * lazy window (task-to-task switches, a long context-less task, a lazy sleep
 * without lmm_idle_enter) are nudged with the domain's signal after
 * cfg.rcu_nudge_ms (default 20 ms); the handler settles the lazy hold as
 * above and reports.
 *
 * QSBR state is process-wide, so every grace period waits for the workers of
 * every rcu domain: the flags and the nudges go to all of them.
 */
#include <stdlib.h>
#include <time.h>
#include <urcu/urcu-qsbr.h>

#include "rcu.h"

/*
 * The worker's words are struct lmm_inline_rcu (lazymm.h's inline layout)
 * and struct rcu_cold, the context's struct rcu_ctx (rcu_state.h).
 * hot.rcu.state holds RS_COUNTED (the lazy hold is a counted reference,
 * rcu.h) and:
 */
#define RS_ONLINE 0x2u     /* registered with QSBR and online (not idle) */
#define RS_REGISTERED 0x4u /* we registered this thread with QSBR */
#define RS_PARKED 0x8u     /* offline for lmm_barrier or backpressure, not idle */
#define LEAVE_WAIT_NS (100ull * 1000000) /* users_zero's bounded wait for sleepers to leave */


struct rcu_domain {
	struct lmm_domain *d;
	struct rcu_domain *next; /* all_domains */
	unsigned long long nudge_ns;
	unsigned long backlog_limit;

	pthread_mutex_t lock;    /* backpressure's: the reclaim pass broadcasts progress under it */
	pthread_cond_t progress; /* droppers held back by backpressure */

	atomic_ulong backlog; /* queued + in the running grace period */
	atomic_ulong backlog_max;
};

/* Every rcu domain, for the grace-period flags and the nudges. */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcu_domain *all_domains;
static unsigned gp_waiting; /* grace periods in progress, under all_lock */

/* The reclaim engine's thread of an rcu domain (set by its first pass): it never waits for itself. */
static __thread bool is_reclaimer;
/* rcu_signal runs (maybe in the handler): drops become leave_torn's atomic decrement. */
static __thread bool in_signal;
/*
 * rcu_used: this process may have touched liburcu-qsbr (set, under all_lock,
 * by rcu_domain_init, before lmm_domain_create starts the domain's reclaim
 * thread; never cleared).
 * forked_after_rcu: a child of such a process, whose liburcu-qsbr registry
 * lists ghosts or was copied locked (fork).
 */
static bool rcu_used, forked_after_rcu;

/* Own state: relaxed loads and stores, ordered against the handler by critical. */
static inline uintptr_t rs_get(struct lmm_worker *w)
{
	return atomic_load_explicit(&w->hot.rcu.state, memory_order_relaxed);
}

static inline void rs_set(struct lmm_worker *w, uintptr_t v)
{
	atomic_store_explicit(&w->hot.rcu.state, v, memory_order_relaxed);
}

/* --- settling the lazy hold before any quiescent state --- */

/*
 * Make the current state one in which a quiescent state may be reported.
 * Inside a critical section, or in the signal hook (which runs as one).
 * Never drops a reference, so it never reaches count_zero: safe in a handler.
 */
static void settle_lazy_hold(struct lmm_worker *w)
{
	/* Relaxed: own state. */
	struct lmm_ctx *active = atomic_load_explicit(&w->active, memory_order_relaxed);
	if (atomic_load_explicit(&w->current, memory_order_relaxed) || ctx_is_init(active) ||
	    (rs_get(w) & RS_COUNTED))
		return;
	/* Relaxed: success means the count cannot reach 0 before our drop;
	 * the quiescent state that follows carries the fences (litmus:
	 * rcu-settle-qs, rcu-offline-settle). */
	if (!atomic_long_inc_not_zero(&ctx_impl(active)->count)) {
		/* Its count reached 0: it is dying and waits for us. Leave it first. */
		lmm__unlazy(w);
		return;
	}
	rs_set(w, rs_get(w) | RS_COUNTED);
	/*
	 * Store->load: RS_COUNTED above before the users load below. Pairs
	 * with the fence in rcu_users_zero, after the last user's decrement
	 * and before its scan of RS_COUNTED: either it sees our counted hold
	 * and makes us leave, or we see the users gone and leave now. A
	 * counted hold on a context with no users would keep it from being
	 * freed for as long as we sleep (litmus: rcu-leave-torn).
	 */
	atomic_thread_fence(memory_order_seq_cst);
	/* Relaxed: the fence pair above is the ordering. */
	if (atomic_load_explicit(&ctx_impl(active)->users, memory_order_relaxed) <= 0)
		lmm__unlazy(w);
}

/* The final drop of a context the handler left (cold.rcu.orphan), in a thread context. */
static void drain_orphan(struct lmm_worker *w)
{
	/* Acquire: pairs with leave_torn's release store, the hold's last use first (litmus: rcu-orphan). */
	struct lmm_ctx *orphan = atomic_exchange_explicit(&w->cold.rcu.orphan, NULL, memory_order_acquire);
	if (orphan)
		lmm__count_zero(ctx_impl(orphan));
}

/*
 * A time stamp, not a round number: grace periods span every rcu domain
 * of the process, and each domain nudges on its own clock, so a report is
 * recent or not by time: a worker that reported within the nudging
 * domain's delay is left alone whoever nudges. A round runs at least
 * nudge_ns after its grace period began (wait_grace_period), so a report
 * that recent came after the beginning.
 */
static inline uintptr_t now_us(void)
{
	/* Truncated on 32-bit: compared modulo 2^32 us (71 min), delays are at most 100 s. */
	uintptr_t t = (uintptr_t)(lmm_plat_now_ns() / 1000);
	return t ? t : 1;
}

/* Report a quiescent state if the thread is an online reader. */
static inline void report_qs(struct lmm_worker *w)
{
	if (!(rs_get(w) & RS_ONLINE))
		return;
	urcu_qsbr_quiescent_state();
	/*
	 * Relaxed: a hint for nudge_worker. A stale stamp there costs one
	 * needless nudge, or delays one by a round; liburcu orders the report.
	 * clock_gettime is async-signal-safe (the nudge handler reports too).
	 */
	atomic_store_explicit(&w->cold.rcu.reported, now_us(), memory_order_relaxed);
}

/*
 * An online reader settles its lazy hold, then reports: never the other way
 * round (litmus: rcu-settle-qs). In critical (or the signal hook).
 */
static void settle_and_report(struct lmm_worker *w)
{
	if (!(rs_get(w) & RS_ONLINE))
		return;
	settle_lazy_hold(w);
	report_qs(w);
}

/* Go RCU-offline with the hold settled
 * (litmus: rcu-offline-settle); returns whether we did. In critical. */
static bool go_offline(struct lmm_worker *w, uintptr_t mark)
{
	if (!(rs_get(w) & RS_ONLINE))
		return false;
	settle_lazy_hold(w);
	rs_set(w, (rs_get(w) & ~(uintptr_t)RS_ONLINE) | mark);
	urcu_qsbr_thread_offline();
	return true;
}

static void go_online(struct lmm_worker *w, uintptr_t mark)
{
	urcu_qsbr_thread_online();
	rs_set(w, (rs_get(w) & ~mark) | RS_ONLINE);
}

static inline bool is_rcu_worker(struct lmm_worker *w)
{
	return w && w->scheme == &lmm_scheme_rcu;
}

/* --- the switch hooks (lmm_switch's slow path: inside its critical section) --- */

/*
 * Entering lazy mode needs no hook: the lazy hold is the read-side section
 * itself. The lazy hit (rcu_lazy_resume, rcu.h) comes here only when
 * the hold was counted or a grace period waits; it runs outside lmm_switch's
 * critical section, so take one: report_qs must not nest in the handler's.
 */
void lmm__rcu_resume_slow(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	critical_enter(w);
	uintptr_t rs = rs_get(w);
	if (rs & RS_COUNTED) { /* one of the two reasons we are here */
		rs_set(w, rs & ~(uintptr_t)RS_COUNTED);
		/* The task now current holds its own reference: never the last.
		 * Relaxed, as in the refcount scheme's lazy hit. */
		atomic_fetch_sub_explicit(&ctx_impl(ctx)->count, 1, memory_order_relaxed);
	}
	/* Relaxed: a hint; liburcu's own protocol orders the report (litmus: rcu-qs-flag). */
	if (atomic_load_explicit(&w->hot.rcu.gp_waiting, memory_order_relaxed))
		report_qs(w);
	critical_exit(w);
}

/*
 * Give back a counted hold from the handler: an atomic decrement only. If
 * it was the last reference, the final drop (locks, maybe a wait) is left
 * to a thread context through cold.rcu.orphan.
 */
static void leave_torn(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	/*
	 * Acq_rel, as lmm_drop's decrement plus its acquire load: switch_ctx's
	 * last use of ctx comes first, and whoever runs the final drop sees
	 * every earlier drop (litmus: rcu-orphan).
	 */
	if (atomic_fetch_sub_explicit(&ctx_impl(ctx)->count, 1, memory_order_acq_rel) != 1)
		return;
	/* Release: pairs with drain_orphan's acquire exchange (litmus: rcu-orphan). */
	atomic_store_explicit(&w->cold.rcu.orphan, ctx, memory_order_release);
	/* The reclaim pass drains it (drain_orphans); the kick is async-signal-safe. */
	lmm__reclaim_kick(w->domain);
}

static void rcu_lazy_release(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	uintptr_t rs = rs_get(w);
	if (rs & RS_COUNTED) {
		rs_set(w, rs & ~(uintptr_t)RS_COUNTED);
		if (in_signal)
			leave_torn(w, ctx);
		else
			/* Release (inside lmm_drop): switch_ctx's last use of ctx comes first
			 * (litmus: ctx-last-put). */
			lmm_drop(ctx);
	}
}

/* After every install the worker holds no uncounted lazy context: a report is valid. */
static void rcu_installed(struct lmm_worker *w)
{
	if (!in_signal)
		drain_orphan(w);
	/* Relaxed: a hint, as in rcu_lazy_resume (litmus: rcu-qs-flag). */
	if (unlikely(atomic_load_explicit(&w->hot.rcu.gp_waiting, memory_order_relaxed)))
		report_qs(w);
}

/* The nudge: in the handler (critical was 0) or at the end of a switch. */
static void rcu_signal(struct lmm_worker *w)
{
	in_signal = true;
	/* Relaxed: own state (inside the critical section). */
	struct lmm_ctx *active = atomic_load_explicit(&w->active, memory_order_relaxed);
	/*
	 * A counted lazy hold on a context whose users are gone (rcu_users_zero
	 * signalled us, idle or not): leave it, so that it can be freed while
	 * we sleep. Relaxed users load: the counted hold keeps ctx alive, and
	 * the fence pair in settle_lazy_hold / rcu_users_zero is the ordering.
	 */
	if ((rs_get(w) & RS_COUNTED) && !atomic_load_explicit(&w->current, memory_order_relaxed) &&
	    atomic_load_explicit(&ctx_impl(active)->users, memory_order_relaxed) <= 0)
		lmm__unlazy(w);
	settle_and_report(w);
	in_signal = false;
}

/* lmm_quiescent: the runtime reports for w from its own loop. */
static void rcu_quiescent(struct lmm_worker *w)
{
	critical_enter(w);
	settle_and_report(w);
	critical_exit(w);
}

/* --- the last user: workers asleep on a counted lazy hold must leave --- */

struct leave_round {
	struct lmm_ctx *ctx;
	struct lmm_worker *self;
	unsigned waiting;
};

static bool holds_counted(struct lmm_worker *w, struct lmm_ctx *ctx)
{
	/*
	 * Acquire: pairs with the release store of active after switch_ctx (a
	 * worker seen elsewhere is done with ctx; litmus: install-active).
	 * Relaxed state: ordered by the fence in rcu_users_zero against
	 * settle_lazy_hold's.
	 */
	return atomic_load_explicit(&w->active, memory_order_acquire) == ctx &&
	       (atomic_load_explicit(&w->hot.rcu.state, memory_order_relaxed) & RS_COUNTED);
}

static void leave_signal(struct lmm_worker *w, void *arg)
{
	struct leave_round *r = arg;
	/* Counted in signals_sent only: not a nudge (no grace period waits for w). */
	if (w != r->self && holds_counted(w, r->ctx) && lmm__signal_worker(w))
		r->waiting++;
}

static void leave_poll(struct lmm_worker *w, void *arg)
{
	struct leave_round *r = arg;
	if (w != r->self && holds_counted(w, r->ctx))
		r->waiting++;
	else
		drain_orphan(w); /* its handler may have left the last reference */
}

/*
 * Users reached 0; the users' count reference is still ours, so no handler
 * that leaves ctx meanwhile takes its count to 0. Workers asleep on a
 * counted lazy hold (lmm_idle_enter, or a nudge) would keep ctx until they
 * wake: signal them and wait, bounded, until they left (rcu_signal). A
 * worker that blocks the signal keeps ctx until it runs again.
 */
static void rcu_users_zero(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = ctx_impl(ctx);
	struct leave_round r = { .ctx = ctx, .self = lmm__self };

	/* Store->load: pairs with settle_lazy_hold's fence (litmus: rcu-leave-torn). */
	atomic_thread_fence(memory_order_seq_cst);
	struct lmm_worker *self = r.self;
	/* Relaxed: own state. A hook inside the switch path cannot move us. */
	if (self && self->domain == c->domain && holds_counted(self, ctx) &&
	    !atomic_load_explicit(&self->current, memory_order_relaxed) &&
	    atomic_load_explicit(&self->critical, memory_order_relaxed) == 0)
		lmm__unlazy(self);
	lmm__mask_for_each(c, leave_signal, &r);
	unsigned long long deadline = deadline_after(LEAVE_WAIT_NS);
	for (struct backoff backoff = BACKOFF_INIT; r.waiting && lmm_plat_now_ns() < deadline;) {
		backoff_nap(&backoff);
		r.waiting = 0;
		lmm__mask_for_each(c, leave_poll, &r);
	}
}

/* --- grace-period flags and nudges, over every rcu domain --- */

static void for_each_rcu_worker(void (*fn)(struct lmm_worker *w, void *arg), void *arg)
{
	for (struct rcu_domain *rd = all_domains; rd; rd = rd->next)
		lmm__for_each_worker(rd->d, fn, arg);
}

static void set_want(struct lmm_worker *w, void *arg)
{
	/* Relaxed: a hint; a worker that sees it late is nudged (litmus: rcu-qs-flag). */
	atomic_store_explicit(&w->hot.rcu.gp_waiting, (uintptr_t)arg, memory_order_relaxed);
}

static void want_qs(bool begin)
{
	pthread_mutex_lock(&all_lock);
	if (begin ? gp_waiting++ == 0 : --gp_waiting == 0)
		for_each_rcu_worker(set_want, (void *)(uintptr_t)begin);
	pthread_mutex_unlock(&all_lock);
}

struct nudge_round {
	struct rcu_domain *rd;
	uint64_t sent;
};

static void nudge_worker(struct lmm_worker *w, void *arg)
{
	struct nudge_round *n = arg;
	/* Relaxed: hints; a worker that went offline since needs no nudge, one
	 * that came online is covered by the next round. */
	if (!atomic_load_explicit(&w->online, memory_order_relaxed) || !(rs_get(w) & RS_ONLINE))
		return;
	/*
	 * Relaxed: a hint (report_qs). It reported within our nudge delay:
	 * leave it be. The clock read after the stamp: a report racing with
	 * this round is never in the future.
	 */
	uintptr_t reported = atomic_load_explicit(&w->cold.rcu.reported, memory_order_relaxed);
	if (reported && now_us() - reported < (uintptr_t)(n->rd->nudge_ns / 1000))
		return;
	if (lmm__signal_worker(w))
		n->sent++;
}

static void nudge_all(struct rcu_domain *rd)
{
	struct nudge_round n = { .rd = rd };
	pthread_mutex_lock(&all_lock);
	for_each_rcu_worker(nudge_worker, &n);
	pthread_mutex_unlock(&all_lock);
	stat_add(rd->d, ST_RCU_NUDGES, n.sent);
	LMM_PROBE(rcu_nudge, rd->d, (unsigned long)n.sent);
}

/* --- the reclaim pass --- */

/* One grace period in flight: its call_rcu callback wakes the waiter. */
struct gp_waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	/*
	 * Set with release once the waiter is initialised, read with acquire
	 * by the callback. liburcu's call_rcu queue already orders the two, but
	 * liburcu is not built with TSan, so TSan cannot see that; this pair
	 * says the same thing in atomics it can see (costs nothing here).
	 */
	atomic_bool armed;
	struct rcu_head head;
};

static void gp_ended(struct rcu_head *head)
{
	struct gp_waiter *g = (struct gp_waiter *)(void *)((char *)head - offsetof(struct gp_waiter, head));
	/* Acquire: pairs with the release in wait_grace_period (see armed; litmus: rcu-armed). */
	if (!atomic_load_explicit(&g->armed, memory_order_acquire))
		lmm__die("rcu", "grace-period callback ran before its waiter was armed");
	pthread_mutex_lock(&g->lock);
	g->done = true;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/*
 * Wait for one grace period, nudging every nudge_ns while it lasts. Runs on
 * the reclaim thread, never on a worker, so waiting cannot stall the grace
 * period itself.
 */
static void wait_grace_period(struct rcu_domain *rd)
{
	struct gp_waiter g = { .done = false };
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ||
	    pthread_mutex_init(&g.lock, NULL) || pthread_cond_init(&g.cond, &ca))
		lmm__die("rcu", "cannot initialise a grace-period waiter");
	pthread_condattr_destroy(&ca);

	LMM_PROBE(grace_period_begin, rd->d);
	want_qs(true);
	/*
	 * call_rcu wants a registered, online caller: the reclaim thread is
	 * one for the call alone (the engine's thread is the core's, which
	 * knows nothing of liburcu: registered only here, it never exits
	 * registered).
	 */
	urcu_qsbr_register_thread();
	/* Release: pairs with gp_ended's acquire (see armed; litmus: rcu-armed). */
	atomic_store_explicit(&g.armed, true, memory_order_release);
	urcu_qsbr_call_rcu(&g.head, gp_ended);
	urcu_qsbr_unregister_thread();

	bool stalled = false;
	pthread_mutex_lock(&g.lock);
	struct timespec deadline = lmm_plat_deadline_ts(rd->nudge_ns);
	while (!g.done) {
		if (pthread_cond_timedwait(&g.cond, &g.lock, &deadline) != ETIMEDOUT)
			continue;
		pthread_mutex_unlock(&g.lock);
		if (!stalled) {
			stat_add(rd->d, ST_RCU_STALLS, 1);
			LMM_PROBE(rcu_stall, rd->d, (unsigned long)(rd->nudge_ns / 1000));
		}
		stalled = true;
		nudge_all(rd);
		pthread_mutex_lock(&g.lock);
		deadline = lmm_plat_deadline_ts(rd->nudge_ns);
	}
	/* The callback signalled under the lock: once we hold it, it is done with g. */
	pthread_mutex_unlock(&g.lock);
	pthread_cond_destroy(&g.cond);
	pthread_mutex_destroy(&g.lock);
	want_qs(false);
	stat_add(rd->d, ST_GRACE_PERIODS, 1);
	LMM_PROBE(grace_period_end, rd->d, stalled);
}

static void drain_orphan_of(struct lmm_worker *w, void *arg)
{
	(void)arg;
	drain_orphan(w);
}

/* Every orphan of the domain's workers (leave_torn posted the wake). */
static void drain_orphans(struct rcu_domain *rd)
{
	/* Acquire inside (lmm__for_each_worker; litmus: worker-publish). */
	lmm__for_each_worker(rd->d, drain_orphan_of, NULL);
}

/*
 * The reclaim engine's pass, on its thread (rcu has no LMM_F_NO_THREADS):
 * the orphans the handlers left, then everything queued so far shares the
 * next grace period, after which the batch is released (freed, or queued
 * as deferred frees) without any lock of ours.
 */
static struct ctx_impl *rcu_reclaim_pass(struct lmm_domain *d, struct ctx_impl *batch, bool poll)
{
	struct rcu_domain *rd = d->scheme_state.rcu;

	(void)poll;
	is_reclaimer = true;
	drain_orphans(rd);
	if (!batch)
		return NULL;
	wait_grace_period(rd);
	unsigned long n = 0;
	for (struct ctx_impl *c = batch; c; c = c->reclaim_next)
		n++;
	/* Relaxed: a gauge; the lock below orders it for backpressure. */
	atomic_fetch_sub_explicit(&rd->backlog, n, memory_order_relaxed);
	pthread_mutex_lock(&rd->lock);
	pthread_cond_broadcast(&rd->progress);
	pthread_mutex_unlock(&rd->lock);
	for (struct ctx_impl *c = batch, *next; c; c = next) {
		next = c->reclaim_next;
		lmm__ctx_release(ctx_public(c));
	}
	return NULL;
}

/* --- count zero, backpressure, barrier --- */

/* Whether the calling thread may wait for the reclaim pass here. */
static bool may_block(void)
{
	if (is_reclaimer || lmm__freeing)
		return false;
	struct lmm_worker *w = lmm__self;
	/* Relaxed: own state. Inside the switch path we never block. */
	return !(w && w->uses_signals && atomic_load_explicit(&w->critical, memory_order_relaxed));
}

static void backpressure(struct rcu_domain *rd)
{
	/* Relaxed: a gauge; the decision is re-taken under the lock. */
	if (likely(atomic_load_explicit(&rd->backlog, memory_order_relaxed) < rd->backlog_limit) ||
	    !may_block())
		return;
	struct lmm_worker *w = lmm__self;
	bool parked = false;
	if (is_rcu_worker(w)) {
		critical_enter(w);
		parked = go_offline(w, RS_PARKED);
		critical_exit(w);
	}
	/* Bounded by timeout_ms: with grace periods stalled, the backlog overshoots instead. */
	struct timespec deadline = lmm_plat_deadline_ts(rd->d->barrier_timeout_ms * 1000000ull);
	pthread_mutex_lock(&rd->lock);
	while (atomic_load_explicit(&rd->backlog, memory_order_relaxed) >= rd->backlog_limit)
		if (pthread_cond_timedwait(&rd->progress, &rd->lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&rd->lock);
	if (parked) {
		critical_enter(w);
		go_online(w, RS_PARKED);
		critical_exit(w);
	}
}

static void rcu_count_zero(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = ctx_impl(ctx);
	struct rcu_domain *rd = c->domain->scheme_state.rcu;

	backpressure(rd);
	/*
	 * Relaxed: gauges for lmm_stats and backpressure; counted before the
	 * queue (whose lock orders it for the pass), so the pass's decrement
	 * never passes it. backlog_max under rd->lock: one writer at a time.
	 */
	pthread_mutex_lock(&rd->lock);
	unsigned long n = atomic_fetch_add_explicit(&rd->backlog, 1, memory_order_relaxed) + 1;
	if (n > atomic_load_explicit(&rd->backlog_max, memory_order_relaxed))
		atomic_store_explicit(&rd->backlog_max, n, memory_order_relaxed);
	pthread_mutex_unlock(&rd->lock);
	/* The thread exists from lmm_domain_create on (reclaim_at_create): never refused. */
	if (!lmm__reclaim_queue(c->domain, c))
		lmm__die("lmm_drop", "rcu domain without its reclaim thread");
}

/* lmm_barrier may be called by a worker (of any rcu domain): park it meanwhile. */
static void rcu_barrier_wait(struct lmm_domain *d, bool begin)
{
	(void)d;
	struct lmm_worker *w = lmm__self;
	if (!is_rcu_worker(w))
		return;
	critical_enter(w);
	if (begin)
		go_offline(w, RS_PARKED);
	else if (rs_get(w) & RS_PARKED)
		go_online(w, RS_PARKED);
	critical_exit(w);
}

/* --- idle, online, offline --- */

static void rcu_idle_enter(struct lmm_worker *w)
{
	critical_enter(w);
	go_offline(w, 0);
	critical_exit(w);
}

static void rcu_idle_exit(struct lmm_worker *w)
{
	drain_orphan(w);
	critical_enter(w);
	if ((rs_get(w) & (RS_REGISTERED | RS_ONLINE)) == RS_REGISTERED)
		go_online(w, 0);
	/*
	 * A counted lazy hold that is the context's last reference (users gone
	 * while we slept) would keep it alive until our next switch: leave it
	 * now. Relaxed: count == 1 with our reference in it cannot change under
	 * us, nobody can take a new reference without holding one.
	 */
	if ((rs_get(w) & RS_COUNTED) &&
	    atomic_load_explicit(&ctx_impl(atomic_load_explicit(&w->active, memory_order_relaxed))->count,
				 memory_order_relaxed) == 1)
		lmm__unlazy(w);
	critical_exit(w);
}

static void rcu_worker_reuse(struct lmm_worker *w)
{
	/*
	 * Relaxed: a reused slot stays published, so other threads may read
	 * these words now (hints); they read what an offline worker leaves
	 * and find nothing to act on. rcu_worker_online sets them.
	 */
	atomic_store_explicit(&w->hot.rcu.state, 0, memory_order_relaxed);
	atomic_store_explicit(&w->hot.rcu.gp_waiting, 0, memory_order_relaxed);
}

static int rcu_worker_online(struct lmm_worker *w)
{
	/* The thread is already an online QSBR reader of the application's:
	 * its quiescent states would be ours and ours its (docs/rcu.md). */
	if (urcu_qsbr_read_ongoing())
		return -EBUSY;
	critical_enter(w);
	rs_set(w, 0);
	urcu_qsbr_register_thread();
	rs_set(w, RS_REGISTERED | RS_ONLINE);
	critical_exit(w);
	pthread_mutex_lock(&all_lock);
	/* Relaxed: a hint (see set_want); the core cleared it for a reused slot. */
	atomic_store_explicit(&w->hot.rcu.gp_waiting, gp_waiting != 0, memory_order_relaxed);
	pthread_mutex_unlock(&all_lock);
	return 0;
}

static void rcu_worker_offline(struct lmm_worker *w)
{
	drain_orphan(w);
	critical_enter(w);
	/* The core already ended the lazy hold: nothing counted is left. */
	if (rs_get(w) & RS_REGISTERED) {
		rs_set(w, 0);
		/* Goes offline first if needed (idle, parked). */
		urcu_qsbr_unregister_thread();
	}
	critical_exit(w);
}

/* --- domains --- */

static int rcu_domain_init(struct lmm_domain *d)
{
	/*
	 * A child of a process that had an rcu domain: liburcu-qsbr's registry
	 * still lists the parent's reader threads, online, which the child
	 * does not have, and liburcu's call_rcu thread is gone too. No grace
	 * period could ever end here.
	 */
	if (forked_after_rcu)
		return -ENOTRECOVERABLE;
	/* Grace periods end on liburcu's call_rcu thread: there is no thread-less rcu. */
	if (d->cfg.flags & LMM_F_NO_THREADS)
		return -EINVAL;
	struct rcu_domain *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->d = d;
	rd->nudge_ns = d->rcu_nudge_ms * 1000000ull;
	rd->backlog_limit = d->rcu_backlog_max;

	int ret = -ENOMEM;
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca))
		goto err_free;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_mutex_init(&rd->lock, NULL))
		goto err_attr;
	if (pthread_cond_init(&rd->progress, &ca))
		goto err_lock;
	pthread_condattr_destroy(&ca);
	/*
	 * Before the reclaim thread exists (lmm_domain_create starts it after
	 * this, reclaim_at_create): its grace periods register it with
	 * liburcu-qsbr and start liburcu's call_rcu thread, and a fork from
	 * then on may copy liburcu's registry locked or listing it (rcu_atfork
	 * refuses rcu to such a child). Under all_lock, which the fork's
	 * prepare takes. Not undone if the thread cannot be started: another
	 * domain may have set it meanwhile; a child refused for nothing is
	 * safe.
	 */
	pthread_mutex_lock(&all_lock);
	rcu_used = true;
	rd->next = all_domains;
	all_domains = rd;
	pthread_mutex_unlock(&all_lock);
	d->scheme_state.rcu = rd;
	return 0;

err_lock:
	pthread_mutex_destroy(&rd->lock);
err_attr:
	pthread_condattr_destroy(&ca);
err_free:
	free(rd);
	return ret;
}

static void rcu_domain_fini(struct lmm_domain *d)
{
	struct rcu_domain *rd = d->scheme_state.rcu;

	pthread_mutex_lock(&all_lock);
	for (struct rcu_domain **p = &all_domains; *p; p = &(*p)->next) {
		if (*p == rd) {
			*p = rd->next;
			break;
		}
	}
	pthread_mutex_unlock(&all_lock);
	/* The reclaim thread is gone already (lmm__reclaim_fini runs first). */
	pthread_cond_destroy(&rd->progress);
	pthread_mutex_destroy(&rd->lock);
	free(rd);
	d->scheme_state.rcu = NULL;
}

static void rcu_stats(struct lmm_domain *d, struct lmm_stats *out)
{
	struct rcu_domain *rd = d->scheme_state.rcu;
	/* Relaxed: gauges. */
	out->rcu_backlog = atomic_load_explicit(&rd->backlog, memory_order_relaxed);
	out->rcu_backlog_max = atomic_load_explicit(&rd->backlog_max, memory_order_relaxed);
}

static void rcu_atfork(int phase)
{
	if (phase == LMM_FORK_PREPARE) {
		pthread_mutex_lock(&all_lock);
		return;
	}
	if (phase == LMM_FORK_CHILD) {
		forked_after_rcu = forked_after_rcu || rcu_used;
		all_domains = NULL; /* the parent's: none is usable here */
		is_reclaimer = false;
		in_signal = false;
	}
	pthread_mutex_unlock(&all_lock);
}

const struct lmm_scheme_ops lmm_scheme_rcu = {
	.id = LMM_SCHEME_RCU,
	.uses_signals = true,
	.domain_init = rcu_domain_init,
	.domain_fini = rcu_domain_fini,
	.worker_reuse = rcu_worker_reuse,
	.worker_online = rcu_worker_online,
	.worker_offline = rcu_worker_offline,
	.lazy_release = rcu_lazy_release,
	.users_zero = rcu_users_zero,
	.installed = rcu_installed,
	.count_zero = rcu_count_zero,
	.reclaim_pass = rcu_reclaim_pass,
	.reclaim_at_create = true,
	.barrier_wait = rcu_barrier_wait,
	.idle_enter = rcu_idle_enter,
	.idle_exit = rcu_idle_exit,
	.signal = rcu_signal,
	.stats = rcu_stats,
	.quiescent = rcu_quiescent,
	.atfork = rcu_atfork,
};

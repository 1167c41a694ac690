/* SPDX-License-Identifier: MIT */
/* Domains: creation, the scheme table, the free path, lmm_barrier, lmm_poll, lmm_stats. */

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "internal.h"

/* The built schemes, from meson.build's list (LMM_SCHEME_LIST; docs/design.md, "Adding a scheme"). */
static const struct lmm_scheme_ops *const schemes[] = {
#define SCHEME_OPS(name, NAME) [LMM_SCHEME_##NAME] = &lmm_scheme_##name,
	LMM_SCHEME_LIST(SCHEME_OPS)
#undef SCHEME_OPS
};

/* Every scheme's name, built or not (LMM_SCHEME_ALL): lmm_scheme_name answers for all of enum lmm_scheme. */
static const char *const scheme_names[] = {
#define SCHEME_NAME(name, NAME) [LMM_SCHEME_##NAME] = #name,
	LMM_SCHEME_ALL(SCHEME_NAME)
#undef SCHEME_NAME
};

#define NSCHEMES (sizeof(scheme_names) / sizeof(scheme_names[0]))

const char *lmm_scheme_name(enum lmm_scheme s)
{
	if ((unsigned)s >= NSCHEMES)
		return NULL;
	return scheme_names[s];
}

int lmm_scheme_parse(const char *name, enum lmm_scheme *out)
{
	if (!name || !out)
		return -EINVAL;
	for (unsigned i = 0; i < NSCHEMES; i++) {
		if (scheme_names[i] && strcmp(scheme_names[i], name) == 0) {
			*out = (enum lmm_scheme)i;
			return 0;
		}
	}
	return -EINVAL;
}

static const struct lmm_scheme_ops *scheme_ops(enum lmm_scheme s)
{
	if ((unsigned)s >= sizeof(schemes) / sizeof(schemes[0]))
		return NULL;
	return schemes[s];
}

bool lmm_scheme_available(enum lmm_scheme s)
{
	return scheme_ops(s) != NULL;
}

int lmm_default_signo(void)
{
	return lmm_plat_default_signo();
}

void lmm__die(const char *call, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "lazymm: %s: ", call);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* --- LMM_F_NO_THREADS --- */

int lmm_poll(struct lmm_domain *d)
{
	if (!d || !(d->cfg.flags & LMM_F_NO_THREADS))
		return -EINVAL;
	if (lmm__freeing)
		return -EDEADLK;
	int cancel = cancel_off();
	bool left = lmm__reclaim_poll(d); /* the reclaim thread's pass, on the caller's thread */
	cancel_restore(cancel);
	return left ? -EAGAIN : 0;
}

/* --- the free path --- */

struct debug_scan {
	struct lmm_ctx *ctx;
};

static void debug_check_worker(struct lmm_worker *w, void *arg)
{
	struct debug_scan *s = arg;
	/*
	 * Acquire pairs with the release store of active in the switch path:
	 * a worker that switched away before the scheme let this free through
	 * shows its new context here (litmus: install-active).
	 */
	if (atomic_load_explicit(&w->active, memory_order_acquire) != s->ctx)
		return;
	/*
	 * A worker may be between its last touch of the context and the store
	 * of its new active (shootdown's self-clear). That takes instructions,
	 * not milliseconds: give it 50 ms before calling it a violation.
	 */
	unsigned long long deadline = deadline_after(50000000ull);
	/* Acquire: as above. */
	while (atomic_load_explicit(&w->active, memory_order_acquire) == s->ctx) {
		if (lmm_plat_now_ns() > deadline)
			lmm__die("free", "context %p is still installed on worker %u (LMM_F_DEBUG)",
				 (void *)s->ctx, w->id);
		lmm_plat_sleep_ns(100000);
	}
}

static void debug_check_free(struct lmm_domain *d, struct ctx_impl *c)
{
	struct debug_scan s = { .ctx = ctx_public(c) };
	/* Every worker, not only the mask: the mask itself is under test. */
	lmm__for_each_worker(d, debug_check_worker, &s);
}

void lmm__run_free(struct ctx_impl *c)
{
	struct lmm_domain *d = c->domain;
	struct freeing self = { .domain = d, .free_epoch = c->free_epoch, .parent = lmm__freeing };

	atomic_store_explicit(&c->state, CTX_FREED, memory_order_relaxed);
	c->magic = 0; /* a later lmm_* call on it aborts instead of corrupting */
	free(c->worker_mask);
	lmm__freeing = &self;
	d->ops.free(ctx_public(c)); /* from here on c is the application's: never read it again */
	lmm__freeing = self.parent;
	stat_add(d, ST_FREES, 1);
	/* Release pairs with lmm_domain_destroy's acquire. Before the bucket, so that
	 * a barrier that saw the bucket drain also sees the context gone (litmus:
	 * run-free-order). */
	atomic_fetch_sub_explicit(&d->contexts_live, 1, memory_order_release);
	/* Release pairs with lmm_barrier's and lmm_domain_destroy's acquire: the
	 * free's effects are done (litmus: run-free-order). Our last access to d. */
	atomic_fetch_sub_explicit(&d->free_inflight[self.free_epoch & 1], 1, memory_order_release);
}

/* A scheme says: no worker can have ctx installed any more. */
void lmm__ctx_release(struct lmm_ctx *ctx)
{
	struct ctx_impl *c = ctx_impl(ctx);
	struct lmm_domain *d = c->domain;

	if (d->cfg.flags & LMM_F_DEBUG)
		debug_check_free(d, c);
	if (d->cfg.flags & LMM_F_DEFER_FREE)
		lmm__reclaim_free(d, c);
	else
		lmm__run_free(c);
}

/*
 * Called by lmm_drop when the count reached 0: register the free as in
 * flight for lmm_barrier, then let the scheme decide when it is safe.
 */
void lmm__count_zero(struct ctx_impl *c)
{
	struct lmm_domain *d = c->domain;
	unsigned long e;

	/*
	 * Dropped by a free of the same domain: that free is registered and a
	 * barrier waiting for it must wait for this one too, even if it flipped
	 * the epoch meanwhile. Join the parent's bucket; it cannot drain before
	 * the parent's free returns, which is after this registration.
	 */
	if (lmm__freeing && lmm__freeing->domain == d) {
		e = lmm__freeing->free_epoch;
		/* Relaxed: the parent's registration keeps the bucket non-zero; lmm__run_free releases. */
		atomic_fetch_add_explicit(&d->free_inflight[e & 1], 1, memory_order_relaxed);
		goto registered;
	}
	for (;;) {
		/* Seq_cst with the re-check below and the flip in lmm_barrier: either
		 * the barrier sees our registration, or we see its new epoch (litmus:
		 * barrier-epoch). */
		e = atomic_load(&d->free_epoch);
		atomic_fetch_add(&d->free_inflight[e & 1], 1);
		if (atomic_load(&d->free_epoch) == e)
			break;
		atomic_fetch_sub(&d->free_inflight[e & 1], 1);
	}
registered:
	c->free_epoch = (unsigned char)(e & 1);
	atomic_store_explicit(&c->state, CTX_DYING, memory_order_relaxed);
	int cancel = cancel_off(); /* the scheme may wait, and must not stop half-way (cancel_off) */
	d->scheme->count_zero(ctx_public(c));
	cancel_restore(cancel);
}

/* Wait until free_inflight[bucket] is 0; -ETIMEDOUT past the deadline. */
static int barrier_drain(struct lmm_domain *d, unsigned bucket, unsigned long long deadline)
{
	struct backoff backoff = BACKOFF_INIT;
	/*
	 * Seq_cst: after the flip, pairs with the registration in
	 * lmm__count_zero (litmus: barrier-epoch). An acquire load is outside
	 * the seq_cst order and may miss a registration whose re-check saw the
	 * old epoch (RC11; aarch64's LDAPR). Its acquire half pairs with
	 * lmm__run_free's release: the frees' effects are visible (litmus:
	 * run-free-order).
	 */
	while (atomic_load(&d->free_inflight[bucket]) != 0) {
		if (lmm_plat_now_ns() > deadline)
			return -ETIMEDOUT;
		lmm__reclaim_help(d); /* frees may run here, when no thread does them */
		backoff_nap(&backoff);
	}
	return 0;
}

int lmm_barrier(struct lmm_domain *d)
{
	if (!d)
		return -EINVAL;
	if (lmm__freeing)
		return -EDEADLK;

	int cancel = cancel_off();
	lmm__reclaim_kick(d);
	if (d->scheme->barrier_wait)
		d->scheme->barrier_wait(d, true);

	unsigned long long deadline = deadline_after(d->barrier_timeout_ms * 1000000ull);
	unsigned long old;
	int ret;
	for (;;) {
		/*
		 * The idle bucket still holds frees that an earlier barrier gave up
		 * on (or is still waiting for): they are due too, and the flip is
		 * about to reuse the bucket. Drain it first (SRCU's second flip).
		 */
		/* Seq_cst: pairs with the registration in lmm__count_zero
		 * (litmus: barrier-epoch). */
		unsigned long e = atomic_load(&d->free_epoch);
		ret = barrier_drain(d, (e + 1) & 1, deadline);
		if (ret)
			goto out;
		pthread_mutex_lock(&d->barrier_lock);
		/* Seq_cst: pairs with the registration in lmm__count_zero
		 * (litmus: barrier-epoch). */
		bool flip = atomic_load(&d->free_epoch) == e;
		if (flip)
			old = atomic_fetch_add(&d->free_epoch, 1);
		pthread_mutex_unlock(&d->barrier_lock);
		if (flip)
			break;
	}
	ret = barrier_drain(d, old & 1, deadline);
out:
	if (ret)
		LMM_PROBE(barrier_timeout, d, d->barrier_timeout_ms);
	if (d->scheme->barrier_wait)
		d->scheme->barrier_wait(d, false);
	cancel_restore(cancel);
	return ret;
}

/* --- fork --- */

/*
 * A child of a multi-threaded process has only the forking thread. It may
 * use no domain it inherited, but it may create new ones: so every lock of
 * the library that is not inside a domain (the signal table's, the rcu
 * domain list's) is taken around fork() and released on both sides, and the
 * forking thread's worker identity is left behind in the parent.
 */
static void atfork_phase(int phase)
{
	for (unsigned i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (schemes[i] && schemes[i]->atfork)
			schemes[i]->atfork(phase);
	lmm__signal_atfork(phase);
	if (phase == LMM_FORK_CHILD)
		lmm__worker_atfork_child();
}

static void atfork_prepare(void) { atfork_phase(LMM_FORK_PREPARE); }
static void atfork_parent(void) { atfork_phase(LMM_FORK_PARENT); }
static void atfork_child(void) { atfork_phase(LMM_FORK_CHILD); }

static int atfork_err;

/*
 * At load time, not through pthread_once at the first create: a fork while
 * another thread is inside a pthread_once leaves the once in progress in
 * the child, and musl's child then waits for it forever (glibc resets it).
 */
__attribute__((constructor)) static void atfork_register(void)
{
	atfork_err = pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* --- domains --- */

/* A tunable: @env, if set, overrides @field (0: @def); either must lie in 1..@max. */
static int tunable(const char *env, unsigned field, unsigned long def, unsigned long max,
		   unsigned long *out)
{
	unsigned long v = field ? field : def;
	const char *s = getenv(env);
	if (s && *s) {
		char *end;
		errno = 0;
		v = strtoul(s, &end, 10);
		if (*end || errno || s[0] == '-')
			return -EINVAL;
	}
	if (v == 0 || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * Signals a domain may use: SIGUSR1, SIGUSR2 and the realtime ones. The
 * others are the kernel's (faults, SIGCHLD, SIGPIPE, job control), the C
 * library's (those below SIGRTMIN) or the user's (SIGINT, SIGTERM ...): a
 * handler of ours on them would swallow a fault or an order to stop.
 */
static bool signo_usable(int signo)
{
	return signo == 0 || signo == SIGUSR1 || signo == SIGUSR2 ||
	       (signo >= SIGRTMIN && signo <= SIGRTMAX);
}

bool lmm__domain_signals(const struct lmm_domain *d)
{
	/* lmm__membarrier_fallback() gives the answer it gave at create. */
	return d->scheme->uses_signals || lmm__membarrier_fallback();
}

/*
 * Memory given back with the domain is not a live context when the
 * application reuses it for one (lmm_ctx_init refuses a live one). Volatile:
 * a store just before free() is dead to the compiler, which drops it.
 */
/*
 * Volatile: the store precedes free(d) and would otherwise be dropped as
 * dead; memory reused for a context must not look live (lmm_ctx_init's
 * magic check), as lmm_domain_destroy leaves it.
 */
static void init_magic_clear(struct lmm_domain *d)
{
	*(volatile unsigned *)&ctx_impl(&d->init)->magic = 0;
}

int lmm_domain_create(const struct lmm_config *cfg, struct lmm_domain **out)
{
	if (!cfg || !out || !cfg->ops || !cfg->ops->switch_ctx || !cfg->ops->teardown ||
	    !cfg->ops->free)
		return -EINVAL;
	if (cfg->flags & ~(LMM_F_DEFER_FREE | LMM_F_DEBUG | LMM_F_NO_THREADS))
		return -EINVAL;
	unsigned long nudge_ms, backlog_max;
	if (tunable("LMM_RCU_NUDGE_MS", cfg->rcu_nudge_ms, 20, 100000, &nudge_ms) ||
	    tunable("LMM_RCU_BACKLOG_MAX", cfg->rcu_backlog_max, 4096, 1ul << 30, &backlog_max))
		return -EINVAL;
	if (cfg->max_workers > LMM_MAX_WORKERS)
		return -EINVAL;
	if (!lmm_scheme_name(cfg->scheme))
		return -EINVAL;
	if (!signo_usable(cfg->signo))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(cfg->reserved) / sizeof(cfg->reserved[0]); i++)
		if (cfg->reserved[i]) /* a field this version does not know */
			return -EINVAL;
	const struct lmm_scheme_ops *scheme = scheme_ops(cfg->scheme);
	if (!scheme)
		return -EPROTONOSUPPORT;
	if (atfork_err)
		return -atfork_err;

	struct lmm_domain *d = lmm__aligned_alloc(LMM_HOT_ALIGN, sizeof(*d));
	if (!d)
		return -ENOMEM;
	memset(d, 0, sizeof(*d));
	d->cfg = *cfg;
	d->ops = *cfg->ops;
	d->scheme = scheme;
	d->max_workers = cfg->max_workers ? cfg->max_workers : LMM_DEFAULT_MAX_WORKERS;
	d->mask_words = (d->max_workers + BITS_PER_LONG - 1) / BITS_PER_LONG;
	d->signo = cfg->signo ? cfg->signo : lmm_plat_default_signo();
	d->barrier_timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 10000;
	d->rcu_nudge_ms = (unsigned)nudge_ms;
	d->rcu_backlog_max = backlog_max;

	d->workers = lmm__calloc(d->max_workers, sizeof(*d->workers));
	if (!d->workers) {
		free(d);
		return -ENOMEM;
	}

	struct ctx_impl *init = ctx_impl(&d->init);
	atomic_init(&init->users, 1);
	atomic_init(&init->count, 1);
	init->domain = d;
	init->is_init = true;
	init->magic = CTX_MAGIC;
	atomic_init(&init->state, CTX_LIVE);
	/* init's mask stays NULL: nothing ever scans it. */

	int ret = -ENOMEM, cancel;
	if (pthread_mutex_init(&d->lock, NULL))
		goto err_workers;
	if (pthread_mutex_init(&d->barrier_lock, NULL))
		goto err_lock;
	ret = lmm__reclaim_init(d);
	if (ret)
		goto err_barrier;
	/* Without membarrier(2), lmm_membarrier signals workers of any scheme. */
	bool need_signal = lmm__domain_signals(d);
	if (need_signal) {
		ret = lmm__signal_install(d);
		if (ret)
			goto err_reclaim;
	}
	if (scheme->domain_init) {
		ret = scheme->domain_init(d);
		if (ret)
			goto err_signal;
	}
	/*
	 * The reclaim thread, if some user needs it from the start. Last, after
	 * domain_init: rcu counts as used (its fork rule) before the thread
	 * exists, and no error path is left that would join it.
	 */
	if (!(cfg->flags & LMM_F_NO_THREADS) && ((cfg->flags & LMM_F_DEFER_FREE) || scheme->reclaim_at_create)) {
		cancel = cancel_off(); /* cfg.thread_create may wait: not at a cancellation point of ours */
		ret = lmm__reclaim_start(d);
		cancel_restore(cancel);
		if (ret)
			goto err_scheme;
	}
	*out = d;
	return 0;

err_scheme:
	cancel = cancel_off(); /* no lazymm call is a cancellation point (cancel_off) */
	if (scheme->domain_fini)
		scheme->domain_fini(d);
	cancel_restore(cancel);
err_signal:
	if (need_signal)
		lmm__signal_uninstall(d);
err_reclaim:
	lmm__reclaim_fini(d); /* no thread to join: it was never started */
err_barrier:
	pthread_mutex_destroy(&d->barrier_lock);
err_lock:
	pthread_mutex_destroy(&d->lock);
err_workers:
	init_magic_clear(d); /* as in lmm_domain_destroy */
	free(d->workers);
	free(d);
	return ret;
}

int lmm_domain_destroy(struct lmm_domain *d)
{
	if (!d)
		return -EINVAL;
	if (lmm__freeing)
		return -EDEADLK;
	pthread_mutex_lock(&d->lock);
	bool busy = d->online > 0;
	pthread_mutex_unlock(&d->lock);
	/* Acquire (all three) pairs with lmm__run_free's releases: no free still touches d
	 * (litmus: run-free-order). */
	bool freeing = atomic_load_explicit(&d->contexts_live, memory_order_acquire) != 0 ||
		       atomic_load_explicit(&d->free_inflight[0], memory_order_acquire) != 0 || /* as above */
		       atomic_load_explicit(&d->free_inflight[1], memory_order_acquire) != 0;   /* as above */
	if (busy || freeing)
		return -EBUSY;

	int cancel = cancel_off(); /* the join below is a cancellation point */
	lmm__reclaim_fini(d); /* first: its passes use the scheme's state */
	if (d->scheme->domain_fini)
		d->scheme->domain_fini(d);
	if (lmm__domain_signals(d))
		lmm__signal_uninstall(d);
	cancel_restore(cancel);
	init_magic_clear(d);
	for (unsigned i = 0; i < d->max_workers; i++) {
		struct lmm_worker *w = atomic_load_explicit(&d->workers[i], memory_order_relaxed);
		if (w) {
			pthread_mutex_destroy(&w->kill_lock);
			free(w);
		}
	}
	pthread_mutex_destroy(&d->barrier_lock);
	pthread_mutex_destroy(&d->lock);
	free(d->workers);
	free(d);
	return 0;
}

struct lmm_ctx *lmm_init_ctx(struct lmm_domain *d)
{
	return d ? &d->init : NULL;
}

enum lmm_scheme lmm_domain_scheme(const struct lmm_domain *d)
{
	return d->scheme->id;
}

int lmm_domain_signo(const struct lmm_domain *d)
{
	return d->signo;
}

/* --- statistics --- */

static const size_t stat_field[ST_NR] = {
	[ST_TEARDOWNS] = offsetof(struct lmm_stats, teardowns),
	[ST_FREES] = offsetof(struct lmm_stats, frees),
	[ST_FREES_DEFERRED] = offsetof(struct lmm_stats, frees_deferred),
	[ST_CONVERSIONS] = offsetof(struct lmm_stats, conversions),
	[ST_SLOTS_SCANNED] = offsetof(struct lmm_stats, slots_scanned),
	[ST_HAZARDS_CONVERTED] = offsetof(struct lmm_stats, hazards_converted),
	[ST_SIGNALS_SENT] = offsetof(struct lmm_stats, signals_sent),
	[ST_SIGNALS_AVOIDED_PUBLISHED] = offsetof(struct lmm_stats, signals_avoided_published),
	[ST_SIGNALS_AVOIDED_SELFCLEAR] = offsetof(struct lmm_stats, signals_avoided_selfclear),
	[ST_SIGNALS_AVOIDED_BATCHED] = offsetof(struct lmm_stats, signals_avoided_batched),
	[ST_SHOOTDOWNS] = offsetof(struct lmm_stats, shootdowns),
	[ST_RECLAIM_HANDOFFS] = offsetof(struct lmm_stats, reclaim_handoffs),
	[ST_SIGNALS_UNANSWERED] = offsetof(struct lmm_stats, signals_unanswered),
	[ST_GRACE_PERIODS] = offsetof(struct lmm_stats, grace_periods),
	[ST_RCU_STALLS] = offsetof(struct lmm_stats, rcu_stalls),
	[ST_RCU_NUDGES] = offsetof(struct lmm_stats, rcu_nudges),
	[ST_LAZY_ENTERS] = offsetof(struct lmm_stats, lazy_enters),
	[ST_LAZY_HITS] = offsetof(struct lmm_stats, lazy_hits),
	[ST_INSTALLS] = offsetof(struct lmm_stats, installs),
	[ST_UNLAZIES] = offsetof(struct lmm_stats, unlazies),
};

static void add_worker_counters(struct lmm_stats *out, struct lmm_worker *w)
{
	struct worker_counters *wc = &w->stats;
	/* Relaxed: a snapshot; each counter has a single writer. */
	out->lazy_hits += worker_lazy_hits(w);
	out->lazy_enters += atomic_load_explicit(&wc->lazy_enters, memory_order_relaxed);
	out->installs += atomic_load_explicit(&wc->installs, memory_order_relaxed);
	out->unlazies += atomic_load_explicit(&wc->unlazies, memory_order_relaxed);
}

/* lmm_stats_get (version.c) copies what its caller's struct has room for. */
int lmm__stats(struct lmm_domain *d, struct lmm_stats *out)
{
	if (!d || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < d->max_workers; i++) {
		/* Relaxed: d->lock orders the table; counters are a snapshot. */
		struct lmm_worker *w = atomic_load_explicit(&d->workers[i], memory_order_relaxed);
		if (w && atomic_load_explicit(&w->online, memory_order_relaxed))
			add_worker_counters(out, w);
	}
	out->workers_online = d->online;
	for (unsigned i = 0; i < ST_NR; i++)
		*(uint64_t *)((char *)out + stat_field[i]) +=
			atomic_load_explicit(&d->stat[i], memory_order_relaxed);
	pthread_mutex_unlock(&d->lock);
	out->switches = out->lazy_enters + out->lazy_hits + out->installs - out->unlazies;
	long live = atomic_load_explicit(&d->contexts_live, memory_order_relaxed);
	out->contexts_live = live > 0 ? (uint64_t)live : 0;
	long pending = atomic_load_explicit(&d->free_inflight[0], memory_order_relaxed) +
		       atomic_load_explicit(&d->free_inflight[1], memory_order_relaxed);
	out->frees_pending = pending > 0 ? (uint64_t)pending : 0;
	if (d->scheme->stats)
		d->scheme->stats(d, out);
	return 0;
}

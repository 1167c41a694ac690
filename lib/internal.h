/* SPDX-License-Identifier: MIT */
/*
 * lazymm internals: the core's objects, the services it offers the schemes
 * and the ops table a scheme implements. Each scheme is a module in
 * lib/scheme/ (NAME.c, its fast-path pieces in NAME.h, its state in the
 * core's objects in NAME_state.h), listed once in meson.build's `schemes`;
 * lmm_schemes.h, generated from that list, gives LMM_SCHEME_LIST and the
 * state types. The core reaches a scheme only through its ops table and, on
 * the switch path, the inline pieces of its NAME.h (switch.c).
 */
#ifndef LMM_INTERNAL_H
#define LMM_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lazymm.h"
#ifndef LMM_INLINE_ABI
#error "lazymm.h was included without LMM_INLINE_LAYOUT (meson.build's lib_args): the layout it shares with inline callers is missing"
#endif
#include "lmm_schemes.h"
#include "platform/platform.h"
#include "probes.h"

#define LMM_HIDDEN __attribute__((visibility("hidden")))
#include "reclaim.h"
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/*
 * The worker's hot block: everything the switch fast path reads or writes.
 * Written only by the owning thread (and its own signal handler); read by
 * scanners. 128 bytes: adjacent-line prefetchers move lines in pairs.
 */
#define LMM_HOT_ALIGN 128

/* Context life cycle, for debug checks and the schemes. */
enum ctx_state {
	CTX_LIVE = 1,   /* users > 0 */
	CTX_TORN,       /* users reached 0, teardown ran */
	CTX_DYING,      /* count reached 0, free not yet run */
	CTX_FREED,      /* free ran (only visible in debug builds of the caller's memory) */
};

#define CTX_MAGIC 0x6c6d6d63u /* "lmmc" */

struct ctx_impl {
	atomic_long users;
	atomic_long count;
	struct lmm_domain *domain;
	/* Superset of the workers that may have this context installed. */
	_Atomic(unsigned long) *worker_mask;
	atomic_uint state;
	unsigned magic;
	bool is_init;
	unsigned char free_epoch; /* lmm_barrier bucket, set once the count reached 0 */
	/*
	 * The reclaim engine's queue link (reclaim.h): the context is dying and
	 * on one queue at most, the scheme's then the deferred frees'; under the
	 * engine's lock while queued, else the one thread's that took it.
	 */
	struct ctx_impl *reclaim_next;
	/* The scheme's state (scheme/NAME_state.h), from the count's reaching 0 on. */
	union {
#define LMM_CTX_MEMBER(name, NAME) LMM_##NAME##_CTX
		LMM_SCHEME_LIST(LMM_CTX_MEMBER)
#undef LMM_CTX_MEMBER
	} scheme;
};
_Static_assert(sizeof(struct ctx_impl) <= sizeof(struct lmm_ctx), "struct ctx_impl does not fit in struct lmm_ctx");
/* users is lazymm.h's struct lmm_inline_ctx for LMM_INLINE callers (hazard's going lazy reads it). */
_Static_assert(offsetof(struct ctx_impl, users) == offsetof(struct lmm_inline_ctx, users),
	       "struct ctx_impl's users is not lazymm.h's lmm_inline_ctx.users");
_Static_assert(_Alignof(struct ctx_impl) <= _Alignof(struct lmm_ctx), "struct lmm_ctx is less aligned than struct ctx_impl");

static inline struct ctx_impl *ctx_impl(struct lmm_ctx *ctx)
{
	return (struct ctx_impl *)(void *)ctx;
}

static inline struct lmm_ctx *ctx_public(struct ctx_impl *c)
{
	return (struct lmm_ctx *)(void *)c;
}

/*
 * Owner-only writers: updated with a relaxed load + store, no RMW. Only going
 * lazy counts on the fast path; every lazy period ends in a lazy hit or in an
 * install (lazy_ended), so lazy hits = lazy_enters - lazy_ended - (1 if the
 * worker is lazy now): worker_lazy_hits().
 */
struct worker_counters {
	atomic_uint_least64_t lazy_enters, lazy_ended, installs, unlazies;
};

struct lmm_worker {
	/*
	 * --- hot block --- Its first words are lazymm.h's struct
	 * lmm_inline_worker, the layout LMM_INLINE callers read and write
	 * (checked below): active, current, init, inline_kind, hot, stats.
	 */
	_Alignas(LMM_HOT_ALIGN)
	/* Installed context. Stored with release after switch_ctx; scanners acquire. */
	_Atomic(struct lmm_ctx *) active;
	/* Context of the running task, or NULL (lazy, or idle on init). */
	_Atomic(struct lmm_ctx *) current;
	struct lmm_ctx *init;
	/*
	 * The inline path's one test (lazymm.h, LMM_INLINE): the scheme's id
	 * while path is the scheme's fast copy and the scheme has inline pieces
	 * in lazymm.h; 0 otherwise: inline callers then call lmm_switch.
	 * Fixed at online with path (lmm__switch_path_set), stored with it by
	 * the idle bracket (worker_idle_set).
	 */
	unsigned char inline_kind;
	/* The domain's handler runs the signal work now (switch_ctx's LMM_SWITCH_SIGNAL). */
	atomic_bool in_handler;
	bool uses_signals;
	bool debug;
	/* No membarrier(2): switching in to a context fences, for lmm_membarrier's fallback. */
	bool membarrier_fence;
	unsigned char kind; /* the scheme's id (enum lmm_scheme), whose lazy hooks the general copy runs */
	unsigned char path; /* enum switch_path: lmm_switch's copy of the body (switch.c) */
	/* Between lmm_idle_enter and lmm_idle_exit; path is then the general copy, which checks it. */
	bool idle;
	/* The scheme's hot state (scheme/NAME_state.h): its fast path reads it. */
	union {
#define LMM_HOT_MEMBER(name, NAME) LMM_##NAME##_WORKER_HOT
		LMM_SCHEME_LIST(LMM_HOT_MEMBER)
#undef LMM_HOT_MEMBER
	} hot;
	struct worker_counters stats;
	const struct lmm_scheme_ops *scheme;
	struct lmm_domain *domain;
	/*
	 * Signal deferral (the pending state follows the worker, never the
	 * context: Schwidefsky, "s390/mm,tlb: race of lazy TLB flush vs.
	 * recreation of TLB entries", Nov 2013). While critical is non-zero
	 * the switch state is half updated:
	 * the handler only sets sig_pending, and the switch path runs the
	 * scheme's signal work as it leaves. Same-thread only: relaxed atomics
	 * plus signal fences are enough.
	 */
	atomic_int critical;
	atomic_int sig_pending;
	/* Inside switch_ctx: the slow paths refuse to re-enter (owner only; no handler reads it). */
	bool in_switch_ctx;
	/*
	 * path and inline_kind outside the idle bracket, fixed at online
	 * (lmm__switch_path_set): the bracket stores bytes and never reads
	 * the flags back (worker_idle_set).
	 */
	unsigned char run_path, run_inline_kind;
	unsigned id;

	/* --- cold: online/offline, identity --- */
	_Alignas(LMM_HOT_ALIGN) pthread_t thread;
	void *data;
	/* Serialises pthread_kill against the thread leaving (see signal.c). */
	pthread_mutex_t kill_lock;
	atomic_bool online;
	/* Bumped at every online: lets a scheme recognise a reused slot. */
	atomic_uint generation;
	/* The scheme's cold state (scheme/NAME_state.h). */
	union {
#define LMM_COLD_MEMBER(name, NAME) LMM_##NAME##_WORKER_COLD
		LMM_SCHEME_LIST(LMM_COLD_MEMBER)
#undef LMM_COLD_MEMBER
	} cold;
	/* The last lmm_membarrier request this worker's signal handler served. */
	atomic_ulong membarrier_ack;
};
_Static_assert(offsetof(struct lmm_worker, id) + sizeof(unsigned) <= LMM_HOT_ALIGN,
	       "the worker's hot block outgrew its 128 bytes");
_Static_assert(offsetof(struct lmm_worker, thread) == LMM_HOT_ALIGN, "the cold block starts a new line pair");
/* The layout shared with LMM_INLINE callers (lazymm.h): the same memory, never drifting. */
#define LMM_INLINE_SAME(lib, pub)                                                                \
	_Static_assert(offsetof(struct lmm_worker, lib) == offsetof(struct lmm_inline_worker, pub) && \
			       sizeof(((struct lmm_worker *)0)->lib) ==                              \
				       sizeof(((struct lmm_inline_worker *)0)->pub),                 \
		       "struct lmm_worker's " #lib " is not lazymm.h's lmm_inline_worker." #pub)
LMM_INLINE_SAME(active, active);
LMM_INLINE_SAME(current, current);
LMM_INLINE_SAME(init, init);
LMM_INLINE_SAME(inline_kind, kind);
_Static_assert(offsetof(struct lmm_worker, idle) < offsetof(struct lmm_inline_worker, hot),
	       "the worker's flags outgrew lmm_inline_worker.lib_flags");
LMM_INLINE_SAME(stats.lazy_enters, lazy_enters);
#ifdef LMM_HAVE_HAZARD
LMM_INLINE_SAME(hot.hazard, hot.hazard);
#endif
#ifdef LMM_HAVE_RCU
LMM_INLINE_SAME(hot.rcu, hot.rcu);
#endif
#undef LMM_INLINE_SAME

/* lmm_switch's general copy (enum switch_path in switch.c): it checks the idle bracket. */
#define LMM_PATH_GENERAL 0

/*
 * Enter (idle) or leave the idle bracket: the general copy while in it,
 * the online paths after. Byte stores only: recomputing the path here
 * would read the flag bytes back as one word right after a byte store to
 * it, which no CPU forwards from its store buffer (a stall of a dozen
 * cycles or more on x86-64, twice per idle cycle).
 */
static inline void worker_idle_set(struct lmm_worker *w, bool idle)
{
	w->idle = idle;
	w->path = idle ? LMM_PATH_GENERAL : w->run_path;
	w->inline_kind = idle ? 0 : w->run_inline_kind;
}

/*
 * A scheme. Hooks marked optional may be NULL. "ctx" is never the init
 * context in the lazy hooks: init is never freed, so lazy holds on it are
 * nobody's business.
 */
struct lmm_scheme_ops {
	enum lmm_scheme id;
	bool uses_signals; /* the core installs the domain's handler and brackets switches */
	int (*domain_init)(struct lmm_domain *d);   /* optional */
	void (*domain_fini)(struct lmm_domain *d);  /* optional; no workers, no contexts */
	/*
	 * Optional: a worker slot that went offline is taken again, under the
	 * domain's lock, before it is online. Reset the scheme's words to
	 * what a fresh (zeroed) worker holds.
	 */
	void (*worker_reuse)(struct lmm_worker *w);
	int (*worker_online)(struct lmm_worker *w); /* optional; on w's thread, w already published */
	void (*worker_offline)(struct lmm_worker *w); /* optional; on w's thread, after unlazy, before unpublish */
	/*
	 * Going lazy and the lazy hit are not here: they are inline pieces of
	 * the scheme's NAME.h, which lmm_switch picks by the scheme's id
	 * (switch.c). An indirect call there costs more than the hook.
	 */
	/* Optional: switch_ctx moved w off lazily held prev; w->active still says prev. */
	void (*switched_away)(struct lmm_worker *w, struct lmm_ctx *prev);
	/* Optional. w's lazy hold on ctx ended after another context was installed (finish_task_switch). */
	void (*lazy_release)(struct lmm_worker *w, struct lmm_ctx *ctx);
	/* Optional: the end of every install (task to task, from lazy, unlazy); w holds no lazy context. */
	void (*installed)(struct lmm_worker *w);
	/* Optional: users reached 0; teardown ran; the users' count reference is still held. */
	void (*users_zero)(struct lmm_ctx *ctx);
	/* Count reached 0: call lmm__ctx_release(ctx) once no worker can have it installed. */
	void (*count_zero)(struct lmm_ctx *ctx);
	/* Optional: the calling thread (maybe a worker) is about to block in lmm_barrier / is done. */
	void (*barrier_wait)(struct lmm_domain *d, bool begin);
	void (*idle_enter)(struct lmm_worker *w); /* optional */
	void (*idle_exit)(struct lmm_worker *w);  /* optional */
	/* The domain's signal landed on w, outside any switch (maybe in the handler). */
	void (*signal)(struct lmm_worker *w);
	void (*stats)(struct lmm_domain *d, struct lmm_stats *out); /* optional: gauges */
	/*
	 * Optional: the scheme's work on the reclaim engine (reclaim.h), on its
	 * thread, or with LMM_F_NO_THREADS in lmm_poll and lmm_barrier (@poll:
	 * one look, no waiting). @batch: the contexts lmm__reclaim_queue took
	 * since the last pass, oldest first, linked by reclaim_next (maybe
	 * NULL: a kick). Release those whose time came (lmm__ctx_release) and
	 * return the others, still linked: the engine queues them again and
	 * passes again after a pause, or at the next kick. No lock held.
	 */
	struct ctx_impl *(*reclaim_pass)(struct lmm_domain *d, struct ctx_impl *batch, bool poll);
	/* The engine's thread from lmm_domain_create on (after domain_init), not at the first queue. */
	bool reclaim_at_create;
	/* Optional: lmm_quiescent on w's thread. */
	void (*quiescent)(struct lmm_worker *w);
	/* Optional, process-wide: pthread_atfork's three phases (enum lmm_fork_phase). */
	void (*atfork)(int phase);
};

enum lmm_fork_phase { LMM_FORK_PREPARE, LMM_FORK_PARENT, LMM_FORK_CHILD };

/* Domain-wide counters, indexed; mapped to struct lmm_stats in domain.c. */
enum lmm_stat {
	ST_TEARDOWNS,
	ST_FREES,
	ST_FREES_DEFERRED,
	ST_CONVERSIONS,
	ST_SLOTS_SCANNED,
	ST_HAZARDS_CONVERTED,
	ST_SIGNALS_SENT,
	ST_SIGNALS_AVOIDED_PUBLISHED,
	ST_SIGNALS_AVOIDED_SELFCLEAR,
	ST_SIGNALS_AVOIDED_BATCHED,
	ST_SHOOTDOWNS,
	ST_RECLAIM_HANDOFFS,
	ST_SIGNALS_UNANSWERED,
	ST_GRACE_PERIODS,
	ST_RCU_STALLS,
	ST_RCU_NUDGES,
	/* folded in from workers that went offline */
	ST_LAZY_ENTERS,
	ST_LAZY_HITS,
	ST_INSTALLS,
	ST_UNLAZIES,
	ST_NR
};

struct lmm_domain {
	struct lmm_config cfg;
	struct lmm_ops ops;
	const struct lmm_scheme_ops *scheme;
	/* The scheme's per-domain state (scheme/NAME_state.h), owned by its module. */
	union {
#define LMM_DOMAIN_MEMBER(name, NAME) LMM_##NAME##_DOMAIN
		LMM_SCHEME_LIST(LMM_DOMAIN_MEMBER)
#undef LMM_DOMAIN_MEMBER
	} scheme_state;
	unsigned max_workers;
	unsigned mask_words; /* unsigned longs per worker mask */
	int signo;
	unsigned barrier_timeout_ms;
	unsigned rcu_nudge_ms;         /* cfg.rcu_nudge_ms or LMM_RCU_NUDGE_MS, validated */
	unsigned long rcu_backlog_max; /* cfg.rcu_backlog_max or LMM_RCU_BACKLOG_MAX, validated */
	struct lmm_ctx init;

	/* Guards the worker table's membership; never held across a hook. */
	pthread_mutex_t lock;
	/* Slot structs live until the domain dies, so scanners never chase freed workers. */
	_Atomic(struct lmm_worker *) *workers;
	unsigned online;

	_Alignas(64) atomic_long contexts_live;
	/*
	 * Frees in flight, SRCU-style: a context registers in free_inflight[epoch
	 * & 1] when its count reaches 0 and leaves when free returned. lmm_barrier
	 * flips the epoch and waits for the old bucket to drain.
	 */
	atomic_ulong free_epoch;
	atomic_long free_inflight[2];
	pthread_mutex_t barrier_lock;

	/* The reclaim engine: the deferred frees and the scheme's queue, its one thread. */
	struct lmm_reclaim reclaim;

	_Alignas(64) atomic_uint_least64_t stat[ST_NR];
};

/* core services for the schemes */
LMM_HIDDEN void lmm__ctx_release(struct lmm_ctx *ctx);
/* The free itself, on the calling thread (the engine runs the deferred ones). */
LMM_HIDDEN void lmm__run_free(struct ctx_impl *c);
LMM_HIDDEN void lmm__count_zero(struct ctx_impl *c);
LMM_HIDDEN void lmm__unlazy(struct lmm_worker *w);
LMM_HIDDEN int lmm__stats(struct lmm_domain *d, struct lmm_stats *out);
LMM_HIDDEN _Noreturn void lmm__die(const char *call, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
LMM_HIDDEN int lmm__signal_install(struct lmm_domain *d);
LMM_HIDDEN void lmm__signal_uninstall(struct lmm_domain *d);
LMM_HIDDEN bool lmm__signal_worker(struct lmm_worker *w);
LMM_HIDDEN void lmm__signal_deferred(struct lmm_worker *w);
LMM_HIDDEN void lmm__signal_atfork(int phase);
/* Whether w's thread blocks the domain's signal now (lmm_worker_online refuses it). */
LMM_HIDDEN bool lmm__signal_blocked(const struct lmm_domain *d);
/* The domain installed a handler for its signal: its scheme or lmm_membarrier's fallback signals. */
LMM_HIDDEN bool lmm__domain_signals(const struct lmm_domain *d);
LMM_HIDDEN void lmm__worker_atfork_child(void);
/* lmm_membarrier (membarrier.c): whether it signals workers; the handler's part. */
LMM_HIDDEN bool lmm__membarrier_fallback(void);
LMM_HIDDEN void lmm__membarrier_ack(struct lmm_worker *w);
/*
 * switch.c: set which copy of the switch body w takes, and its inline kind
 * (at worker creation and online, and around the idle bracket).
 */
LMM_HIDDEN void lmm__switch_path_set(struct lmm_worker *w);
LMM_HIDDEN extern __thread struct lmm_worker *lmm__self __attribute__((tls_model("initial-exec")));
/*
 * A free running on this thread (nested frees: the innermost). It lives on
 * lmm__run_free's stack, not in the context: once the free hook runs, the
 * context's memory is the application's, and a nested lmm_drop must find
 * the domain and bucket without reading it.
 */
struct freeing {
	struct lmm_domain *domain;
	unsigned char free_epoch;
	struct freeing *parent;
};
/* NULL outside free. */
LMM_HIDDEN extern __thread struct freeing *lmm__freeing __attribute__((tls_model("initial-exec")));

/*
 * No lazymm call is a cancellation point: every wait of the library (a
 * shootdown round's naps, rcu backpressure, lmm_barrier, joins) and every
 * hook it runs from a final drop happen with cancellation disabled, and the
 * caller's state is restored before the call returns. Cancelled inside such
 * a wait, a thread would leave a dying context in a local list or a lock
 * held. Never called in a signal handler: no path from one reaches a drop.
 */
static inline int cancel_off(void)
{
	int old;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	return old;
}

static inline void cancel_restore(int old)
{
	pthread_setcancelstate(old, NULL);
}

static inline void stat_add(struct lmm_domain *d, enum lmm_stat s, uint64_t n)
{
	/* Relaxed: statistics order nothing. */
	atomic_fetch_add_explicit(&d->stat[s], n, memory_order_relaxed);
}

static inline void wstat_inc(atomic_uint_least64_t *c)
{
	/* Only the owner writes: no RMW needed; relaxed for the lmm_stats reader. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* w's lazy hits so far (struct worker_counters): exact on the owner, a snapshot elsewhere. */
static inline uint64_t worker_lazy_hits(struct lmm_worker *w)
{
	/* Relaxed: statistics. ended first: it never passes enters. */
	uint64_t ended = atomic_load_explicit(&w->stats.lazy_ended, memory_order_relaxed);
	uint64_t enters = atomic_load_explicit(&w->stats.lazy_enters, memory_order_relaxed);
	bool lazy = !atomic_load_explicit(&w->current, memory_order_relaxed) &&
		    atomic_load_explicit(&w->active, memory_order_relaxed) != w->init;
	return enters > ended + lazy ? enters - ended - lazy : 0;
}

/*
 * The library's waits: a deadline @ns from now, and a nap that doubles from
 * 1 µs up to 1 ms between polls (lmm_plat_deadline_ts is the same deadline
 * for a CLOCK_MONOTONIC condition variable).
 */
static inline unsigned long long deadline_after(unsigned long long ns)
{
	return lmm_plat_now_ns() + ns;
}

struct backoff {
	unsigned long long nap;
};
#define BACKOFF_INIT { .nap = 1000 }

/* Double the nap, up to @max ns. */
static inline void backoff_grow(struct backoff *b, unsigned long long max)
{
	if (b->nap < max)
		b->nap = b->nap * 2 < max ? b->nap * 2 : max;
}

static inline void backoff_nap(struct backoff *b)
{
	lmm_plat_sleep_ns(b->nap);
	backoff_grow(b, 1000000);
}

/*
 * refcount_inc_not_zero: add 1 to *v unless it is 0 (or below); whether it
 * did. Relaxed: the caller holds what keeps the object alive and says why
 * that suffices.
 */
static inline bool atomic_long_inc_not_zero(atomic_long *v)
{
	long old = atomic_load_explicit(v, memory_order_relaxed);
	do {
		if (old <= 0)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(v, &old, old + 1, memory_order_relaxed,
							memory_order_relaxed));
	return true;
}

static inline bool ctx_is_init(struct lmm_ctx *ctx)
{
	return ctx_impl(ctx)->is_init;
}

/* Worker-mask helpers: a bit per worker id. */
#define BITS_PER_LONG (8 * sizeof(unsigned long))

static inline void mask_set(struct ctx_impl *c, unsigned id)
{
	_Atomic(unsigned long) *word = &c->worker_mask[id / BITS_PER_LONG];
	unsigned long bit = 1ul << (id % BITS_PER_LONG);
	/*
	 * Test first, so a worker that re-installs a context writes nothing
	 * shared. Relaxed is enough: the bit is set while the worker holds a
	 * reference (current), and that reference is dropped with release; the
	 * final dropper's acquire makes the bit visible to whoever scans (litmus:
	 * sd-mask-visible; hazard orders it by its fence pair: hazard-publish).
	 */
	if (!(atomic_load_explicit(word, memory_order_relaxed) & bit))
		atomic_fetch_or_explicit(word, bit, memory_order_relaxed);
}

static inline void mask_clear(struct ctx_impl *c, unsigned id)
{
	/* Relaxed: clearing only removes a candidate; callers order what matters. */
	atomic_fetch_and_explicit(&c->worker_mask[id / BITS_PER_LONG],
				  ~(1ul << (id % BITS_PER_LONG)), memory_order_relaxed);
}

/*
 * The walk of a context's worker mask, written once: every set bit in
 * turn, with the worker published in that slot (NULL: none yet). The mask
 * may only grow while the caller holds a reference; after the count
 * reached 0 it only shrinks.
 *
 *	struct mask_walk m = mask_walk_start(c);
 *	while (mask_walk_next(&m))
 *		... m.id, m.w ...
 */
struct mask_walk {
	struct ctx_impl *c;
	unsigned word;      /* the word bits came from */
	unsigned long bits; /* its set bits not yet visited */
	unsigned id;        /* the bit visited */
	struct lmm_worker *w;
};

static inline unsigned long mask_walk_load(struct ctx_impl *c, unsigned word)
{
	/*
	 * Acquire pairs with the release bit clear in shootdown's
	 * sd_switched_away (litmus: sd-self-clear, sd-self-clear-filter). The
	 * other walkers order the mask themselves (see mask_set; litmus:
	 * sd-mask-visible, hazard-publish) and need only relaxed: no walk is
	 * on a switch path, and the acquire is a plain load on x86-64.
	 */
	return atomic_load_explicit(&c->worker_mask[word], memory_order_acquire);
}

static inline struct mask_walk mask_walk_start(struct ctx_impl *c)
{
	return (struct mask_walk){ .c = c, .bits = mask_walk_load(c, 0) };
}

static inline bool mask_walk_next(struct mask_walk *m)
{
	struct lmm_domain *d = m->c->domain;

	while (!m->bits) {
		if (++m->word >= d->mask_words)
			return false;
		m->bits = mask_walk_load(m->c, m->word);
	}
	m->id = m->word * BITS_PER_LONG + (unsigned)__builtin_ctzl(m->bits);
	m->bits &= m->bits - 1;
	/* Acquire pairs with the release publication in lmm_worker_online (litmus: worker-publish). */
	m->w = atomic_load_explicit(&d->workers[m->id], memory_order_acquire);
	return true;
}

/* Call fn(w, arg) for every published worker whose bit is set in c's mask; returns how many. */
LMM_HIDDEN unsigned lmm__mask_for_each(struct ctx_impl *c,
				       void (*fn)(struct lmm_worker *w, void *arg), void *arg);
/* Call fn(w, arg) for every published worker of d (online or not: slots are never freed). */
LMM_HIDDEN void lmm__for_each_worker(struct lmm_domain *d, void (*fn)(struct lmm_worker *w, void *arg),
				     void *arg);

/* Signal-deferral brackets around every change of active/current. */
static inline void critical_enter(struct lmm_worker *w)
{
	if (!w->uses_signals)
		return;
	atomic_store_explicit(&w->critical, atomic_load_explicit(&w->critical, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	/* Pairs with the handler on this thread: it sees critical before any change below. */
	atomic_signal_fence(memory_order_seq_cst);
}

static inline void critical_exit(struct lmm_worker *w)
{
	if (!w->uses_signals)
		return;
	/* Pairs with the handler on this thread: our changes are done before critical drops. */
	atomic_signal_fence(memory_order_seq_cst);
	int depth = atomic_load_explicit(&w->critical, memory_order_relaxed) - 1;
	atomic_store_explicit(&w->critical, depth, memory_order_relaxed);
	/* Pairs with the handler: it either saw critical == 0 and did the work, or set pending. */
	atomic_signal_fence(memory_order_seq_cst);
	if (depth == 0 && unlikely(atomic_load_explicit(&w->sig_pending, memory_order_relaxed)))
		lmm__signal_deferred(w);
}

/*
 * The outermost bracket, for lmm_switch only: the owner calls it, never from
 * a hook or a handler, so critical is 0 on entry and plain stores replace the
 * read-modify-write (lmm_switch checked critical == 0 under LMM_F_DEBUG).
 */
static inline void critical_enter_outer(struct lmm_worker *w)
{
	if (!w->uses_signals)
		return;
	atomic_store_explicit(&w->critical, 1, memory_order_relaxed);
	/* Pairs with the handler on this thread: it sees critical before any change below. */
	atomic_signal_fence(memory_order_seq_cst);
}

static inline void critical_exit_outer(struct lmm_worker *w)
{
	if (!w->uses_signals)
		return;
	/* Pairs with the handler on this thread: our changes are done before critical drops. */
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&w->critical, 0, memory_order_relaxed);
	/* Pairs with the handler: it either saw critical == 0 and did the work, or set pending. */
	atomic_signal_fence(memory_order_seq_cst);
	if (unlikely(atomic_load_explicit(&w->sig_pending, memory_order_relaxed)))
		lmm__signal_deferred(w);
}

/* The built schemes' ops tables: lmm_scheme_NAME in scheme/NAME.c. */
#define LMM_SCHEME_OPS_DECL(name, NAME) LMM_HIDDEN extern const struct lmm_scheme_ops lmm_scheme_##name;
LMM_SCHEME_LIST(LMM_SCHEME_OPS_DECL)
#undef LMM_SCHEME_OPS_DECL

#endif /* LMM_INTERNAL_H */

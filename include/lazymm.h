/* SPDX-License-Identifier: MIT */
/*
 * lazymm: lazy address-space references for userspace runtimes.
 *
 * A domain is one scheduler: a pool of workers (threads, the "CPUs") that run
 * tasks, each task belonging to a context (an address space, the "mm") or to
 * none. A worker that switches to a context-less task keeps the previous
 * context installed lazily, exactly as Linux keeps a lazy TLB mm; the domain's
 * scheme decides how that lazy hold keeps the context alive:
 *
 *   refcount   every lazy hold is a counted reference (MMU_LAZY_TLB_REFCOUNT)
 *   shootdown  lazy holds are uncounted; the final drop signals the workers
 *              that may still hold it away (MMU_LAZY_TLB_SHOOTDOWN)
 *   hazard     each worker publishes its lazy context in a hazard slot; the
 *              last user converts hazards into references (Lutomirski 2022)
 *   rcu        lazy holds are RCU read-side sections; frees wait a grace
 *              period (liburcu)
 *
 * Every function returning int returns 0 or a negative errno value. This
 * header (with lazymm_version.h, which it includes) is the whole public API.
 * lazymm(7) gives the overview, the version and ABI rules and the USDT
 * probes; each function has its man page (lmm_switch(3) ...); the design
 * notes are installed in share/doc/lazymm/docs (design.md: the concepts and
 * the switch path).
 *
 * At the edges, for every call:
 * - Cancellation: no lazymm call is a cancellation point. Each disables
 *   cancellation around its own waits and around the hooks a final put or
 *   drop runs (teardown, free), and restores the caller's state before it
 *   returns; a pending cancellation acts at the caller's next cancellation
 *   point. Asynchronous cancellation must be disabled around every call.
 * - fork(): a child may use no domain, worker or context it inherited, and
 *   its thread is no worker (lmm_worker_self() is NULL there). It may
 *   create, use and destroy new domains of every scheme, except rcu in the
 *   child of a process that had created an rcu domain, or was creating one
 *   when it forked: -ENOTRECOVERABLE (liburcu-qsbr's registry still lists
 *   the parent's reader threads).
 * - Signal handlers: no lazymm call may be made from one, except the
 *   getters marked async-signal-safe (lmm_worker_self, _data, _id,
 *   lmm_active, lmm_current, lmm_ctx_domain, lmm_domain_signo), and
 *   switch_ctx's own work when the library runs it there.
 * - membarrier(2): the hazard scheme pairs compiler barriers with it; if it
 *   fails after registration (a seccomp filter installed later), the
 *   library aborts with a message rather than lose the ordering.
 * - Which hooks each call may run, per scheme, and on which thread: the
 *   "Hooks, calls and threads" matrix of lazymm(7); each call below says
 *   its own line of it ("Hooks:").
 */
#ifndef LAZYMM_H
#define LAZYMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(LMM_PUBLIC)
#define LMM_PUBLIC __attribute__((visibility("default")))
#elif !defined(LMM_PUBLIC)
#define LMM_PUBLIC
#endif

/*
 * Versions. lazymm_version.h (generated from meson.build) defines
 * LAZYMM_VERSION_MAJOR, _MINOR, _PATCH and LAZYMM_VERSION_STRING ("0.2.0").
 * LAZYMM_VERSION_ENCODE makes one comparable number of a version (minor and
 * patch below 256); LAZYMM_CHECK_VERSION(0, 2, 0) is true, also in #if,
 * when this header is 0.2.0 or newer; lmm_version() is the version of the
 * library actually loaded, LAZYMM_VERSION_ENCODE'd. Before 1.0 a minor
 * release may change the ABI; lazymm(7) says how structs grow.
 */
#include "lazymm_version.h"
#define LAZYMM_VERSION_ENCODE(maj, min, patch) (((maj) << 16) | ((min) << 8) | (patch))
#define LAZYMM_VERSION \
	LAZYMM_VERSION_ENCODE(LAZYMM_VERSION_MAJOR, LAZYMM_VERSION_MINOR, LAZYMM_VERSION_PATCH)
#define LAZYMM_CHECK_VERSION(maj, min, patch) (LAZYMM_VERSION >= LAZYMM_VERSION_ENCODE(maj, min, patch))
LMM_PUBLIC unsigned lmm_version(void);

enum lmm_scheme {
	LMM_SCHEME_REFCOUNT = 1,
	LMM_SCHEME_SHOOTDOWN,
	LMM_SCHEME_HAZARD,
	LMM_SCHEME_RCU,
};

struct lmm_domain; /* opaque: one scheduler's workers + one scheme */
struct lmm_worker; /* opaque: a thread that runs tasks (a "CPU") */

/*
 * A context. Its size is public so that it can be embedded in the
 * application's own structure (recover that with offsetof in the hooks);
 * its contents are private to the library.
 */
#define LMM_CTX_SIZE 128
struct lmm_ctx {
	union {
		void *align_ptr;
		unsigned long long align_ull;
		unsigned char bytes[LMM_CTX_SIZE];
	} lmm_private;
};

/* switch_ctx's flags. */
#define LMM_SWITCH_SIGNAL 0x1u /* inside the domain's signal handler: async-signal-safe only; next is init */

/* The application's hooks. All three are required. */
struct lmm_ops {
	/*
	 * Install @next on the calling worker @w, replacing @prev (the one
	 * installed until now). Never NULL, never equal. Runs on @w's thread.
	 * Under the shootdown and rcu schemes a switch towards the init context may run
	 * inside the domain's signal handler: it must then be async-signal-safe.
	 * The handler runs on the worker's sigaltstack if it has one
	 * (SA_ONSTACK); the library's own frames there take under 1 KiB.
	 * @flags: LMM_SWITCH_SIGNAL when it runs in the handler (then @next
	 * is init): a runtime may keep heavy work out of that path, for
	 * instance by only marking the worker and finishing the unload at
	 * its next switch. (0.2: the @flags argument is new.) It must not
	 * call lmm_switch or lmm_unlazy (they abort, naming the call, when
	 * they would install), lmm_idle_enter, lmm_idle_exit, lmm_quiescent or
	 * lmm_worker_offline (they abort, naming the call), nor
	 * lmm_worker_online or lmm_barrier (undefined).
	 */
	void (*switch_ctx)(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next,
			   unsigned flags);
	/* Users reached 0 (exit_mmap): runs once, on the thread that dropped it. */
	void (*teardown)(struct lmm_ctx *ctx);
	/*
	 * The count reached 0 and no worker has @ctx installed (__mmdrop). Runs
	 * once, after teardown, never in a signal handler, never under a lock of
	 * the library. May call lmm_drop/lmm_put on other contexts.
	 */
	void (*free)(struct lmm_ctx *ctx);
};

#define LMM_F_DEFER_FREE 0x1u /* run free() on a library thread, never inside the caller */
#define LMM_F_DEBUG 0x2u      /* verify every free, check every call's caller; abort on misuse */
/*
 * Create no library thread: the runtime calls lmm_poll() from a thread of
 * its own to do their work (deferred frees, shootdown retries). Not for
 * rcu, whose grace periods need liburcu's call_rcu thread (-EINVAL).
 */
#define LMM_F_NO_THREADS 0x4u

/*
 * Creates one library thread in the runtime's way (name, affinity,
 * scheduling policy, signal mask): cfg.thread_create. Returns 0 or an
 * errno value, as pthread_create. @name: "lmm-reclaim", the one library
 * thread of a domain. @user: cfg.thread_user. Runs on the caller's thread
 * with no lock of the library held: inside lmm_domain_create (with
 * LMM_F_DEFER_FREE, and under rcu; a failure fails the call) or else,
 * under shootdown, inside the lmm_put or lmm_drop whose final drop first
 * hands a context to the reclaim thread (a failure there is not reported:
 * that caller goes on signalling and waiting for the holders itself, or,
 * if it holds the context itself (a drop from switch_ctx), leaves it
 * queued and returns; the next hand-off tries again, and lmm_barrier does
 * the thread's pass while no thread exists).
 */
typedef int (*lmm_thread_create_fn)(pthread_t *thread, void *(*start)(void *), void *arg,
				    const char *name, void *user);

#define LMM_DEFAULT_MAX_WORKERS 256u /* cfg.max_workers == 0 */
#define LMM_MAX_WORKERS 65536u      /* the largest cfg.max_workers accepted */

struct lmm_config {
	enum lmm_scheme scheme;
	const struct lmm_ops *ops;
	unsigned max_workers; /* 0: LMM_DEFAULT_MAX_WORKERS */
	unsigned flags;       /* LMM_F_* */
	/*
	 * Signal used by schemes that need one; 0: lmm_default_signo(). Only
	 * SIGUSR1, SIGUSR2 or SIGRTMIN..SIGRTMAX (-EINVAL otherwise).
	 */
	int signo;
	unsigned timeout_ms;  /* how long lmm_barrier waits before -ETIMEDOUT; 0: 10000 */
	/*
	 * rcu: how long a grace period waits before the workers that have not
	 * reported a quiescent state are nudged (signalled), in ms; 0: 20.
	 * 1..100000; the environment variable LMM_RCU_NUDGE_MS overrides it,
	 * with the same range (-EINVAL outside it).
	 */
	unsigned rcu_nudge_ms;
	/*
	 * rcu: frees waiting for a grace period beyond which a final drop
	 * waits (at most timeout_ms) before queueing more; 0: 4096. 1..2^30;
	 * LMM_RCU_BACKLOG_MAX overrides it, with the same range.
	 */
	unsigned rcu_backlog_max;
	/* NULL: pthread_create, then pthread_setname_np with the name. */
	lmm_thread_create_fn thread_create;
	void *thread_user;
	/*
	 * Room for later fields, eight words; every one must be zero
	 * (lmm_domain_create: -EINVAL otherwise), as any designated or
	 * = { 0 } initialiser leaves them. A later field takes a word's place
	 * and keeps today's behaviour when zero, so a caller built against
	 * this header runs unchanged on a newer library.
	 */
	uint64_t reserved[8];
};

/*
 * Counters. Core counters are kept per worker (no shared write on the fast
 * path) and summed here; scheme counters are zero for schemes that do not use
 * them. A snapshot, not an atomic cut across workers. Later versions add
 * fields at the end only: lmm_stats() passes the caller's sizeof, and the
 * library fills that much (an older caller's struct is filled up to its
 * end, a newer caller's fields this library does not know are zeroed).
 */
struct lmm_stats {
	/* core */
	/*
	 * lmm_switch calls that began a lazy hold, ended one with a lazy hit or
	 * installed a context: lazy_enters + lazy_hits + installs - unlazies.
	 * A call that changes nothing, or only moves between init and a
	 * context-less task, is not counted (that would be a write on the
	 * fast path).
	 */
	uint64_t switches;
	uint64_t lazy_enters;  /* lmm_switch(w, NULL) from a context: a lazy hold began */
	uint64_t lazy_hits;    /* switched back to the lazily held context: nothing installed */
	uint64_t installs;     /* switch_ctx calls, including unlazy and offline */
	uint64_t unlazies;     /* lazy holds ended by lmm_unlazy, idle or offline */
	uint64_t teardowns;    /* teardown calls */
	uint64_t frees;        /* free calls */
	uint64_t frees_deferred; /* of which ran on the library thread */
	uint64_t frees_pending;  /* contexts whose count is 0 but whose free has not run */
	uint64_t contexts_live;  /* initialised and not yet freed */
	uint64_t workers_online;
	/* hazard */
	uint64_t conversions;    /* last users that scanned for hazards */
	uint64_t slots_scanned;  /* lazy slots read by those scans */
	uint64_t hazards_converted; /* references handed over through drop slots */
	/* shootdown (and rcu nudges) */
	uint64_t signals_sent;
	uint64_t signals_avoided_published; /* (a) worker no longer had it: bit cleared, no signal */
	uint64_t signals_avoided_selfclear; /* (b) worker cleared its own bit when leaving a dead context */
	uint64_t signals_avoided_batched;   /* (c) one signal served several dying contexts */
	uint64_t shootdowns;        /* contexts that needed a shootdown round */
	uint64_t reclaim_handoffs;  /* contexts handed to the reclaim thread after a bounded wait */
	uint64_t signals_unanswered; /* of signals_sent: again to a holder whose last one went unhandled for long */
	/* rcu */
	uint64_t grace_periods;
	uint64_t rcu_backlog;       /* frees waiting for a grace period now */
	uint64_t rcu_backlog_max;
	uint64_t rcu_stalls;        /* grace periods that waited past the nudge delay */
	uint64_t rcu_nudges;        /* signals sent to stalled workers */
};

/* --- domains --- */

/*
 * Create a domain. -EINVAL for a bad config (an unusable signo included),
 * -EPROTONOSUPPORT for a scheme not built in, -ENOTRECOVERABLE for rcu in
 * a child of a process that had an rcu domain or was creating one (fork, above).
 */
LMM_PUBLIC int lmm_domain_create(const struct lmm_config *cfg, struct lmm_domain **out);
/* Destroy it. -EBUSY while workers are online, contexts live or frees pending. */
LMM_PUBLIC int lmm_domain_destroy(struct lmm_domain *d);
/* The domain's init context (init_mm): what workers start on; never freed. */
LMM_PUBLIC struct lmm_ctx *lmm_init_ctx(struct lmm_domain *d);
/*
 * Return once every free already due (count reached 0 before the call) has
 * run. -EDEADLK from inside free; -ETIMEDOUT if a worker never lets a free
 * through (a scheme that must wait for workers gives up after a bound).
 */
/*
 * Hooks: rcu: switch_ctx (a worker caller's lazy hold settled);
 * LMM_F_NO_THREADS, or no lmm-reclaim thread could be started: free.
 */
LMM_PUBLIC int lmm_barrier(struct lmm_domain *d);
/*
 * LMM_F_NO_THREADS: one pass of what the lmm-reclaim thread would do
 * (deferred frees run here, on the caller's thread; shootdowns handed over
 * after their bounded wait are signalled again and released). 0 when
 * nothing is left waiting, -EAGAIN while work remains (call again later),
 * -EINVAL for a domain with threads, -EDEADLK from inside free. Never
 * waits for other threads. Not a cancellation point.
 */
/* Hooks: LMM_F_NO_THREADS: free. */
LMM_PUBLIC int lmm_poll(struct lmm_domain *d);
/*
 * Fill the first @size bytes of @out with the domain's counters (zero past
 * what this library knows). -EINVAL for a NULL argument or a @size that is
 * 0 or not a multiple of 8. lmm_stats(d, out) passes sizeof(*out).
 */
LMM_PUBLIC int lmm_stats_get(struct lmm_domain *d, struct lmm_stats *out, size_t size);
#define lmm_stats(d, out) lmm_stats_get((d), (out), sizeof(*(out)))
/* The domain's scheme. */
LMM_PUBLIC enum lmm_scheme lmm_domain_scheme(const struct lmm_domain *d);
/*
 * The signal number the domain uses (cfg.signo, or lmm_default_signo()),
 * whether or not its scheme sends any: a runtime's own kick handler blocks
 * it in its sa_mask. Async-signal-safe.
 */
LMM_PUBLIC int lmm_domain_signo(const struct lmm_domain *d);

/* --- workers --- */

/*
 * The calling thread joins @d as a worker with the init context installed.
 * -EEXIST if it already is a worker (of any domain), -ENOSPC if max_workers
 * are online, -EDEADLK if the thread blocks the domain's signal (shootdown,
 * rcu, and every scheme in the lmm_membarrier fallback). A worker that
 * blocks it later is safe but slow: nothing is freed early, but the frees
 * and lmm_membarrier calls that need it wait until it unblocks, switches
 * away or goes offline (lmm_barrier may then return -ETIMEDOUT). Except
 * under rcu, when it holds the context by a counted lazy reference (asleep
 * in the idle bracket, or nudged while lazy): the last lmm_put gives up
 * on it after 100 ms, the count has not reached 0, so no free is due:
 * frees_pending shows 0 and lmm_barrier returns 0 while the context lives
 * on until the worker runs again. A thread that exits while online is
 * taken offline.
 */
LMM_PUBLIC int lmm_worker_online(struct lmm_domain *d, void *data, struct lmm_worker **out);
/*
 * The calling thread leaves (hotplug). -EBUSY while a context is current;
 * otherwise it switches to init and drops its lazy hold before it stops being
 * visible to the scheme. -EPERM from a thread that is not @w. From
 * switch_ctx it aborts, naming the call.
 */
/* Hooks: switch_ctx (to init); refcount, hazard: free. So does a thread's exit while online. */
LMM_PUBLIC int lmm_worker_offline(struct lmm_worker *w);
/* The data pointer given to lmm_worker_online. Async-signal-safe, as are the id, self, active and current getters. */
LMM_PUBLIC void *lmm_worker_data(const struct lmm_worker *w);
/* A small integer, unique among the domain's online workers; reused after offline. */
LMM_PUBLIC unsigned lmm_worker_id(const struct lmm_worker *w);
/* The calling thread's worker, or NULL. A migrating green task re-reads it after every yield. */
LMM_PUBLIC struct lmm_worker *lmm_worker_self(void);
/*
 * Bracket every sleep of the worker's idle loop. Cheap no-ops for schemes
 * that need nothing. Between the two, no lmm_switch (under rcu the worker
 * is then RCU-offline: a context it switched to could be freed while
 * installed); lmm_unlazy and lmm_worker_offline are allowed. A switch
 * inside the bracket, a nested lmm_idle_enter, an lmm_idle_exit without
 * one, or either called from switch_ctx abort, naming the call, under
 * every scheme.
 */
/* Hooks, both: rcu: switch_ctx (to init, leaving a context that is going away). */
LMM_PUBLIC void lmm_idle_enter(struct lmm_worker *w);
LMM_PUBLIC void lmm_idle_exit(struct lmm_worker *w);

/* --- contexts --- */

/*
 * Initialise @ctx in @d with users = 1, count = 1. -ENOMEM, -EINVAL, or
 * -EBUSY if @ctx is a live context (memory given back through the free
 * hook is never live: free clears the library's mark).
 */
LMM_PUBLIC int lmm_ctx_init(struct lmm_domain *d, struct lmm_ctx *ctx);
/* The domain @ctx belongs to. */
LMM_PUBLIC struct lmm_domain *lmm_ctx_domain(const struct lmm_ctx *ctx);
/*
 * Users (mmget/mmput). The last put runs teardown, then drops the users'
 * count reference. A task leaving for good switches away first
 * (lmm_switch(w, NULL), the kernel's exit_mm), then puts.
 */
LMM_PUBLIC void lmm_get(struct lmm_ctx *ctx);
/* Take a users reference unless users already reached 0 (mmget_not_zero). */
LMM_PUBLIC bool lmm_get_not_zero(struct lmm_ctx *ctx);
/*
 * Hooks: teardown (the last put, on this thread); refcount, hazard: free;
 * shootdown: switch_ctx and free when the caller is a worker lazy on ctx;
 * rcu: switch_ctx (a counted hold of the caller's left), free later on the
 * lmm-reclaim thread.
 */
LMM_PUBLIC void lmm_put(struct lmm_ctx *ctx);
/* Count (mmgrab/mmdrop). The last drop frees once no worker has it installed. */
LMM_PUBLIC void lmm_grab(struct lmm_ctx *ctx);
/*
 * Hooks: refcount, hazard: free; shootdown: switch_ctx and free when the
 * caller is lazy on ctx; rcu: switch_ctx in backpressure, free later.
 */
LMM_PUBLIC void lmm_drop(struct lmm_ctx *ctx);

/* --- the switch path; only the worker's own thread calls these --- */

/*
 * Make @next the context of the task @w runs (the caller holds a users or
 * count reference on it while it is current: a task that may go on running
 * on another worker, which may drop that reference, must be switched away
 * from first, lmm_switch(w, NULL)). NULL: a context-less task; the
 * active context stays installed lazily. Switching to the installed context
 * (the lazy hit) calls nothing. From a context-less task, lmm_switch(w, ctx)
 * ... lmm_switch(w, NULL) adopts ctx for a while (kthread_use_mm); take a
 * users reference first (lmm_get_not_zero if you hold only a count one).
 * A context of another domain, or one that is not live, aborts. Not from
 * a hook (switch_ctx, teardown, free), nor from a signal handler: from
 * switch_ctx it aborts wherever it would install; elsewhere undefined.
 */
/* Hooks: switch_ctx; refcount, hazard: free of the context it leaves. */
LMM_PUBLIC void lmm_switch(struct lmm_worker *w, struct lmm_ctx *next);
/*
 * A lazy worker switches to init now and drops its lazy hold. No-op
 * otherwise. Hooks: switch_ctx; refcount, hazard: free of that context.
 */
LMM_PUBLIC void lmm_unlazy(struct lmm_worker *w);
/*
 * rcu: the calling worker @w reports a quiescent state, from the runtime's
 * own loop (after each KVM_RUN exit, each event-loop turn). Grace periods
 * span all rcu domains of the process, and each domain's nudge round skips
 * a worker that reported within that domain's cfg.rcu_nudge_ms: one that
 * reports more often than the smallest rcu_nudge_ms of the process's rcu
 * domains is never signalled for a grace period; the nudge stays the
 * fallback for workers that do not report. A lazy hold is settled (counted) first. Allowed in
 * the idle bracket, where it does nothing; a no-op for the other schemes.
 * Only @w's own thread; from switch_ctx it aborts, naming the call.
 */
/* Hooks: rcu: switch_ctx (to init, as lmm_idle_enter). */
LMM_PUBLIC void lmm_quiescent(struct lmm_worker *w);
/*
 * The installed context: init, never NULL, while online. On the worker's
 * own thread exact while a context is current; while it is lazy, the
 * domain's signal handler (shootdown, rcu) may move it to init at any time.
 */
LMM_PUBLIC struct lmm_ctx *lmm_active(const struct lmm_worker *w);
/* The context of the running task, or NULL. */
LMM_PUBLIC struct lmm_ctx *lmm_current(const struct lmm_worker *w);

/* --- per-context memory barrier --- */

/*
 * Make every worker that runs a task of @ctx execute a full memory barrier:
 * on return, each worker whose current context was @ctx when the call began
 * has executed one, and a worker that makes @ctx current later sees every
 * write the caller made before the call. Workers that hold @ctx only lazily
 * are skipped: a context-less task runs no code of @ctx. Code of @ctx's tasks
 * can therefore pair a compiler barrier (atomic_signal_fence) with this call
 * where it would otherwise need a full fence on every access.
 *
 * Uses membarrier(2) PRIVATE_EXPEDITED where the kernel has it (every running
 * thread of the process then gets the barrier); otherwise it signals exactly
 * the workers running @ctx with the domain's signal and waits for each
 * handler. Blocks; never call it from switch_ctx, teardown or free. The
 * caller holds a reference on @ctx. -EINVAL for a bad @ctx; -ETIMEDOUT if a
 * worker did not take the signal within the domain's timeout_ms (it blocks
 * the signal); another negative errno if membarrier(2) failed.
 */
LMM_PUBLIC int lmm_membarrier(struct lmm_ctx *ctx);

/* --- schemes --- */

/* "refcount", "shootdown", "hazard", "rcu"; NULL for an unknown value. */
LMM_PUBLIC const char *lmm_scheme_name(enum lmm_scheme s);
/* Parse one of those names. -EINVAL if unknown. */
LMM_PUBLIC int lmm_scheme_parse(const char *name, enum lmm_scheme *out);
/* Whether @s is built into this library. */
LMM_PUBLIC bool lmm_scheme_available(enum lmm_scheme s);
/*
 * The signal a domain uses when cfg.signo is 0 (shootdown, rcu, and the
 * lmm_membarrier fallback). Worker threads should not block it (see
 * lmm_worker_online). When the last domain using a number is destroyed,
 * instances still pending are discarded before the previous action is
 * restored: none can kill the process later. On a worker thread the
 * library's handler takes every instance of the number (it does not chain
 * to a handler the application installed for it): a VMM's own kick signal
 * must be another number.
 */
LMM_PUBLIC int lmm_default_signo(void);

/* --- LMM_INLINE: lmm_switch's lazy fast path inline in the caller --- */

/*
 * Opt-in, as liburcu's _LGPL_SOURCE: with
 *
 *   #define LMM_INLINE
 *   #include <lazymm.h>
 *
 * lmm_switch(w, ctx) is a macro whose lazy hit (back to the lazily held
 * context) and going lazy (lmm_switch(w, NULL)) run inline in the caller;
 * every other switch calls the library's lmm_switch ((lmm_switch)(w, ctx)
 * always does). One test of the worker's own state decides: its inline
 * kind, a byte the library sets to the scheme (shootdown, hazard, rcu)
 * while the worker may take the inline path, and to 0, "always call the
 * library", for refcount, LMM_F_DEBUG, the lmm_membarrier fallback
 * (no membarrier(2)) and inside the idle bracket.
 *
 * What the inline path does not check: that the caller is @w's thread
 * (lmm_switch's owner check), nor a switch from a hook or inside the idle
 * bracket (the latter it leaves to the library: inside it the inline kind
 * is 0). A program gets those checks by LMM_F_DEBUG, whose workers always
 * take the library's path.
 *
 * ABI: the declarations below (struct lmm_inline_worker, the first words of
 * a worker, and struct lmm_inline_ctx, the first word of a context, with
 * the lmm__inline_* functions and constants) are the layout the library
 * shares with inline callers; the library checks at build time that its own
 * objects have exactly these offsets. They are ABI for inline callers only,
 * versioned by LMM_INLINE_ABI: a program built inline references the data
 * symbol lmm__inline_abi_<LMM_INLINE_ABI> at load time, so a library of
 * another layout, which lacks that symbol, is refused by the loader
 * ("undefined symbol") before the program runs. Without LMM_INLINE none of
 * this is declared. C only (it uses <stdatomic.h>).
 */
#define LMM_INLINE_ABI_VERSION 1
#if defined(LMM_INLINE) || defined(LMM_INLINE_LAYOUT)
#ifdef __cplusplus
#error "LMM_INLINE needs C11's <stdatomic.h>: not for C++"
#endif
#include <stdatomic.h>

#ifdef LMM_INLINE_ABI_TEST
#define LMM_INLINE_ABI LMM_INLINE_ABI_TEST /* tests/meson.build only: a program of another layout */
#else
#define LMM_INLINE_ABI LMM_INLINE_ABI_VERSION
#endif
#define LMM_INLINE_CAT_(a, b) a##b
#define LMM_INLINE_CAT(a, b) LMM_INLINE_CAT_(a, b)
/* The layout's symbol: lmm__inline_abi_1 (lib/lazymm.map). */
#define LMM_INLINE_ABI_SYMBOL LMM_INLINE_CAT(lmm__inline_abi_, LMM_INLINE_ABI)
/* Exported for inline callers only, without a man page of its own (lmm_switch(3)). */
#define LMM_INLINE_EXPORT LMM_PUBLIC

/* The hazard scheme's two hot words (docs/hazard.md has the protocol). */
struct lmm_inline_hazard {
	/*
	 * The lazily held context: ctx (a hazard, uncounted), or ctx |
	 * LMM_INLINE_HAZARD_OWNED (the worker holds a count reference of its
	 * own: it went lazy on a context whose users were already 0). Written
	 * only by the owner.
	 */
	_Atomic(uintptr_t) lazy;
	/*
	 * A count reference the worker must drop when its lazy period ends,
	 * or a closed mark while the worker is offline. Changed only by atomic
	 * read-modify-writes (owner and converters).
	 */
	_Atomic(uintptr_t) drop;
};
#define LMM_INLINE_HAZARD_OWNED ((uintptr_t)1)

/* The rcu scheme's two hot words: what its lazy hit reads. */
struct lmm_inline_rcu {
	/*
	 * The worker's RCU state (rcu.c's RS_*). Written by the worker inside
	 * critical sections and by its own nudge handler; other threads only
	 * read it (hints).
	 */
	_Atomic(uintptr_t) state;
	/* Non-zero while a grace period waits (written by reclaim threads). */
	_Atomic(uintptr_t) gp_waiting;
};
#define LMM_INLINE_RCU_COUNTED ((uintptr_t)1) /* in state: the lazy hold is a counted reference */

/* The first words of a struct lmm_worker, as the library lays them out. */
struct lmm_inline_worker {
	/* Installed context: written by the owner (release after switch_ctx). */
	_Atomic(struct lmm_ctx *) active;
	/* Context of the running task, or NULL. Written by the owner only. */
	_Atomic(struct lmm_ctx *) current;
	struct lmm_ctx *init;
	/* The one test: the scheme (enum lmm_scheme) whose inline path w takes; 0: call lmm_switch. */
	unsigned char kind;
	/* The library's own flags: not for inline callers (spelled out so that 32-bit layouts agree too). */
	unsigned char lib_flags[7];
	union {
		struct lmm_inline_hazard hazard;
		struct lmm_inline_rcu rcu;
	} hot;
	/* lmm_stats' lazy_enters: the owner's relaxed load + store. */
	_Atomic(uint_least64_t) lazy_enters;
};

/* The first word of a struct lmm_ctx, as the library lays it out. */
struct lmm_inline_ctx {
	atomic_long users;
};

/* Present in a library of this layout only: the loader refuses the others. */
LMM_INLINE_EXPORT extern const unsigned char LMM_INLINE_ABI_SYMBOL;
/* The rare halves, out of line: hazard's counted hold; hazard's drop slot, rcu's flags. */
LMM_INLINE_EXPORT void lmm__inline_enter_slow(struct lmm_worker *w, struct lmm_ctx *ctx);
LMM_INLINE_EXPORT void lmm__inline_resume_slow(struct lmm_worker *w, struct lmm_ctx *ctx, uintptr_t lazy);

/*
 * The pieces the library's fast copies (lib/scheme/NAME.h) and the inline
 * path share. The fences between them are the caller's: see each use.
 */
static inline __attribute__((always_inline)) struct lmm_inline_worker *lmm__inline_worker(struct lmm_worker *w)
{
	return (struct lmm_inline_worker *)(void *)w;
}

/* The owner's counter: no RMW needed; relaxed for the lmm_stats reader. */
static inline __attribute__((always_inline)) void lmm__inline_count(_Atomic(uint_least64_t) *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* hazard, going lazy: publish the hazard. */
static inline __attribute__((always_inline)) void lmm__inline_hazard_publish(struct lmm_inline_hazard *h,
									  struct lmm_ctx *ctx)
{
	/*
	 * Release: a converter that reads this store (or a later one) with
	 * acquire also sees everything before it, including the release store
	 * that ended our previous lazy period (see hazard.c's hand_over;
	 * litmus: hazard-steal). Free on x86-64; no fence.
	 */
	atomic_store_explicit(&h->lazy, (uintptr_t)ctx, memory_order_release);
}

/* hazard, going lazy, after the store->load fence: whether users are gone (the counted hold). */
static inline __attribute__((always_inline)) bool lmm__inline_users_gone(struct lmm_ctx *ctx)
{
	/* Relaxed: the caller's fence pair is the ordering (litmus: hazard-publish). */
	return atomic_load_explicit(&((struct lmm_inline_ctx *)(void *)ctx)->users, memory_order_relaxed) <= 0;
}

/* hazard, the lazy hit: empty the slot; returns what it held. */
static inline __attribute__((always_inline)) uintptr_t lmm__inline_hazard_clear(struct lmm_inline_hazard *h)
{
	/* Relaxed: our own word. */
	uintptr_t lazy = atomic_load_explicit(&h->lazy, memory_order_relaxed);
	/*
	 * Relaxed: the task that resumes ctx holds a reference of its own
	 * until after its last use here, and its drop is a release; a converter
	 * that sees the slot empty needs nothing more from us.
	 */
	atomic_store_explicit(&h->lazy, 0, memory_order_relaxed);
	return lazy;
}

/* hazard, the lazy hit, after the store->load fence: the hold was counted, or a reference waits. */
static inline __attribute__((always_inline)) bool lmm__inline_hazard_pending(struct lmm_inline_hazard *h,
									  uintptr_t lazy)
{
	/* Relaxed peek at our own word: the slow half's exchange is what counts. */
	return (lazy & LMM_INLINE_HAZARD_OWNED) | atomic_load_explicit(&h->drop, memory_order_relaxed);
}

/* rcu, the lazy hit: the hold was counted, or a grace period waits. */
static inline __attribute__((always_inline)) bool lmm__inline_rcu_pending(struct lmm_inline_rcu *r)
{
	/*
	 * Relaxed: our own state, and a hint written by reclaim threads
	 * (liburcu's protocol orders the report itself). The nudge handler sets
	 * the counted bit only while we are lazy, and current is already ctx: no
	 * handler changes the state after these loads, so the slow half, which
	 * takes the critical section, finds what we saw. (litmus: rcu-qs-flag)
	 */
	return (atomic_load_explicit(&r->state, memory_order_relaxed) & LMM_INLINE_RCU_COUNTED) |
	       atomic_load_explicit(&r->gp_waiting, memory_order_relaxed);
}
#endif /* LMM_INLINE || LMM_INLINE_LAYOUT */

#ifdef LMM_INLINE
/*
 * The library's "used" reference to this layout's symbol: a relocation the
 * loader resolves when the program starts, against the library it finds.
 */
static const unsigned char *const lmm__inline_abi_ref __attribute__((used)) = &LMM_INLINE_ABI_SYMBOL;

/*
 * lmm_switch, inline: the library's fast copy (lib/switch.c, switch_body
 * with careful false: a worker whose inline kind is not 0 has neither
 * LMM_F_DEBUG nor the membarrier fallback) for the lazy hit and going lazy,
 * in the same order with the same orderings; every other case calls the
 * library. Both run outside the library's critical section, as the fast
 * copies do (switch.c's switch_body says why that is safe against the
 * domain's signal handler).
 */
static inline __attribute__((always_inline)) void lmm__switch_inline(struct lmm_worker *w, struct lmm_ctx *next)
{
	struct lmm_inline_worker *iw = lmm__inline_worker(w);
	/* The one test. Owner-only byte (set at online and by the idle bracket). */
	unsigned kind = iw->kind;

	if (__builtin_expect(kind != 0, 1)) {
		/* Relaxed: only this thread writes current. */
		struct lmm_ctx *cur = atomic_load_explicit(&iw->current, memory_order_relaxed);
		if (!next) {
			if (!cur)
				return;
			/* Going lazy. Relaxed: lmm_membarrier's argument is in docs/design.md. */
			atomic_store_explicit(&iw->current, NULL, memory_order_relaxed);
			if (cur == iw->init)
				return;
			lmm__inline_count(&iw->lazy_enters);
			if (kind == LMM_SCHEME_HAZARD) {
				lmm__inline_hazard_publish(&iw->hot.hazard, cur);
				/*
				 * Store->load: the hazard above before the users load below.
				 * Pairs with lmm_plat_heavy_fence (membarrier) in hazard's
				 * users_zero, which comes after the last user's decrement and
				 * before its scan: either we see users == 0 here, or the scan
				 * sees our hazard. Compiler barrier only (litmus: hazard-publish).
				 */
				atomic_signal_fence(memory_order_seq_cst);
				if (__builtin_expect(lmm__inline_users_gone(cur), 0))
					lmm__inline_enter_slow(w, cur);
			}
			return;
		}
		/* Relaxed: own state; a handler cannot move active off a context we hold. */
		if (!cur && next == atomic_load_explicit(&iw->active, memory_order_relaxed)) {
			/* The lazy hit. Relaxed: lmm_membarrier's argument is in docs/design.md. */
			atomic_store_explicit(&iw->current, next, memory_order_relaxed);
			if (kind == LMM_SCHEME_HAZARD) {
				/* Pairs with a signal handler on this thread: it sees us running next. */
				atomic_signal_fence(memory_order_seq_cst);
				uintptr_t lazy = lmm__inline_hazard_clear(&iw->hot.hazard);
				/*
				 * Store->load: the slot cleared above before the peek at the drop
				 * slot below. Pairs with the heavy fence (membarrier) before
				 * hazard's reclaim_stale: either we see a late hand-off and drop
				 * it, or the converter sees us gone and takes it back. Compiler
				 * barrier only (litmus: hazard-late-handoff).
				 */
				atomic_signal_fence(memory_order_seq_cst);
				if (__builtin_expect(lmm__inline_hazard_pending(&iw->hot.hazard, lazy), 0))
					lmm__inline_resume_slow(w, next, lazy);
			} else if (kind == LMM_SCHEME_RCU) {
				/*
				 * Pairs with a signal handler on this thread: from here on it sees
				 * us running next, not lazy on it, and leaves the lazy state alone.
				 */
				atomic_signal_fence(memory_order_seq_cst);
				if (__builtin_expect(lmm__inline_rcu_pending(&iw->hot.rcu), 0))
					lmm__inline_resume_slow(w, next, 0);
			}
			return;
		}
	}
	lmm_switch(w, next);
}
/* (lmm_switch)(w, next) still calls the library. */
#define lmm_switch(w, next) lmm__switch_inline((w), (next))
#endif /* LMM_INLINE */

#ifdef __cplusplus
}
#endif
#endif /* LAZYMM_H */

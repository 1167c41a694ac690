/* SPDX-License-Identifier: MIT */
/*
 * lmm-bench's internal interface, shared by its units:
 *
 *   driver.c        main: options, the list of implementations, the run loop
 *   scenarios.c     each scenario: its threads and what it measures, driving
 *                   any implementation through struct impl_ops
 *   report.c        the results: tables, ratios, CSV, plots
 *   impl_lazymm.c   lazymm's schemes, through <lazymm.h> alone
 *   impl_floor.c    the floor: two thread-local stores through a call per switch, one per idle enter and exit
 *   impl_peer.c     the peers' generic switch, and atomic-refcount
 *   peer_*.c        the peers built on other libraries, one file per library
 *                   (liburcu's qsbr and memb flavours map the same names)
 *   greenthreads.c  pingpong's M:N green-thread scheduler
 *   loops.h         the timed loops, compiled into each implementation unit
 *
 * No unit includes anything from lib/: the benchmark sees lazymm as its
 * users do.
 */
#ifndef LMM_BENCH_H
#define LMM_BENCH_H

#include <lazymm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A real call, as to a function in another file: gcc may otherwise clone a
 * noinline function per constant argument or drop unused parameters.
 */
#if defined(__GNUC__) && !defined(__clang__)
#define BENCH_CALL __attribute__((noipa))
#else
#define BENCH_CALL __attribute__((noinline))
#endif

/*
 * A context as every implementation sees it. lazymm uses the embedded
 * lmm_ctx; atomic-refcount uses count; a peer keeps its own per-context
 * state (rcu_head, ck entries) in the trailing area, sized by its ctx_bytes.
 */
struct bctx {
	struct lmm_ctx lmm; /* first: the lazymm hooks recover the bctx from it */
	atomic_long count;
	_Alignas(16) unsigned char peer[];
};

/* One worker thread of one measurement, whatever the implementation. */
struct bthread {
	/* Peers: the lazy state a lazymm worker keeps in its hot block. */
	struct bctx *active, *current;
	const struct peer_ops *peer;
	void *peer_record; /* the peer's per-thread record (ck_hp / ck_epoch) */
	bool is_driver;    /* the main thread: only retires and waits */
	struct lmm_worker *w;
	unsigned index;
};

/*
 * A peer keeps a context alive across the lazy window with someone else's
 * primitive. The generic switch (peer_switch in impl_peer.c) follows
 * lazymm's switch state machine and calls these where a scheme's hooks run.
 */
struct peer_ops {
	const char *name;
	/* Once per process. Returns NULL when usable, else why not. */
	const char *(*init)(void);
	void (*thread_enter)(struct bthread *t);
	void (*thread_exit)(struct bthread *t);
	void (*lazy_enter)(struct bthread *t, struct bctx *c);
	void (*lazy_resume)(struct bthread *t, struct bctx *c);
	void (*lazy_release)(struct bthread *t, struct bctx *c);
	/*
	 * True when the window cannot stay open across a sleep (a read-side
	 * section or epoch section would stall every grace period): the idle
	 * path then switches to the init context before sleeping.
	 */
	bool idle_unlazy;
	void (*idle_enter)(struct bthread *t); /* optional */
	void (*idle_exit)(struct bthread *t);  /* optional */
	/* The owner's reference is gone: free c once no window covers it. */
	void (*retire)(struct bthread *driver, struct bctx *c);
	/* Wait for every free already retired (as far as the primitive can). */
	void (*barrier)(struct bthread *driver);
	size_t ctx_bytes;    /* per-context state, sizeof */
	size_t worker_bytes; /* per-thread record, sizeof */
};

extern const struct peer_ops peer_atomic_refcount, peer_urcu_qsbr, peer_urcu_memb, peer_ck_hp,
	peer_ck_epoch;

/* The owner's application frees a context (scenarios.c; final-drop watches it). */
void bench_ctx_free(struct bctx *c);

/*
 * The application's install of a context's page tables, as a real call
 * that keeps its arguments: what the lazy hit avoids. One copy in each
 * unit that installs.
 */
BENCH_CALL __attribute__((unused)) static void bench_switch_ctx(struct bctx *prev, struct bctx *next)
{
	__asm__ volatile("" : : "r"(prev), "r"(next) : "memory");
}

/* ------------------------------------------------------------------ */
/* implementations */

enum scenario_id { SC_ROUNDTRIP, SC_CROSS, SC_FINAL_DROP, SC_MEMORY, SC_PINGPONG, SC_IDLE_CYCLE, SC_NR };
/* The timed scenarios' loops, in struct impl_ops. */
enum loop_id { LOOP_ROUNDTRIP, LOOP_CROSS, LOOP_PINGPONG, LOOP_IDLE_CYCLE, LOOP_NR };

enum kind { K_LMM, K_FLOOR, K_PEER };

struct impl;

/* One measurement's state: a lazymm domain, a peer's driver record, or nothing. */
struct run {
	const struct impl *im;
	struct lmm_domain *d;
	struct bthread driver;
};

/* A timed scenario's shared state (scenarios.c), read by the loops. */
struct timed {
	struct run *r;
	unsigned nworkers;
	int scenario;
	struct bctx *a, *b;
	pthread_barrier_t start;
	atomic_bool stop;
	/* per worker results */
	uint64_t *ops, *cpu_ns;
};

/*
 * What the scenarios ask of an implementation. Every operation but the
 * loops may exit the process on failure with a message; optional ones are
 * NULL. The loops run with the implementation's switch inline (loops.h).
 */
struct impl_ops {
	void (*open)(struct run *r, unsigned max_workers); /* 0: the default */
	void (*close)(struct run *r);                      /* after a barrier */
	void (*ctx_init)(struct run *r, struct bctx *c);   /* optional */
	void (*ctx_put)(struct run *r, struct bctx *c);    /* the owner's last reference */
	void (*barrier)(struct run *r);                    /* wait for the frees due */
	void (*thread_enter)(struct run *r, struct bthread *t);
	void (*thread_leave)(struct run *r, struct bthread *t);
	void (*sw)(struct bthread *t, struct bctx *next); /* NULL: a context-less task */
	void (*idle_enter)(struct run *r, struct bthread *t);
	void (*idle_exit)(struct run *r, struct bthread *t);
	/* Optional: signals (and rcu nudges) sent and hazard conversions so far. */
	void (*counters)(struct run *r, uint64_t *signals, uint64_t *conversions);
	uint64_t (*loop[LOOP_NR])(struct timed *tm, struct bthread *t);
};

extern const struct impl_ops floor_ops, peer_generic_ops;

/*
 * A build of impl_lazymm.c: lazymm through one linkage. The driver finds
 * the schemes through it (it links no lazymm itself).
 */
#define LAZYMM_UNIT_ABI 1
struct lazymm_unit {
	unsigned abi; /* LAZYMM_UNIT_ABI when built */
	const struct impl_ops *ops;
	int scheme_first, scheme_last;
	const char *(*scheme_name)(int scheme);
	bool (*scheme_available)(int scheme);
};
/* The unit's one entry point; it frees contexts through ctx_free. */
#define LAZYMM_UNIT_ENTRY "lmmb_lazymm_unit"
__attribute__((visibility("default"))) const struct lazymm_unit *lmmb_lazymm_unit(void (*ctx_free)(struct bctx *c));

struct impl {
	const char *name;
	enum kind kind;
	int scheme;                  /* K_LMM */
	const char *linkage;         /* K_LMM: "shared", "static" or "inline" */
	const char *refcount_base;   /* the ratio column's refcount of the same linkage */
	const struct impl_ops *ops;
	const struct peer_ops *peer; /* K_PEER */
	const char *missing;         /* why it is skipped, or NULL */
	bool selected;
};

#define MAX_IMPLS 32
extern struct impl impls[MAX_IMPLS];
extern unsigned nimpls;

/* ------------------------------------------------------------------ */
/* options, cpus, scenarios, results */

struct bench_options {
	bool full;
	unsigned warmups, reps;
	unsigned run_ms;      /* one timed run */
	unsigned drop_rounds; /* final drops per final-drop run */
	const char *csv, *plot;
};
extern struct bench_options opt;

extern unsigned ncpus;
void discover_cpus(void);

extern const char *const scenario_names[SC_NR];
extern const char *const scenario_help[SC_NR];
extern bool scenario_selected[SC_NR];
unsigned worker_counts(int sc, unsigned *out);
bool impl_runs(const struct impl *im);
void scenario_timed(int sc);
void scenario_final_drop(void);
void scenario_memory(void);
void progress(const char *sc, const char *impl, unsigned workers);

void add_result(int sc, const struct impl *im, unsigned workers, const char *metric, const char *unit,
		double median, double min, double max);
void summarise(double *v, unsigned n, double *median, double *min, double *max);
void print_table(int sc);
void write_csv(const char *path);
void write_plots(const char *dir);

#endif /* LMM_BENCH_H */

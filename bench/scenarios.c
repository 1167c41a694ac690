/* SPDX-License-Identifier: MIT */
/*
 * The scenarios: their threads, what they time or count, and the
 * interleaving of repetitions across implementations. Every implementation
 * is driven through its struct impl_ops alone; docs/performance.md says
 * what each scenario measures.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_MALLINFO2
#include <malloc.h>
#endif

#include "bench.h"

const char *const scenario_names[SC_NR] = {
	[SC_ROUNDTRIP] = "lazy-roundtrip",
	[SC_CROSS] = "cross-switch",
	[SC_FINAL_DROP] = "final-drop",
	[SC_MEMORY] = "memory",
	[SC_PINGPONG] = "pingpong",
	[SC_IDLE_CYCLE] = "idle-cycle",
};

const char *const scenario_help[SC_NR] = {
	[SC_ROUNDTRIP] = "switch(A), switch(NULL) on one shared context; ns per round trip",
	[SC_CROSS] = "A -> lazy -> B -> lazy -> A on two shared contexts; ns per context switch (floor: two calls)",
	[SC_FINAL_DROP] = "last put + barrier while N workers sleep holding the context lazily",
	[SC_MEMORY] = "bytes per context and per worker",
	[SC_PINGPONG] = "green-thread pairs of one context hand a token through the idle path; switches/s",
	[SC_IDLE_CYCLE] = ("switch(A), switch(NULL), idle_enter, idle_exit on one shared context; ns per cycle"
			   " (floor: four calls; peers: their idle path as in pingpong)"),
};

bool scenario_selected[SC_NR];

/* ------------------------------------------------------------------ */
/* contexts */

/* final-drop: the context whose free the driver waits for, and whether it ran. */
static _Atomic(struct bctx *) watched_ctx;
static atomic_bool watched_freed;

static struct bctx *bctx_alloc(void)
{
	/* Own cache lines: a context's count must not share a line with anything else. */
	size_t size = (sizeof(struct bctx) + 64 + 127) & ~(size_t)127;
	struct bctx *c = aligned_alloc(128, size);
	if (!c) {
		perror("lmm-bench: aligned_alloc");
		exit(1);
	}
	memset(c, 0, size);
	atomic_init(&c->count, 1);
	return c;
}

void bench_ctx_free(struct bctx *c)
{
	/* Relaxed: the driver reads the flag after its barrier, which orders the free before it. */
	if (atomic_load_explicit(&watched_ctx, memory_order_relaxed) == c)
		atomic_store_explicit(&watched_freed, true, memory_order_relaxed);
	free(c);
}

/* ------------------------------------------------------------------ */
/* cpus */

unsigned ncpus;
static int cpu_list[1024];

static void pin_self(unsigned index)
{
#ifdef HAVE_PTHREAD_SETAFFINITY_NP
	if (ncpus == 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu_list[index % ncpus], &set);
	/* Best effort: a container may forbid it; the figures stay valid, only noisier. */
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
#else
	(void)index;
#endif
}

void discover_cpus(void)
{
#ifdef HAVE_PTHREAD_SETAFFINITY_NP
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int i = 0; i < CPU_SETSIZE && ncpus < 1024; i++)
			if (CPU_ISSET(i, &set))
				cpu_list[ncpus++] = i;
	}
#endif
	if (ncpus == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		ncpus = n > 0 ? (unsigned)n : 1;
		for (unsigned i = 0; i < ncpus && i < 1024; i++)
			cpu_list[i] = (int)i;
	}
}

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* one measurement, whatever the implementation */

static void run_open(struct run *r, const struct impl *im, unsigned max_workers)
{
	memset(r, 0, sizeof(*r));
	r->im = im;
	im->ops->open(r, max_workers);
}

static struct bctx *run_ctx_new(struct run *r)
{
	struct bctx *c = bctx_alloc();
	if (r->im->ops->ctx_init)
		r->im->ops->ctx_init(r, c);
	return c;
}

static void run_close(struct run *r)
{
	r->im->ops->barrier(r);
	r->im->ops->close(r);
}

static void thread_enter(struct run *r, struct bthread *t, unsigned index)
{
	memset(t, 0, sizeof(*t));
	t->index = index;
	pin_self(index);
	r->im->ops->thread_enter(r, t);
}

/* ------------------------------------------------------------------ */
/* timed loops: lazy-roundtrip, cross-switch, pingpong, idle-cycle */

struct timed_arg {
	struct timed *tm;
	unsigned index;
};

static void *timed_worker(void *arg)
{
	struct timed_arg *ta = arg;
	struct timed *tm = ta->tm;
	const struct impl_ops *ops = tm->r->im->ops;
	struct bthread t;
	thread_enter(tm->r, &t, ta->index);
	pthread_barrier_wait(&tm->start);

	static const int loops[SC_NR] = { [SC_ROUNDTRIP] = LOOP_ROUNDTRIP, [SC_CROSS] = LOOP_CROSS,
					  [SC_PINGPONG] = LOOP_PINGPONG, [SC_IDLE_CYCLE] = LOOP_IDLE_CYCLE };
	int loop = loops[tm->scenario];
	uint64_t (*fn)(struct timed *, struct bthread *) = ops->loop[loop];
	uint64_t c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	uint64_t n = fn(tm, &t);
	uint64_t c1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	tm->ops[ta->index] = n;
	tm->cpu_ns[ta->index] = c1 - c0;
	ops->thread_leave(tm->r, &t);
	return NULL;
}

/* One timed run; returns ns per op (CPU time), or ops per second for pingpong. */
static double timed_run(const struct impl *im, int scenario, unsigned nworkers)
{
	struct timed tm = { .nworkers = nworkers, .scenario = scenario };
	struct run r;
	run_open(&r, im, 0);
	tm.r = &r;
	tm.a = run_ctx_new(&r);
	tm.b = run_ctx_new(&r);
	tm.ops = calloc(nworkers, sizeof(uint64_t));
	tm.cpu_ns = calloc(nworkers, sizeof(uint64_t));
	pthread_t *th = calloc(nworkers, sizeof(pthread_t));
	struct timed_arg *args = calloc(nworkers, sizeof(*args));
	if (!tm.ops || !tm.cpu_ns || !th || !args) {
		perror("lmm-bench");
		exit(1);
	}
	atomic_init(&tm.stop, false);
	pthread_barrier_init(&tm.start, NULL, nworkers + 1);
	for (unsigned i = 0; i < nworkers; i++) {
		args[i] = (struct timed_arg){ &tm, i };
		if (pthread_create(&th[i], NULL, timed_worker, &args[i])) {
			perror("lmm-bench: pthread_create");
			exit(1);
		}
	}
	pthread_barrier_wait(&tm.start);
	struct timespec nap = { opt.run_ms / 1000, (long)(opt.run_ms % 1000) * 1000000L };
	nanosleep(&nap, NULL);
	/* Relaxed: the workers poll it; join orders their results. */
	atomic_store_explicit(&tm.stop, true, memory_order_relaxed);
	uint64_t ops = 0, cpu = 0;
	for (unsigned i = 0; i < nworkers; i++) {
		pthread_join(th[i], NULL);
		ops += tm.ops[i];
		cpu += tm.cpu_ns[i];
	}
	pthread_barrier_destroy(&tm.start);
	im->ops->ctx_put(&r, tm.a);
	im->ops->ctx_put(&r, tm.b);
	run_close(&r);
	free(tm.ops);
	free(tm.cpu_ns);
	free(th);
	free(args);
	if (ops == 0 || cpu == 0)
		return 0;
	if (scenario == SC_PINGPONG) {
		/* Per-core rate times the cores the workers can use at once. */
		unsigned usable = nworkers < ncpus ? nworkers : ncpus;
		return (double)ops * 1e9 / (double)cpu * usable;
	}
	return (double)cpu / (double)ops;
}

/* ------------------------------------------------------------------ */
/* final-drop */

struct drop {
	struct run *r;
	unsigned nworkers;
	pthread_mutex_t lock;
	pthread_cond_t wake, asleep_cond;
	unsigned round, asleep;
	bool quit;
	struct bctx *ctx;
};

struct drop_arg {
	struct drop *dr;
	unsigned index;
};

static void *drop_worker(void *arg)
{
	struct drop_arg *da = arg;
	struct drop *dr = da->dr;
	struct run *r = dr->r;
	const struct impl_ops *ops = r->im->ops;
	struct bthread t;
	thread_enter(r, &t, da->index);
	unsigned seen = 0;

	ops->idle_enter(r, &t); /* asleep until the first round */
	pthread_mutex_lock(&dr->lock);
	for (;;) {
		while (dr->round == seen && !dr->quit)
			pthread_cond_wait(&dr->wake, &dr->lock);
		if (dr->quit)
			break;
		seen = dr->round;
		struct bctx *c = dr->ctx;
		pthread_mutex_unlock(&dr->lock);

		ops->idle_exit(r, &t);
		/* Run a task of this round's context (ending the lazy hold on the last one), then idle lazily. */
		ops->sw(&t, c);
		ops->sw(&t, NULL);
		ops->idle_enter(r, &t);

		pthread_mutex_lock(&dr->lock);
		if (++dr->asleep == dr->nworkers)
			pthread_cond_signal(&dr->asleep_cond);
	}
	pthread_mutex_unlock(&dr->lock);
	ops->idle_exit(r, &t);
	ops->thread_leave(r, &t);
	return NULL;
}

struct drop_result {
	double latency_ns, signals, conversions, freed;
};

static void counters(struct run *r, uint64_t *signals, uint64_t *conversions)
{
	*signals = *conversions = 0;
	if (r->im->ops->counters)
		r->im->ops->counters(r, signals, conversions);
}

static struct drop_result drop_run(const struct impl *im, unsigned nworkers)
{
	struct drop dr = { .nworkers = nworkers };
	struct run r;
	run_open(&r, im, nworkers > 256 ? nworkers : 0);
	dr.r = &r;
	pthread_mutex_init(&dr.lock, NULL);
	pthread_cond_init(&dr.wake, NULL);
	pthread_cond_init(&dr.asleep_cond, NULL);
	pthread_t *th = calloc(nworkers, sizeof(pthread_t));
	struct drop_arg *args = calloc(nworkers, sizeof(*args));
	if (!th || !args) {
		perror("lmm-bench");
		exit(1);
	}
	for (unsigned i = 0; i < nworkers; i++) {
		args[i] = (struct drop_arg){ &dr, i };
		if (pthread_create(&th[i], NULL, drop_worker, &args[i])) {
			perror("lmm-bench: pthread_create");
			exit(1);
		}
	}

	struct drop_result res = { 0 };
	for (unsigned round = 0; round < opt.drop_rounds; round++) {
		struct bctx *c = run_ctx_new(&r);
		pthread_mutex_lock(&dr.lock);
		dr.ctx = c;
		dr.asleep = 0;
		dr.round++;
		pthread_cond_broadcast(&dr.wake);
		while (dr.asleep < nworkers)
			pthread_cond_wait(&dr.asleep_cond, &dr.lock);
		pthread_mutex_unlock(&dr.lock);

		/* Every worker holds c lazily and sleeps in its idle path. */
		uint64_t s0, v0, s1, v1;
		counters(&r, &s0, &v0);
		/* Relaxed: set before the put that can free c; read back after the barrier. */
		atomic_store_explicit(&watched_ctx, c, memory_order_relaxed);
		atomic_store_explicit(&watched_freed, false, memory_order_relaxed);
		uint64_t t0 = now_ns(CLOCK_MONOTONIC);
		im->ops->ctx_put(&r, c);
		im->ops->barrier(&r);
		uint64_t t1 = now_ns(CLOCK_MONOTONIC);
		/* Relaxed: the barrier returned after every free it waited for (its own acquire). */
		bool freed = atomic_load_explicit(&watched_freed, memory_order_relaxed);
		atomic_store_explicit(&watched_ctx, NULL, memory_order_relaxed);
		counters(&r, &s1, &v1);
		res.latency_ns += (double)(t1 - t0);
		res.signals += (double)(s1 - s0);
		res.conversions += (double)(v1 - v0);
		res.freed += freed ? 1.0 : 0.0;
	}
	pthread_mutex_lock(&dr.lock);
	dr.quit = true;
	pthread_cond_broadcast(&dr.wake);
	pthread_mutex_unlock(&dr.lock);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_join(th[i], NULL);
	run_close(&r);
	pthread_mutex_destroy(&dr.lock);
	pthread_cond_destroy(&dr.wake);
	pthread_cond_destroy(&dr.asleep_cond);
	free(th);
	free(args);
	double n = opt.drop_rounds;
	res.latency_ns /= n;
	res.signals /= n;
	res.conversions /= n;
	res.freed /= n;
	return res;
}

/* ------------------------------------------------------------------ */
/* memory */

static size_t heap_in_use(void)
{
#ifdef HAVE_MALLINFO2
	return mallinfo2().uordblks;
#else
	return 0;
#endif
}

struct mem_online {
	struct run *r;
	pthread_barrier_t go, done, leave;
};

static void *mem_worker(void *arg)
{
	struct mem_online *mo = arg;
	struct bthread t;
	pthread_barrier_wait(&mo->go);
	thread_enter(mo->r, &t, 0);
	pthread_barrier_wait(&mo->done);
	pthread_barrier_wait(&mo->leave);
	mo->r->im->ops->thread_leave(mo->r, &t);
	return NULL;
}

#define MEM_CTXS 256
#define MEM_WORKERS 4

/*
 * Bytes per context and per worker: the embedded struct plus what the heap
 * grew by. lazymm's struct lmm_worker is opaque: a worker's bytes are the
 * heap's growth alone (0 where mallinfo2 is missing).
 */
static void memory_measure(const struct impl *im, double *ctx_bytes, double *worker_bytes)
{
	if (im->kind == K_FLOOR) {
		*ctx_bytes = *worker_bytes = 0;
		return;
	}
	if (im->kind == K_PEER) {
		*ctx_bytes = (double)im->peer->ctx_bytes;
		*worker_bytes = (double)im->peer->worker_bytes;
		return;
	}
	struct run r;
	run_open(&r, im, 0);
	static struct bctx *cs[MEM_CTXS];
	for (unsigned i = 0; i < MEM_CTXS; i++)
		cs[i] = bctx_alloc(); /* outside the measured window: the embedding is the application's */
	size_t h0 = heap_in_use();
	for (unsigned i = 0; i < MEM_CTXS; i++)
		im->ops->ctx_init(&r, cs[i]);
	size_t h1 = heap_in_use();
	*ctx_bytes = (double)sizeof(struct lmm_ctx) + (double)(h1 - h0) / MEM_CTXS;
	for (unsigned i = 0; i < MEM_CTXS; i++)
		im->ops->ctx_put(&r, cs[i]);
	im->ops->barrier(&r);

	struct mem_online mo = { .r = &r };
	pthread_barrier_init(&mo.go, NULL, MEM_WORKERS + 1);
	pthread_barrier_init(&mo.done, NULL, MEM_WORKERS + 1);
	pthread_barrier_init(&mo.leave, NULL, MEM_WORKERS + 1);
	pthread_t th[MEM_WORKERS];
	for (unsigned i = 0; i < MEM_WORKERS; i++)
		if (pthread_create(&th[i], NULL, mem_worker, &mo))
			exit(1);
	/* The threads exist before the first snapshot: only going online is measured. */
	h0 = heap_in_use();
	pthread_barrier_wait(&mo.go);
	pthread_barrier_wait(&mo.done);
	h1 = heap_in_use();
	pthread_barrier_wait(&mo.leave);
	for (unsigned i = 0; i < MEM_WORKERS; i++)
		pthread_join(th[i], NULL);
	*worker_bytes = h1 > h0 ? (double)(h1 - h0) / MEM_WORKERS : 0;
	pthread_barrier_destroy(&mo.go);
	pthread_barrier_destroy(&mo.done);
	pthread_barrier_destroy(&mo.leave);
	run_close(&r);
}

/* ------------------------------------------------------------------ */
/* the scenarios over every selected implementation */

unsigned worker_counts(int sc, unsigned *out)
{
	unsigned n = 0;
	if (sc == SC_FINAL_DROP) {
		static const unsigned sleepers[] = { 1, 4, 16, 64 };
		for (unsigned i = 0; i < 4; i++)
			out[n++] = sleepers[i];
		return n;
	}
	if (sc == SC_MEMORY) {
		out[n++] = 1;
		return n;
	}
	/* 1, 2, ... nproc (powers of two past 8, or in a quick run), nproc, 2 x nproc. */
	for (unsigned w = 1; w <= ncpus; w = (opt.full && w < 8) ? w + 1 : 2 * w)
		out[n++] = w;
	if (out[n - 1] != ncpus)
		out[n++] = ncpus;
	out[n++] = 2 * ncpus;
	return n;
}

bool impl_runs(const struct impl *im)
{
	return im->selected && !im->missing;
}

void scenario_timed(int sc)
{
	unsigned counts[64];
	unsigned nc = worker_counts(sc, counts);
	unsigned total = opt.warmups + opt.reps;
	double *v = calloc((size_t)nimpls * total, sizeof(double));
	if (!v) {
		perror("lmm-bench");
		exit(1);
	}
	for (unsigned ci = 0; ci < nc; ci++) {
		/* Interleave: rep k of every implementation runs before rep k+1 of any. */
		for (unsigned rep = 0; rep < total; rep++) {
			for (unsigned m = 0; m < nimpls; m++) {
				if (!impl_runs(&impls[m]))
					continue;
				v[m * total + rep] = timed_run(&impls[m], sc, counts[ci]);
				if (rep == total - 1)
					progress(scenario_names[sc], impls[m].name, counts[ci]);
			}
		}
		for (unsigned m = 0; m < nimpls; m++) {
			if (!impl_runs(&impls[m]))
				continue;
			double med, mn, mx;
			summarise(&v[m * total + opt.warmups], opt.reps, &med, &mn, &mx);
			if (sc == SC_PINGPONG)
				add_result(sc, &impls[m], counts[ci], "switches", "switch/s", med, mn, mx);
			else
				add_result(sc, &impls[m], counts[ci],
					   sc == SC_ROUNDTRIP ? "roundtrip" : sc == SC_CROSS ? "switch" : "cycle", "ns",
					   med, mn, mx);
		}
	}
	free(v);
}

void scenario_final_drop(void)
{
	unsigned counts[8];
	unsigned nc = worker_counts(SC_FINAL_DROP, counts);
	unsigned total = opt.warmups + opt.reps;
	struct drop_result *v = calloc((size_t)nimpls * total, sizeof(*v));
	double *tmp = calloc(total, sizeof(double));
	if (!v || !tmp) {
		perror("lmm-bench");
		exit(1);
	}
	for (unsigned ci = 0; ci < nc; ci++) {
		for (unsigned rep = 0; rep < total; rep++) {
			for (unsigned m = 0; m < nimpls; m++) {
				if (!impl_runs(&impls[m]) || impls[m].kind == K_FLOOR)
					continue;
				v[m * total + rep] = drop_run(&impls[m], counts[ci]);
				if (rep == total - 1)
					progress("final-drop", impls[m].name, counts[ci]);
			}
		}
		for (unsigned m = 0; m < nimpls; m++) {
			if (!impl_runs(&impls[m]) || impls[m].kind == K_FLOOR)
				continue;
			static const struct { const char *metric, *unit; size_t off; } fields[] = {
				{ "latency", "ns", offsetof(struct drop_result, latency_ns) },
				{ "signals", "per-drop", offsetof(struct drop_result, signals) },
				{ "conversions", "per-drop", offsetof(struct drop_result, conversions) },
				{ "freed", "fraction", offsetof(struct drop_result, freed) },
			};
			for (unsigned f = 0; f < 4; f++) {
				if (impls[m].kind != K_LMM && (f == 1 || f == 2))
					continue; /* lmm_stats counters: lazymm only */
				for (unsigned k = 0; k < opt.reps; k++)
					memcpy(&tmp[k], (char *)&v[m * total + opt.warmups + k] + fields[f].off,
					       sizeof(double));
				double med, mn, mx;
				summarise(tmp, opt.reps, &med, &mn, &mx);
				add_result(SC_FINAL_DROP, &impls[m], counts[ci], fields[f].metric, fields[f].unit,
					   med, mn, mx);
			}
		}
	}
	free(v);
	free(tmp);
}

void scenario_memory(void)
{
#ifndef HAVE_MALLINFO2
	fprintf(stderr, "lmm-bench: note: no mallinfo2: lazymm heap bytes are not measured\n");
#endif
	for (unsigned m = 0; m < nimpls; m++) {
		if (!impl_runs(&impls[m]))
			continue;
		double cb, wb;
		memory_measure(&impls[m], &cb, &wb);
		add_result(SC_MEMORY, &impls[m], 1, "ctx_bytes", "bytes", cb, cb, cb);
		add_result(SC_MEMORY, &impls[m], 1, "worker_bytes", "bytes", wb, wb, wb);
		progress("memory", impls[m].name, 1);
	}
}

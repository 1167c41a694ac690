/* SPDX-License-Identifier: MIT */
/* Workers: online, offline (hotplug), thread exit, idle. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "internal.h"

__thread struct lmm_worker *lmm__self __attribute__((tls_model("initial-exec")));
__thread struct freeing *lmm__freeing __attribute__((tls_model("initial-exec")));

/* Takes a worker offline when its thread exits without lmm_worker_offline. */
static pthread_key_t exit_key;
static int exit_key_err;

static int do_offline(struct lmm_worker *w);

static void worker_thread_exit(void *arg)
{
	struct lmm_worker *w = arg;
	if (lmm__self != w)
		return;
	if (w->idle)
		lmm_idle_exit(w); /* the thread exits from its idle loop */
	/* A task's context may still be current: the thread is gone, so is the task. */
	lmm_switch(w, NULL);
	do_offline(w);
}

/* At load time, for the reason atfork_register (domain.c) gives. */
__attribute__((constructor)) static void exit_key_init(void)
{
	exit_key_err = pthread_key_create(&exit_key, worker_thread_exit);
}

static struct lmm_worker *worker_alloc(struct lmm_domain *d, unsigned id)
{
	struct lmm_worker *w = lmm__aligned_alloc(LMM_HOT_ALIGN, sizeof(*w));
	if (!w)
		return NULL;
	memset(w, 0, sizeof(*w));
	if (pthread_mutex_init(&w->kill_lock, NULL)) {
		free(w);
		return NULL;
	}
	w->id = id;
	w->domain = d;
	w->init = &d->init;
	w->scheme = d->scheme;
	w->uses_signals = d->scheme->uses_signals;
	w->kind = (unsigned char)d->scheme->id;
	w->debug = d->cfg.flags & LMM_F_DEBUG;
	w->membarrier_fence = lmm__membarrier_fallback();
	lmm__switch_path_set(w);
	atomic_init(&w->active, &d->init);
	return w;
}

int lmm_worker_online(struct lmm_domain *d, void *data, struct lmm_worker **out)
{
	if (!d || !out)
		return -EINVAL;
	if (lmm__self)
		return -EEXIST;
	/* A worker that blocks the signal could never be shot down or nudged. */
	if (lmm__domain_signals(d) && lmm__signal_blocked(d))
		return -EDEADLK;
	if (exit_key_err)
		return -exit_key_err;

	pthread_mutex_lock(&d->lock);
	struct lmm_worker *w = NULL;
	unsigned id;
	for (id = 0; id < d->max_workers; id++) {
		/* Relaxed: d->lock serialises membership changes. */
		w = atomic_load_explicit(&d->workers[id], memory_order_relaxed);
		if (!w || !atomic_load_explicit(&w->online, memory_order_relaxed))
			break;
	}
	if (id == d->max_workers) {
		pthread_mutex_unlock(&d->lock);
		return -ENOSPC;
	}
	bool fresh = !w;
	if (fresh) {
		w = worker_alloc(d, id);
		if (!w) {
			pthread_mutex_unlock(&d->lock);
			return -ENOMEM;
		}
	} else {
		memset(&w->stats, 0, sizeof(w->stats));
		/*
		 * Relaxed: a reused slot stays published (scanners never chase a
		 * freed worker), so scanners may read this word now. The scheme
		 * resets its own state (worker_online, worker_reuse).
		 */
		atomic_store_explicit(&w->sig_pending, 0, memory_order_relaxed);
		if (d->scheme->worker_reuse)
			d->scheme->worker_reuse(w);
	}
	int ret = pthread_setspecific(exit_key, w);
	if (ret) {
		if (fresh) {
			pthread_mutex_destroy(&w->kill_lock);
			free(w);
		}
		pthread_mutex_unlock(&d->lock);
		return -ret;
	}
	w->data = data;
	w->thread = pthread_self();
	w->idle = false; /* a slot whose last owner went offline inside the idle bracket */
	lmm__switch_path_set(w);
	atomic_store_explicit(&w->current, NULL, memory_order_relaxed);
	atomic_store_explicit(&w->active, &d->init, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->generation, 1, memory_order_relaxed);
	pthread_mutex_lock(&w->kill_lock);
	/* Relaxed under kill_lock: lmm__signal_worker reads it under the same lock. */
	atomic_store_explicit(&w->online, true, memory_order_relaxed);
	pthread_mutex_unlock(&w->kill_lock);
	if (fresh)
		/* Release: scanners that acquire the slot see an initialised worker
		 * (litmus: worker-publish). */
		atomic_store_explicit(&d->workers[id], w, memory_order_release);
	d->online++;
	lmm__self = w;
	pthread_mutex_unlock(&d->lock);

	if (d->scheme->worker_online) {
		ret = d->scheme->worker_online(w);
		if (ret) {
			do_offline(w);
			return ret;
		}
	}
	*out = w;
	return 0;
}

static int do_offline(struct lmm_worker *w)
{
	struct lmm_domain *d = w->domain;

	/* Leave the lazy context before any bookkeeping (kernel commit a08311b423, hotplug exit race). */
	lmm__unlazy(w);
	if (d->scheme->worker_offline)
		d->scheme->worker_offline(w);

	pthread_mutex_lock(&d->lock);
	stat_add(d, ST_LAZY_ENTERS, atomic_load_explicit(&w->stats.lazy_enters, memory_order_relaxed));
	stat_add(d, ST_LAZY_HITS, worker_lazy_hits(w));
	stat_add(d, ST_INSTALLS, atomic_load_explicit(&w->stats.installs, memory_order_relaxed));
	stat_add(d, ST_UNLAZIES, atomic_load_explicit(&w->stats.unlazies, memory_order_relaxed));
	/* No signal may be sent to this thread once it can exit. */
	pthread_mutex_lock(&w->kill_lock);
	atomic_store_explicit(&w->online, false, memory_order_relaxed);
	pthread_mutex_unlock(&w->kill_lock);
	d->online--;
	lmm__self = NULL;
	pthread_setspecific(exit_key, NULL);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/*
 * The worker loop's calls, made from switch_ctx: they would change the
 * worker's state under the install in progress. Off the fast path, so
 * always checked (in_switch_ctx: this thread's own, see install()).
 */
static void loop_call_check(struct lmm_worker *w, const char *call)
{
	if (unlikely(w->in_switch_ctx))
		lmm__die(call, "called from inside switch_ctx");
}

int lmm_worker_offline(struct lmm_worker *w)
{
	if (!w)
		return -EINVAL;
	if (lmm__self != w)
		return -EPERM;
	loop_call_check(w, "lmm_worker_offline");
	/* Relaxed: own state. */
	if (atomic_load_explicit(&w->current, memory_order_relaxed))
		return -EBUSY;
	return do_offline(w);
}

void *lmm_worker_data(const struct lmm_worker *w)
{
	return w->data;
}

unsigned lmm_worker_id(const struct lmm_worker *w)
{
	return w->id;
}

struct lmm_worker *lmm_worker_self(void)
{
	return lmm__self;
}

/*
 * The idle bracket. Inside it the worker takes lmm_switch's general copy,
 * which aborts (switch_general): under rcu the worker is RCU-offline there,
 * so a context it switched to could be freed while installed. The flag and
 * the path byte are the owner's; no handler reads them.
 */
void lmm_idle_enter(struct lmm_worker *w)
{
	if (unlikely(lmm__self != w))
		lmm__die("lmm_idle_enter", "worker %p used from a thread that is not that worker", (void *)w);
	loop_call_check(w, "lmm_idle_enter");
	if (w->idle)
		lmm__die("lmm_idle_enter", "already idle (lmm_idle_enter twice without lmm_idle_exit)");
	worker_idle_set(w, true);
	if (w->scheme->idle_enter)
		w->scheme->idle_enter(w);
}

void lmm_idle_exit(struct lmm_worker *w)
{
	if (unlikely(lmm__self != w))
		lmm__die("lmm_idle_exit", "worker %p used from a thread that is not that worker", (void *)w);
	loop_call_check(w, "lmm_idle_exit");
	if (!w->idle)
		lmm__die("lmm_idle_exit", "not idle (lmm_idle_exit without lmm_idle_enter)");
	if (w->scheme->idle_exit)
		w->scheme->idle_exit(w);
	worker_idle_set(w, false);
}

void lmm_quiescent(struct lmm_worker *w)
{
	if (unlikely(lmm__self != w))
		lmm__die("lmm_quiescent", "worker %p used from a thread that is not that worker", (void *)w);
	loop_call_check(w, "lmm_quiescent");
	if (w->scheme->quiescent)
		w->scheme->quiescent(w);
}

/* fork(): the child's only thread is not the worker the forking thread was. */
void lmm__worker_atfork_child(void)
{
	if (lmm__self)
		pthread_setspecific(exit_key, NULL); /* the key exists: a worker was made */
	lmm__self = NULL;
	lmm__freeing = NULL;
}

void lmm__for_each_worker(struct lmm_domain *d, void (*fn)(struct lmm_worker *w, void *arg), void *arg)
{
	for (unsigned i = 0; i < d->max_workers; i++) {
		/* Acquire pairs with the release publication in lmm_worker_online
		 * (litmus: worker-publish). */
		struct lmm_worker *w = atomic_load_explicit(&d->workers[i], memory_order_acquire);
		if (w)
			fn(w, arg);
	}
}

/* Every published worker whose bit is set in c's mask. */
unsigned lmm__mask_for_each(struct ctx_impl *c, void (*fn)(struct lmm_worker *w, void *arg), void *arg)
{
	unsigned visited = 0;
	struct mask_walk m = mask_walk_start(c);

	while (mask_walk_next(&m)) {
		if (m.w) {
			fn(m.w, arg);
			visited++;
		}
	}
	return visited;
}

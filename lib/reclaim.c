/* SPDX-License-Identifier: MIT */
/*
 * The reclaim engine (reclaim.h): one thread per domain at most, lmm-reclaim,
 * running passes: the deferred frees, then the scheme's reclaim_pass over
 * what was queued for it, then the frees that pass released. It sleeps until
 * kicked; while a pass leaves work (shootdown's holders that have not moved)
 * it also wakes after a pause that doubles from 10 ms to 1 s.
 *
 * When the thread starts: at lmm_domain_create with LMM_F_DEFER_FREE or a
 * scheme that asks (reclaim_at_create: rcu, whose grace periods need it);
 * otherwise at the first lmm__reclaim_queue (shootdown's first hand-off,
 * inside lmm_put or lmm_drop); never with LMM_F_NO_THREADS. cfg.thread_create
 * always runs with no lock of the library held (lazymm(7)).
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define RECLAIM_PAUSE_FIRST_NS (10ull * 1000000) /* work left: the first pause before another pass */
#define RECLAIM_PAUSE_MAX_NS (1000ull * 1000000) /* doubling up to this */

#define RECLAIM_THREAD_NAME "lmm-reclaim"

/* --- the queues --- */

/* Append c to a queue; under r->lock. */
static void enqueue(struct ctx_impl ***tail, struct ctx_impl *c)
{
	c->reclaim_next = NULL;
	**tail = c;
	*tail = &c->reclaim_next;
}

/* Take a whole queue; under r->lock. */
static struct ctx_impl *take(struct ctx_impl **head, struct ctx_impl ***tail)
{
	struct ctx_impl *list = *head;
	*head = NULL;
	*tail = head;
	return list;
}

void lmm__reclaim_kick(struct lmm_domain *d)
{
	struct lmm_reclaim *r = &d->reclaim;
	if (d->cfg.flags & LMM_F_NO_THREADS)
		return; /* lmm_poll runs the passes */
	/*
	 * Acq_rel: pairs with the exchange in pass(). A kick that finds the
	 * flag set posts nothing: the pass it is waiting for clears the flag
	 * after our work was queued, so it sees that work (the queues under
	 * r->lock, rcu's orphan slot through its own release/acquire pair;
	 * litmus: reclaim-kick). Lock-free, so async-signal-safe, as sem_post
	 * is.
	 */
	if (!atomic_exchange_explicit(&r->kicked, true, memory_order_acq_rel))
		sem_post(&r->wake);
}

/* --- the thread --- */

/* Run the queued deferred frees, oldest first, with no lock held. */
static void run_frees(struct lmm_domain *d)
{
	struct lmm_reclaim *r = &d->reclaim;

	pthread_mutex_lock(&r->lock);
	struct ctx_impl *list = take(&r->frees, &r->frees_tail);
	pthread_mutex_unlock(&r->lock);
	while (list) {
		struct ctx_impl *c = list;
		list = c->reclaim_next;
		stat_add(d, ST_FREES_DEFERRED, 1);
		LMM_PROBE(free_deferred, d, ctx_public(c));
		lmm__run_free(c); /* free never runs under a lock of ours (it may take the caller's) */
	}
}

/*
 * One pass: the deferred frees, the scheme's reclaim_pass over the work
 * queued for it (@poll: lmm_poll's, which must not wait), the frees that
 * released. True if work is left: contexts the scheme gave back, or queued
 * meanwhile.
 */
static bool pass(struct lmm_domain *d, bool poll)
{
	struct lmm_reclaim *r = &d->reclaim;

	/* Acq_rel: pairs with lmm__reclaim_kick's exchange (see there; litmus: reclaim-kick). */
	atomic_exchange_explicit(&r->kicked, false, memory_order_acq_rel);
	run_frees(d);
	if (d->scheme->reclaim_pass) {
		pthread_mutex_lock(&r->lock);
		struct ctx_impl *batch = take(&r->work, &r->work_tail);
		pthread_mutex_unlock(&r->lock);
		struct ctx_impl *left = d->scheme->reclaim_pass(d, batch, poll);
		if (left) {
			/* Back at the head, before what was queued meanwhile. */
			struct ctx_impl **tail = &left;
			while (*tail)
				tail = &(*tail)->reclaim_next;
			pthread_mutex_lock(&r->lock);
			*tail = r->work;
			if (!r->work)
				r->work_tail = tail;
			r->work = left;
			pthread_mutex_unlock(&r->lock);
		}
	}
	run_frees(d);
	pthread_mutex_lock(&r->lock);
	bool left = r->work || r->frees;
	pthread_mutex_unlock(&r->lock);
	return left;
}

/* Wait for a kick, or at most @ns if not 0. */
static void wait_kick(struct lmm_reclaim *r, unsigned long long ns)
{
	if (!ns) {
		while (sem_wait(&r->wake) != 0)
			; /* EINTR */
		return;
	}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
	struct timespec ts = lmm_plat_deadline_ts(ns);
	while (sem_clockwait(&r->wake, CLOCK_MONOTONIC, &ts) != 0 && errno == EINTR)
		;
#else
	/*
	 * sem_timedwait measures CLOCK_REALTIME: a step of that clock
	 * stretches or shortens this pause, which only paces the retries of
	 * work left; a kick (new work, lmm_barrier) still ends it.
	 */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ns += (unsigned long long)ts.tv_nsec;
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	while (sem_timedwait(&r->wake, &ts) != 0 && errno == EINTR)
		;
#endif
}

static void *reclaim_main(void *arg)
{
	struct lmm_domain *d = arg;
	struct lmm_reclaim *r = &d->reclaim;
	struct backoff pause = { .nap = RECLAIM_PAUSE_FIRST_NS };
	bool left = false;

	for (;;) {
		wait_kick(r, left ? pause.nap : 0);
		pthread_mutex_lock(&r->lock);
		bool stop = r->stop;
		pthread_mutex_unlock(&r->lock);
		if (stop)
			break; /* lmm_domain_destroy: no context is left, nor any work */
		bool was_left = left;
		left = pass(d, false);
		if (!left)
			pause.nap = RECLAIM_PAUSE_FIRST_NS;
		else if (was_left) /* the first pause is the first length */
			backoff_grow(&pause, RECLAIM_PAUSE_MAX_NS);
	}
	return NULL;
}

/* cfg.thread_create, else pthread_create and the name. 0 or a negative errno. */
static int thread_start(struct lmm_domain *d, pthread_t *t)
{
	if (d->cfg.thread_create)
		return -d->cfg.thread_create(t, reclaim_main, d, RECLAIM_THREAD_NAME, d->cfg.thread_user);
	int ret = pthread_create(t, NULL, reclaim_main, d);
	if (!ret)
		lmm_plat_thread_setname(*t, RECLAIM_THREAD_NAME);
	return -ret;
}

/* --- the core's and the schemes' calls --- */

int lmm__reclaim_init(struct lmm_domain *d)
{
	struct lmm_reclaim *r = &d->reclaim;

	r->work_tail = &r->work;
	r->frees_tail = &r->frees;
	atomic_init(&r->kicked, false);
	int ret = pthread_mutex_init(&r->lock, NULL);
	if (ret)
		return -ret;
	if (sem_init(&r->wake, 0, 0)) {
		ret = -errno;
		pthread_mutex_destroy(&r->lock);
		return ret;
	}
	return 0;
}

int lmm__reclaim_start(struct lmm_domain *d)
{
	struct lmm_reclaim *r = &d->reclaim;
	/* Nobody else sees the domain yet: no lock needed. */
	int ret = thread_start(d, &r->thread);
	if (!ret)
		r->started = true;
	return ret;
}

void lmm__reclaim_fini(struct lmm_domain *d)
{
	struct lmm_reclaim *r = &d->reclaim;

	pthread_mutex_lock(&r->lock);
	r->stop = true;
	bool started = r->started;
	pthread_mutex_unlock(&r->lock);
	if (started) {
		sem_post(&r->wake);
		pthread_join(r->thread, NULL); /* the caller disabled cancellation (cancel_off) */
	}
	sem_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
}

bool lmm__reclaim_queue(struct lmm_domain *d, struct ctx_impl *c)
{
	struct lmm_reclaim *r = &d->reclaim;
	bool ok = true;

	pthread_mutex_lock(&r->lock);
	if (!r->started && !(d->cfg.flags & LMM_F_NO_THREADS)) {
		ok = false;
		if (!r->starting) {
			r->starting = true;
			pthread_mutex_unlock(&r->lock);
			pthread_t t;
			bool started = thread_start(d, &t) == 0;
			pthread_mutex_lock(&r->lock);
			r->starting = false;
			if (started) {
				r->thread = t;
				r->started = true;
				ok = true;
			}
		}
	}
	if (ok) {
		enqueue(&r->work_tail, c);
		lmm__reclaim_kick(d); /* under the lock: see lmm__reclaim_free */
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

void lmm__reclaim_park(struct lmm_domain *d, struct ctx_impl *c)
{
	struct lmm_reclaim *r = &d->reclaim;

	pthread_mutex_lock(&r->lock);
	enqueue(&r->work_tail, c);
	lmm__reclaim_kick(d); /* a thread started meanwhile takes it (under the lock: see lmm__reclaim_free) */
	pthread_mutex_unlock(&r->lock);
}

void lmm__reclaim_help(struct lmm_domain *d)
{
	struct lmm_reclaim *r = &d->reclaim;

	pthread_mutex_lock(&r->lock);
	bool thread = r->started;
	pthread_mutex_unlock(&r->lock);
	if (thread)
		lmm__reclaim_kick(d);
	else
		pass(d, true); /* no thread does it (LMM_F_NO_THREADS, or it could not start): we do */
}

void lmm__reclaim_free(struct lmm_domain *d, struct ctx_impl *c)
{
	struct lmm_reclaim *r = &d->reclaim;

	pthread_mutex_lock(&r->lock);
	enqueue(&r->frees_tail, c);
	/*
	 * Kick before the unlock: once c can be taken, its free may run, and
	 * lmm_barrier and lmm_domain_destroy may follow, before we would get
	 * to a kick after it; the kick takes no lock.
	 */
	lmm__reclaim_kick(d);
	pthread_mutex_unlock(&r->lock);
}

bool lmm__reclaim_poll(struct lmm_domain *d)
{
	return pass(d, true);
}

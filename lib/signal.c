/* SPDX-License-Identifier: MIT */
/*
 * Signals as IPIs, for the schemes that need them. One handler per signal
 * number, shared by every domain that uses it; the application's other
 * signals and handlers are untouched, and the previous action of ours is
 * restored when the last domain using it goes away.
 *
 * A signal that lands while the worker is inside the switch path (critical
 * != 0) only marks sig_pending; the switch path runs the scheme's work as it
 * leaves (critical_exit). The pending state is per worker, never per context
 * (Schwidefsky, "s390/mm,tlb: race of lazy TLB flush vs. recreation of TLB
 * entries", Nov 2013: a per-mm flag loses the switch of a task preempted
 * mid-switch), and no sigprocmask call is needed on the fast path.
 */

#include <signal.h>
#include <string.h>

#include "internal.h"

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	int users;
	struct sigaction old;
} sig_table[65];

void lmm__signal_deferred(struct lmm_worker *w)
{
	/* Relaxed + signal fences: this thread and its own handler only. */
	do {
		atomic_store_explicit(&w->critical, 1, memory_order_relaxed);
		/* Pairs with the handler: while we run, it only marks pending. */
		atomic_signal_fence(memory_order_seq_cst);
		atomic_store_explicit(&w->sig_pending, 0, memory_order_relaxed);
		w->scheme->signal(w);
		/* Pairs with the handler: our work is done before critical drops. */
		atomic_signal_fence(memory_order_seq_cst);
		atomic_store_explicit(&w->critical, 0, memory_order_relaxed);
		/* Pairs with the handler: it saw critical == 0 or left pending for us. */
		atomic_signal_fence(memory_order_seq_cst);
	} while (atomic_load_explicit(&w->sig_pending, memory_order_relaxed));
}

static void handler(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	struct lmm_worker *w = lmm__self;

	if (w && w->domain->signo == sig)
		lmm__membarrier_ack(w); /* any landing serves lmm_membarrier's fallback */
	if (w && w->uses_signals && w->domain->signo == sig) {
		atomic_store_explicit(&w->sig_pending, 1, memory_order_relaxed);
		/* Pairs with critical_enter/exit on this thread. */
		atomic_signal_fence(memory_order_seq_cst);
		if (atomic_load_explicit(&w->critical, memory_order_relaxed) == 0) {
			/* Relaxed: this thread only (critical keeps a nested landing out). */
			atomic_store_explicit(&w->in_handler, true, memory_order_relaxed);
			lmm__signal_deferred(w);
			atomic_store_explicit(&w->in_handler, false, memory_order_relaxed);
		}
	} else if (!w || w->domain->signo != sig) {
		/* Not ours (another domain's signal number, or a stray): chain. */
		struct sigaction *old = &sig_table[sig].old;
		if (old->sa_flags & SA_SIGINFO) {
			if (old->sa_sigaction)
				old->sa_sigaction(sig, si, uc);
		} else if (old->sa_handler != SIG_IGN && old->sa_handler != SIG_DFL &&
			   old->sa_handler) {
			old->sa_handler(sig);
		}
	}
	errno = saved_errno;
}

int lmm__signal_install(struct lmm_domain *d)
{
	int sig = d->signo;
	int ret = 0;

	if (sig <= 0 || sig >= 65 || sig == SIGKILL || sig == SIGSTOP)
		return -EINVAL;
	pthread_mutex_lock(&sig_lock);
	if (sig_table[sig].users == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = handler;
		/*
		 * SA_ONSTACK: a worker that runs green threads on small stacks
		 * gives itself a sigaltstack, and the handler (which may run
		 * switch_ctx towards init) uses it; without one, the interrupted
		 * stack, as before.
		 */
		sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		if (sigaction(sig, &sa, &sig_table[sig].old))
			ret = -errno;
	}
	if (!ret)
		sig_table[sig].users++;
	pthread_mutex_unlock(&sig_lock);
	return ret;
}

void lmm__signal_uninstall(struct lmm_domain *d)
{
	int sig = d->signo;

	pthread_mutex_lock(&sig_lock);
	if (--sig_table[sig].users == 0) {
		/*
		 * A signal of ours may still be pending on a thread that blocks
		 * it (a worker that went offline meanwhile). The previous action
		 * is usually SIG_DFL, which for these numbers terminates the
		 * process when the thread unblocks it. Setting SIG_IGN discards
		 * every pending instance, process-wide and on each thread
		 * (POSIX sigaction, "Signal Actions"); no sender of ours is left
		 * (every worker is offline), so then restoring is safe.
		 */
		struct sigaction ign;
		memset(&ign, 0, sizeof(ign));
		ign.sa_handler = SIG_IGN;
		sigemptyset(&ign.sa_mask);
		sigaction(sig, &ign, NULL);
		sigaction(sig, &sig_table[sig].old, NULL);
	}
	pthread_mutex_unlock(&sig_lock);
}

/* fork(): the table's lock is free in the child (see atfork_phase in domain.c). */
void lmm__signal_atfork(int phase)
{
	if (phase == LMM_FORK_PREPARE)
		pthread_mutex_lock(&sig_lock);
	else
		pthread_mutex_unlock(&sig_lock);
}

bool lmm__signal_blocked(const struct lmm_domain *d)
{
	sigset_t set;
	return pthread_sigmask(SIG_BLOCK, NULL, &set) == 0 && sigismember(&set, d->signo) == 1;
}

bool lmm__signal_worker(struct lmm_worker *w)
{
	bool sent = false;

	/* kill_lock: the thread cannot go offline (and exit) while we hold it. */
	pthread_mutex_lock(&w->kill_lock);
	if (atomic_load_explicit(&w->online, memory_order_relaxed))
		sent = pthread_kill(w->thread, w->domain->signo) == 0;
	pthread_mutex_unlock(&w->kill_lock);
	if (sent) {
		stat_add(w->domain, ST_SIGNALS_SENT, 1);
		LMM_PROBE(signal, w->domain, w->id, w->domain->signo);
	}
	return sent;
}

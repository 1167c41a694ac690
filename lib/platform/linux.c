/* SPDX-License-Identifier: MIT */
/* The platform seam on Linux (glibc and musl). */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#ifndef LMM_NO_MEMBARRIER
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif

#include "platform.h"

#ifndef LMM_NO_MEMBARRIER
/* 0 unknown, 1 registered, -1 unavailable; read inline by lmm_plat_light_fence. */
atomic_int lmm__plat_membarrier_state;

static long sys_membarrier(int cmd, unsigned flags)
{
	return syscall(__NR_membarrier, cmd, flags, 0);
}

bool lmm_plat_membarrier_register(void)
{
	/* Relaxed: registration is idempotent and the kernel orders it. */
	int st = atomic_load_explicit(&lmm__plat_membarrier_state, memory_order_relaxed);
	if (st)
		return st > 0;
	long mask = sys_membarrier(MEMBARRIER_CMD_QUERY, 0);
	st = -1;
	if (mask >= 0 && (mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
	    sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) == 0)
		st = 1;
	atomic_store_explicit(&lmm__plat_membarrier_state, st, memory_order_relaxed);
	return st > 0;
}

bool lmm_plat_have_membarrier(void)
{
	return atomic_load_explicit(&lmm__plat_membarrier_state, memory_order_relaxed) > 0;
}

void lmm_plat_heavy_fence(void)
{
	if (!lmm_plat_have_membarrier()) {
		/* No membarrier: the fast side uses a full fence too (see platform.h;
		 * litmus: hazard-publish). */
		atomic_thread_fence(memory_order_seq_cst);
		return;
	}
	if (sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) == 0)
		return;
	/*
	 * Registered, and now refused (a seccomp filter installed later, say).
	 * The fast sides already rely on a compiler barrier only: a local
	 * fence here would let the store-buffering outcome through. Say so.
	 */
	char msg[160];
	int n = snprintf(msg, sizeof(msg),
			 "lazymm: membarrier(2) PRIVATE_EXPEDITED failed after registration (%s); "
			 "the hazard scheme cannot order its slots\n", strerror(errno));
	if (n > 0 && write(2, msg, (size_t)n) < 0)
		n = 0;
	abort();
}

int lmm_plat_membarrier(void)
{
	if (!lmm_plat_have_membarrier())
		return -ENOSYS;
	return sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) == 0 ? 0 : -errno;
}
#else
int lmm_plat_membarrier(void) { return -ENOSYS; }
bool lmm_plat_membarrier_register(void) { return false; }
bool lmm_plat_have_membarrier(void) { return false; }
void lmm_plat_heavy_fence(void)
{
	/* Pairs with the full fence the fast side issues when membarrier is missing
	 * (litmus: hazard-publish). */
	atomic_thread_fence(memory_order_seq_cst);
}
#endif

int lmm_plat_default_signo(void)
{
#if !defined(LMM_NO_RTSIG) && defined(SIGRTMIN)
	/*
	 * SIGRTMIN+9: clear of glibc/musl internals (below SIGRTMIN), of .NET
	 * and glibc timers (SIGRTMIN itself), liburcu-signal (SIGUSR1), HotSpot
	 * (SIGUSR2), Go (SIGURG) and valgrind (the top of the range).
	 */
	if (SIGRTMIN + 9 <= SIGRTMAX - 4)
		return SIGRTMIN + 9;
#endif
	return SIGUSR2;
}

void lmm_plat_thread_setname(pthread_t t, const char *name)
{
	/* glibc and musl (GNU extension); names are at most 15 characters. */
	pthread_setname_np(t, name);
}

unsigned long long lmm_plat_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

void lmm_plat_sleep_ns(unsigned long long ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };
	while (nanosleep(&ts, &ts) != 0)
		;
}

struct timespec lmm_plat_deadline_ts(unsigned long long ns)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ns += (unsigned long long)ts.tv_nsec;
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	return ts;
}

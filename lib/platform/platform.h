/* SPDX-License-Identifier: MIT */
/*
 * The platform seam: everything lazymm needs from the operating system that
 * is not plain C11 + pthreads. One implementation per system (linux.c); a
 * build on a system without one fails in meson.build with a clear message.
 *
 * Build-time fallbacks, each forced with a meson option so that they are
 * tested on Linux too:
 *   LMM_NO_MEMBARRIER  no membarrier(2): lmm_plat_membarrier_* use fences
 *   LMM_NO_RTSIG       no realtime signals: the default signal is SIGUSR2
 */
#ifndef LMM_PLATFORM_H
#define LMM_PLATFORM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

/*
 * Asymmetric fences. The fast side of a store->load handshake calls
 * lmm_plat_light_fence() (a compiler barrier where membarrier exists, a full
 * fence otherwise); the rare side calls lmm_plat_heavy_fence(), which makes
 * every thread of the process execute a full barrier (membarrier
 * PRIVATE_EXPEDITED), or is a plain full fence in the fallback.
 */
bool lmm_plat_membarrier_register(void);
bool lmm_plat_have_membarrier(void);
void lmm_plat_heavy_fence(void);

/*
 * The fast side of the pair: pairs with lmm_plat_heavy_fence on the rare
 * side. Where membarrier PRIVATE_EXPEDITED is registered (checked at run
 * time: registration happens before any domain that relies on it has a
 * worker, and never changes once decided), the heavy side makes this
 * thread run a full barrier, so a compiler barrier is enough here;
 * otherwise both sides are full seq_cst fences (the classic store->load
 * Dekker pair). Litmus tests: hazard-publish, hazard-late-handoff.
 */
#ifndef LMM_NO_MEMBARRIER
extern __attribute__((visibility("hidden"))) atomic_int lmm__plat_membarrier_state;
static inline void lmm_plat_light_fence(void)
{
	/* Relaxed: the state is final before any thread of a domain relying on it runs. */
	if (__builtin_expect(atomic_load_explicit(&lmm__plat_membarrier_state, memory_order_relaxed) > 0, 1))
		atomic_signal_fence(memory_order_seq_cst); /* pairs with lmm_plat_heavy_fence (membarrier) */
	else
		atomic_thread_fence(memory_order_seq_cst); /* pairs with lmm_plat_heavy_fence's fence */
}
#else
static inline void lmm_plat_light_fence(void)
{
	/* Pairs with the full fence in lmm_plat_heavy_fence. */
	atomic_thread_fence(memory_order_seq_cst);
}
#endif
/*
 * membarrier(PRIVATE_EXPEDITED) and nothing else: 0 once every running thread
 * of the process executed a full barrier; a negative errno (-ENOSYS in the
 * fallback build) if that could not be done. lmm_membarrier needs to know,
 * where lmm_plat_heavy_fence may quietly degrade to a local fence.
 */
int lmm_plat_membarrier(void);

/* Name thread @t (for ps, top, perf); best effort. */
void lmm_plat_thread_setname(pthread_t t, const char *name);

/* The default signal number for domains that need one. */
int lmm_plat_default_signo(void);

/* Monotonic clock in nanoseconds. */
unsigned long long lmm_plat_now_ns(void);

/* Sleep for about ns nanoseconds. */
void lmm_plat_sleep_ns(unsigned long long ns);

/* ns from now on the monotonic clock, for pthread_cond_timedwait on a CLOCK_MONOTONIC cond. */
struct timespec lmm_plat_deadline_ts(unsigned long long ns);

#endif

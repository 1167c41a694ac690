/* SPDX-License-Identifier: MIT */
/*
 * The build-time platform fallbacks are really compiled in when forced:
 * meson passes what it configured (LMM_EXPECT_MEMBARRIER, LMM_EXPECT_RTSIG)
 * and these tests check the library's behaviour against it, so an option
 * that silently stopped reaching lib/platform/ fails here, on Linux, where
 * both the real thing and the fallback can run.
 */

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "platform/platform.h"

#if !defined(LMM_EXPECT_MEMBARRIER) || !defined(LMM_EXPECT_RTSIG)
#error "tests/meson.build passes LMM_EXPECT_MEMBARRIER and LMM_EXPECT_RTSIG"
#endif

/* What the kernel offers, asked directly: 1 yes, 0 no. */
static int kernel_has_private_expedited(void)
{
#ifdef __NR_membarrier
	long mask = syscall(__NR_membarrier, 0 /* MEMBARRIER_CMD_QUERY */, 0, 0);
	return mask >= 0 && (mask & (1 << 3) /* MEMBARRIER_CMD_PRIVATE_EXPEDITED */);
#else
	return 0;
#endif
}

Test(platform, membarrier_as_configured)
{
	bool registered = lmm_plat_membarrier_register();
	int kernel = kernel_has_private_expedited();
	cr_log_info("kernel membarrier PRIVATE_EXPEDITED: %s; build expects %s", kernel ? "yes" : "no",
		    LMM_EXPECT_MEMBARRIER ? "membarrier" : "the fence fallback");
#if LMM_EXPECT_MEMBARRIER
	cr_assert_eq(registered, kernel, "membarrier build: registered iff the kernel has it");
	cr_assert_eq(lmm_plat_have_membarrier(), registered);
	if (registered)
		cr_assert_eq(lmm_plat_membarrier(), 0);
	else
		cr_assert_neq(lmm_plat_membarrier(), 0);
#else
	cr_assert_not(registered, "-Dmembarrier=false must not use membarrier(2)");
	cr_assert_not(lmm_plat_have_membarrier());
	cr_assert_eq(lmm_plat_membarrier(), -ENOSYS, "the fallback build has no membarrier");
#endif
	lmm_plat_heavy_fence(); /* either way it must not fail or hang */
}

Test(platform, default_signal_as_configured)
{
	int signo = lmm_default_signo();
	cr_assert_eq(signo, lmm_plat_default_signo());
#if LMM_EXPECT_RTSIG
	cr_assert_geq(signo, SIGRTMIN, "realtime default expected");
	cr_assert_leq(signo, SIGRTMAX);
#else
	cr_assert_eq(signo, SIGUSR2, "-Drtsig=false: the default must exist on macOS and the BSDs");
#endif
}

/* A domain that needs no explicit signal works with the configured default. */
Test(platform, domains_work_with_the_default_signal)
{
	for (unsigned i = 0; i < H_NSCHEMES; i++) {
		enum lmm_scheme s = h_schemes[i];
		struct lmm_config cfg = { .scheme = s, .ops = &harness_ops };
		struct lmm_domain *d = NULL;
		cr_assert_eq(lmm_domain_create(&cfg, &d), 0, "%s", lmm_scheme_name(s));
		struct lmm_worker *w = NULL;
		cr_assert_eq(lmm_worker_online(d, NULL, &w), 0);
		struct tctx c = { 0 };
		h_tctx_prepare(&c, false);
		cr_assert_eq(lmm_ctx_init(d, &c.ctx), 0);
		lmm_switch(w, &c.ctx);
		lmm_switch(w, NULL);
		lmm_put(&c.ctx);
		cr_assert_eq(lmm_worker_offline(w), 0);
		cr_assert_eq(lmm_barrier(d), 0);
		cr_assert_eq(atomic_load(&c.frees), 1);
		cr_assert_eq(lmm_domain_destroy(d), 0);
	}
}

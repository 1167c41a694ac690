/* SPDX-License-Identifier: MIT */
/*
 * The shim's own test: every test's name says the verdict the runner must
 * give it (pass_, fail_, skip_); with CRITERION_SHIM_SELFTEST=1 the runner
 * checks each verdict and the counts (criterion.c). Built only with
 * -Dcriterion_shim=true.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static int side_effects;
static int bump(void) { return ++side_effects; }

Test(shim, pass_plain) { cr_assert(1); cr_assert_not(0, "message %d", 1); }
Test(shim, pass_compare)
{
	unsigned long u = 3;
	int minus = -1;
	cr_assert_eq(u, 3);
	cr_assert_neq(minus, 0, "%s", "formatted");
	cr_assert_lt(minus, 0);
	cr_assert_gt(u, 2);
	cr_assert_null(NULL);
	cr_assert_not_null(&u);
	cr_assert_str_eq("abc", "abc");
	cr_assert_eq(bump(), 1, "each operand is evaluated once");
	cr_assert_eq(side_effects, 1);
	cr_log_info("log line %d", 42);
}
Test(shim, pass_expected_signal, .signal = SIGABRT) { abort(); }
Test(shim, pass_expected_exit_code, .exit_code = 3) { exit(3); }
Test(shim, pass_under_timeout, .timeout = 10) { usleep(1000); }

Test(shim, fail_assert_eq) { cr_assert_eq(1 + 1, 3, "arithmetic"); }
Test(shim, fail_str_eq) { cr_assert_str_eq("abc", "abd"); }
Test(shim, fail_expect_continues)
{
	cr_expect(0, "first");
	cr_expect_eq(1, 2);
}
Test(shim, fail_crash) { raise(SIGSEGV); }
Test(shim, fail_signal_not_raised, .signal = SIGABRT) { }
Test(shim, fail_wrong_signal, .signal = SIGABRT) { raise(SIGTERM); }
Test(shim, fail_assert_in_expected_signal_test, .signal = SIGABRT) { cr_assert(0); }
Test(shim, fail_timeout, .timeout = 0.2) { for (;;) pause(); }
Test(shim, fail_early_exit) { exit(0); }

static void *assert_on_thread(void *arg)
{
	(void)arg;
	cr_assert_fail("from another thread");
	return NULL;
}
Test(shim, fail_assert_on_other_thread)
{
	pthread_t t;
	pthread_create(&t, NULL, assert_on_thread, NULL);
	pthread_join(t, NULL);
}

Test(shim, skip_skipped) { cr_skip_test("not here"); }
Test(shim, skip_disabled, .disabled = true) { abort(); }

TestSuite(shim_suite, .timeout = 0.2);
Test(shim_suite, fail_suite_timeout) { for (;;) pause(); }
Test(shim_suite, pass_own_timeout_wins, .timeout = 30) { usleep(300 * 1000); }

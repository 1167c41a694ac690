/* SPDX-License-Identifier: MIT */
/*
 * Misuse: every contract violation we can detect gets an error code or an
 * abort whose message names the call; never silent corruption. The abort
 * cases run in a forked child with stderr on a pipe, so the test checks
 * both the SIGABRT and the message. LMM_F_DEBUG's free-time check is proven
 * by breaking the contract on purpose through the internal release (the
 * static library exposes it): a context still installed, current or lazy.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

/* Run fn(arg) in a child; it must die of SIGABRT with `expect` in its stderr. */
static void expect_abort(void (*fn)(void *), void *arg, const char *expect)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 2);
		fn(arg);
		_exit(0); /* not reached if the library caught the misuse */
	}
	close(fds[1]);
	char buf[4096];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(buf) - 1 && (n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = 0;
	close(fds[0]);
	int status = 0;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
		  "expected an abort naming \"%s\"; status %#x, stderr: %s", expect, status, buf);
	cr_assert(strstr(buf, expect), "the abort message does not name \"%s\": %s", expect, buf);
}

/* ---------- counts below zero ---------- */

static void put_below_zero(void *arg)
{
	enum lmm_scheme scheme = *(enum lmm_scheme *)arg;
	struct lmm_domain *d = h_domain_timeout(scheme, 0, 8, 0);
	struct tctx *a = h_ctx(d, true);
	lmm_grab(&a->ctx); /* keeps the struct alive: the users count itself goes negative */
	lmm_put(&a->ctx);
	lmm_put(&a->ctx);
}

static void drop_below_zero(void *arg)
{
	enum lmm_scheme scheme = *(enum lmm_scheme *)arg;
	struct lmm_domain *d = h_domain_timeout(scheme, 0, 8, 0);
	struct tctx *a = h_ctx(d, true);
	a->release_memory = false; /* the second drop reads it: stay inside our memory */
	lmm_put(&a->ctx);      /* users 0 -> the users' count reference goes -> freed */
	lmm_barrier(d);
	lmm_drop(&a->ctx);
}

static void get_after_last_put(void *arg)
{
	enum lmm_scheme scheme = *(enum lmm_scheme *)arg;
	struct lmm_domain *d = h_domain_timeout(scheme, 0, 8, 0);
	struct tctx *a = h_ctx(d, true);
	lmm_grab(&a->ctx);
	lmm_put(&a->ctx);
	lmm_get(&a->ctx);
}

SCHEME_TEST_OPTS(misuse, put_below_zero, .timeout = 30) { expect_abort(put_below_zero, &scheme, "lazymm: lmm_put:"); }
SCHEME_TEST_OPTS(misuse, drop_below_zero, .timeout = 30) { expect_abort(drop_below_zero, &scheme, "lazymm: lmm_drop:"); }
SCHEME_TEST_OPTS(misuse, get_after_last_put, .timeout = 30) { expect_abort(get_after_last_put, &scheme, "lazymm: lmm_get:"); }

/* The same with Criterion's own signal check, for the plain form. */
SCHEME_TEST_OPTS(misuse, put_below_zero_signal, .signal = SIGABRT)
{
	struct lmm_domain *d = h_domain_timeout(scheme, 0, 8, 0);
	struct tctx *a = h_ctx(d, true);
	lmm_grab(&a->ctx);
	lmm_put(&a->ctx);
	lmm_put(&a->ctx);
}

/* ---------- a worker used from a thread that is not that worker ---------- */

struct foreign {
	enum lmm_scheme scheme;
	struct lmm_domain *d;
	struct lmm_worker *w;
	atomic_int state; /* 1 online, 2 may leave */
	pthread_t th;
	void (*misuse)(struct foreign *f);
};

static void *foreign_worker_main(void *arg)
{
	struct foreign *f = arg;
	if (lmm_worker_online(f->d, NULL, &f->w))
		h_fail("online failed");
	atomic_store(&f->state, 1);
	while (atomic_load(&f->state) != 2)
		h_nap_us(500);
	return NULL;
}

static void foreign_child(void *arg)
{
	struct foreign *f = arg;
	f->d = h_domain_timeout(f->scheme, 0, 8, 0);
	atomic_init(&f->state, 0);
	pthread_create(&f->th, NULL, foreign_worker_main, f);
	while (atomic_load(&f->state) != 1)
		h_nap_us(200);
	f->misuse(f);
}

static void foreign_switch(struct foreign *f)
{
	struct tctx *a = h_ctx(f->d, true);
	lmm_switch(f->w, &a->ctx);
}

static void foreign_unlazy(struct foreign *f)
{
	lmm_unlazy(f->w);
}

static void foreign_idle(struct foreign *f)
{
	lmm_idle_enter(f->w);
}

SCHEME_TEST_OPTS(misuse, switch_from_foreign_thread, .timeout = 30)
{
	struct foreign f = { .scheme = scheme, .misuse = foreign_switch };
	expect_abort(foreign_child, &f, "lazymm: lmm_switch: worker");
}

SCHEME_TEST_OPTS(misuse, unlazy_from_foreign_thread, .timeout = 30)
{
	struct foreign f = { .scheme = scheme, .misuse = foreign_unlazy };
	expect_abort(foreign_child, &f, "lazymm: lmm_unlazy: worker");
}

SCHEME_TEST_OPTS(misuse, idle_from_foreign_thread, .timeout = 30)
{
	struct foreign f = { .scheme = scheme, .misuse = foreign_idle };
	expect_abort(foreign_child, &f, "lazymm: lmm_idle_enter: worker");
}

/* ---------- error codes ---------- */

SCHEME_TEST_OPTS(misuse, offline_while_current_or_foreign, .timeout = 30)
{
	struct foreign f = { .scheme = scheme };
	f.d = h_domain_timeout(scheme, 0, 8, 0);
	atomic_init(&f.state, 0);
	cr_assert_eq(pthread_create(&f.th, NULL, foreign_worker_main, &f), 0);
	while (atomic_load(&f.state) != 1)
		h_nap_us(200);
	cr_assert_eq(lmm_worker_offline(f.w), -EPERM, "offline from a thread that is not the worker");

	struct lmm_worker *w = NULL;
	cr_assert_eq(lmm_worker_online(f.d, NULL, &w), 0);
	cr_assert_eq(lmm_worker_online(f.d, NULL, &w), -EEXIST);
	struct tctx *a = h_ctx(f.d, true);
	lmm_switch(w, &a->ctx);
	cr_assert_eq(lmm_worker_offline(w), -EBUSY, "offline while a context is current");
	cr_assert_eq(lmm_active(w), &a->ctx, "the failed offline changed the worker");
	lmm_switch(w, NULL);
	cr_assert_eq(lmm_worker_offline(w), 0);
	lmm_put(&a->ctx);
	atomic_store(&f.state, 2);
	cr_assert_eq(pthread_join(f.th, NULL), 0);
	cr_assert_eq(lmm_barrier(f.d), 0);
	cr_assert_eq(lmm_domain_destroy(f.d), 0);
}

SCHEME_TEST_OPTS(misuse, destroy_while_busy, .timeout = 30)
{
	struct lmm_domain *d = h_domain_timeout(scheme, 0, 8, 0);
	struct lmm_worker *w = NULL;
	cr_assert_eq(lmm_worker_online(d, NULL, &w), 0);
	cr_assert_eq(lmm_domain_destroy(d), -EBUSY, "destroy with a worker online");
	struct tctx *a = h_ctx(d, true);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_domain_destroy(d), -EBUSY, "destroy with a live context");
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

static atomic_int in_free_barrier, in_free_destroy;
static struct lmm_domain *in_free_domain;

static void barrier_in_free(struct lmm_ctx *c)
{
	(void)c;
	atomic_store(&in_free_barrier, lmm_barrier(in_free_domain));
	atomic_store(&in_free_destroy, lmm_domain_destroy(in_free_domain));
}

static void barrier_inside_free(enum lmm_scheme scheme, unsigned flags)
{
	struct lmm_domain *d = h_domain_timeout(scheme, flags, 8, 0);
	in_free_domain = d;
	h_free_extra = barrier_in_free;
	struct tctx *a = h_ctx(d, true);
	lmm_put(&a->ctx);
	cr_assert_eq(lmm_barrier(d), 0);
	h_free_extra = NULL;
	cr_assert_eq(atomic_load(&harness_frees), 1);
	cr_assert_eq(atomic_load(&in_free_barrier), -EDEADLK, "lmm_barrier inside free: %d",
		     atomic_load(&in_free_barrier));
	cr_assert_eq(atomic_load(&in_free_destroy), -EDEADLK);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

SCHEME_TEST_OPTS(misuse, barrier_inside_free, .timeout = 30) { barrier_inside_free(scheme, 0); }
SCHEME_TEST_OPTS(misuse, barrier_inside_deferred_free, .timeout = 30) { barrier_inside_free(scheme, LMM_F_DEFER_FREE); }

SCHEME_TEST_OPTS(misuse, bad_config, .timeout = 30)
{
	struct lmm_config cfg = { .scheme = scheme, .ops = &harness_ops };
	struct lmm_domain *d = NULL;
	struct lmm_ops no_free = harness_ops;
	no_free.free = NULL;
	cfg.ops = &no_free;
	cr_assert_eq(lmm_domain_create(&cfg, &d), -EINVAL);
	cfg.ops = &harness_ops;
	cfg.flags = 0x80;
	cr_assert_eq(lmm_domain_create(&cfg, &d), -EINVAL);
	cfg.flags = 0;
	cfg.max_workers = LMM_MAX_WORKERS + 1;
	cr_assert_eq(lmm_domain_create(&cfg, &d), -EINVAL);
	cfg.max_workers = 0;
	cfg.scheme = (enum lmm_scheme)99;
	cr_assert_eq(lmm_domain_create(&cfg, &d), -EINVAL);
	cfg.scheme = scheme;
	cr_assert_eq(lmm_domain_create(&cfg, &d), 0);
	cr_assert_eq(lmm_ctx_init(d, lmm_init_ctx(d)), -EINVAL);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/* ---------- LMM_F_DEBUG catches a release while installed ---------- */

struct early {
	enum lmm_scheme scheme;
	bool lazy;
};

/*
 * A scheme that lets a free through too early, simulated by calling the
 * core's release directly while the context is installed on worker 0 (the
 * calling thread): current, or lazily held after the last user left.
 */
static void early_release(void *arg)
{
	struct early *e = arg;
	struct lmm_domain *d = h_domain_timeout(e->scheme, LMM_F_DEBUG, 8, 0);
	struct lmm_worker *w = NULL;
	if (lmm_worker_online(d, NULL, &w) || lmm_worker_id(w) != 0)
		h_fail("online");
	struct tctx *a = h_ctx(d, true);
	lmm_grab(&a->ctx); /* our own count reference: the count never reaches 0 by itself */
	lmm_switch(w, &a->ctx);
	if (e->lazy) {
		lmm_switch(w, NULL);
		lmm_put(&a->ctx);
	}
	lmm__ctx_release(&a->ctx);
}

SCHEME_TEST_OPTS(misuse, debug_catches_release_while_current, .timeout = 30)
{
	struct early e = { scheme, false };
	expect_abort(early_release, &e, "is still installed on worker 0 (LMM_F_DEBUG)");
}

SCHEME_TEST_OPTS(misuse, debug_catches_release_while_lazy, .timeout = 30)
{
	struct early e = { scheme, true };
	expect_abort(early_release, &e, "is still installed on worker 0 (LMM_F_DEBUG)");
}

/* Without the early release, the same steps are clean: the check has no false positive. */
SCHEME_TEST_OPTS(misuse, debug_quiet_on_correct_release, .timeout = 30)
{
	struct lmm_domain *d = h_domain_timeout(scheme, LMM_F_DEBUG, 8, 0);
	struct lmm_worker *w = NULL;
	cr_assert_eq(lmm_worker_online(d, NULL, &w), 0);
	struct tctx *a = h_ctx(d, true);
	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL);
	lmm_put(&a->ctx);
	lmm_unlazy(w);
	cr_assert_eq(lmm_barrier(d), 0);
	cr_assert_eq(atomic_load(&harness_frees), 1);
	cr_assert_eq(lmm_worker_offline(w), 0);
	cr_assert_eq(lmm_domain_destroy(d), 0);
}

/* ---------- a context freed while it was current, then held lazily ---------- */

/*
 * The task's reference went (here: lmm_put while current, the way a green
 * thread that yielded, migrated and exited elsewhere drops it) while the
 * worker still had the context current, so nothing held it and it was freed.
 * Going lazy on it then would take a count reference from 0 under hazard: a
 * resurrection and, later, a second free. It must abort instead.
 */
#ifdef LMM_HAVE_HAZARD
/* Hooks that check nothing: the harness's own would catch the free first. */
static void quiet_switch(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)flags;
	(void)w, (void)prev, (void)next;
}

static void quiet_ctx(struct lmm_ctx *ctx)
{
	(void)ctx;
}

static void hazard_lazy_on_freed(void *arg)
{
	(void)arg;
	static const struct lmm_ops ops = { quiet_switch, quiet_ctx, quiet_ctx };
	struct lmm_config cfg = { .scheme = LMM_SCHEME_HAZARD, .ops = &ops };
	static struct lmm_ctx a; /* the free hook leaves it alone: we look after the free */
	struct lmm_domain *d = NULL;
	struct lmm_worker *w = NULL;
	if (lmm_domain_create(&cfg, &d) || lmm_ctx_init(d, &a) || lmm_worker_online(d, NULL, &w))
		h_fail("setup failed");
	lmm_switch(w, &a);
	lmm_put(&a); /* the last reference, while a is current: freed */
	lmm_barrier(d);
	lmm_switch(w, NULL);
}

Test(misuse, lazy_on_freed_hazard, .timeout = 30)
{
	expect_abort(hazard_lazy_on_freed, NULL, "lazymm: lmm_switch:");
}
#endif

/* ---------- contexts of another domain ---------- */

struct cross {
	enum lmm_scheme scheme;
	bool init; /* the other domain's init context, or a context of it */
};

/* A worker of one domain switched to a context of another: always an abort. */
static void cross_domain_switch(void *arg)
{
	struct cross *x = arg;
	struct lmm_domain *mine = h_domain_timeout(x->scheme, 0, 8, 0);
	struct lmm_config cfg = { .scheme = x->scheme, .ops = &harness_ops, .max_workers = 1 };
	struct lmm_domain *other = NULL;
	struct lmm_worker *w = NULL;
	if (lmm_domain_create(&cfg, &other) || lmm_worker_online(mine, NULL, &w))
		h_fail("setup failed");
	struct lmm_ctx *next = x->init ? lmm_init_ctx(other) : &h_ctx(other, true)->ctx;
	lmm_switch(w, next);
}

SCHEME_TEST_OPTS(misuse, switch_to_other_domains_init, .timeout = 30)
{
	struct cross x = { scheme, true };
	expect_abort(cross_domain_switch, &x, "lazymm: lmm_switch:");
}

SCHEME_TEST_OPTS(misuse, switch_to_other_domains_ctx, .timeout = 30)
{
	struct cross x = { scheme, false };
	expect_abort(cross_domain_switch, &x, "lazymm: lmm_switch:");
}

/* ---------- the idle bracket ---------- */

enum idle_misuse { IDLE_SWITCH_CTX, IDLE_SWITCH_NULL, IDLE_NESTED, IDLE_EXIT_UNPAIRED };

struct idle_case {
	enum lmm_scheme scheme;
	enum idle_misuse what;
};

/*
 * No lmm_switch between lmm_idle_enter and lmm_idle_exit: under rcu the
 * worker is RCU-offline there, so a context it switched to could be freed
 * while installed. Every scheme aborts, so a runtime finds out on any.
 */
static void idle_misuse(void *arg)
{
	struct idle_case *c = arg;
	struct lmm_domain *d = h_domain_timeout(c->scheme, 0, 8, 0);
	struct lmm_worker *w = NULL;
	if (lmm_worker_online(d, NULL, &w))
		h_fail("online failed");
	struct tctx *a = h_ctx(d, true);
	lmm_switch(w, &a->ctx);
	lmm_switch(w, NULL);
	if (c->what == IDLE_EXIT_UNPAIRED) {
		lmm_idle_exit(w);
		return;
	}
	lmm_idle_enter(w);
	if (c->what == IDLE_SWITCH_CTX)
		lmm_switch(w, &a->ctx);
	else if (c->what == IDLE_SWITCH_NULL)
		lmm_switch(w, NULL);
	else
		lmm_idle_enter(w);
}

SCHEME_TEST_OPTS(misuse, switch_inside_idle, .timeout = 30)
{
	struct idle_case c = { scheme, IDLE_SWITCH_CTX };
	expect_abort(idle_misuse, &c, "lazymm: lmm_switch: called between lmm_idle_enter and lmm_idle_exit");
	c.what = IDLE_SWITCH_NULL;
	expect_abort(idle_misuse, &c, "lazymm: lmm_switch: called between lmm_idle_enter and lmm_idle_exit");
}

SCHEME_TEST_OPTS(misuse, idle_enter_nested, .timeout = 30)
{
	struct idle_case c = { scheme, IDLE_NESTED };
	expect_abort(idle_misuse, &c, "lazymm: lmm_idle_enter: already idle");
}

SCHEME_TEST_OPTS(misuse, idle_exit_unpaired, .timeout = 30)
{
	struct idle_case c = { scheme, IDLE_EXIT_UNPAIRED };
	expect_abort(idle_misuse, &c, "lazymm: lmm_idle_exit: not idle");
}

/* ---------- membarrier(2) failing after registration ---------- */

#if defined(LMM_HAVE_HAZARD) && !defined(LMM_NO_MEMBARRIER)
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

/* A seccomp filter installed after lmm_domain_create: membarrier(2) fails with EPERM. */
static int try_deny_membarrier(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static void deny_membarrier(void)
{
	if (try_deny_membarrier())
		h_fail("seccomp filter");
}

/*
 * Hazard workers pair a compiler barrier with the last user's membarrier(2).
 * If the call fails, that pair is gone: the library must say so, never fall
 * back to a local fence while the workers keep their compiler barrier.
 */
static void hazard_membarrier_denied(void *arg)
{
	(void)arg;
	struct lmm_domain *d = h_domain_timeout(LMM_SCHEME_HAZARD, 0, 8, 0);
	struct tctx *a = h_ctx(d, true);
	deny_membarrier();
	lmm_put(&a->ctx); /* the last user's heavy fence */
}

Test(misuse, membarrier_fails_after_registration_hazard, .timeout = 30)
{
	struct lmm_domain *d = h_domain_timeout(LMM_SCHEME_HAZARD, 0, 8, 0); /* registers, if it can */
	bool registered = lmm_plat_have_membarrier();
	cr_assert_eq(lmm_domain_destroy(d), 0);
	if (!registered)
		cr_skip_test("the library does not use membarrier(2) here");
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)
		_exit(try_deny_membarrier() ? 1 : 0);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		cr_skip_test("no seccomp filters here (qemu-user does not emulate them)");
	expect_abort(hazard_membarrier_denied, NULL, "lazymm: membarrier");
}
#endif

/* ---------- a hook that calls back into the switch path ---------- */

enum reentry { REENTER_SWITCH, REENTER_UNLAZY, REENTER_IDLE_ENTER, REENTER_IDLE_EXIT, REENTER_QUIESCENT, REENTER_OFFLINE };
static enum reentry reentry_kind;
static struct lmm_ctx *reentry_target;

static void reentering_switch(struct lmm_worker *w, struct lmm_ctx *prev, struct lmm_ctx *next, unsigned flags)
{
	(void)prev, (void)flags;
	if (next == reentry_target) {
		switch (reentry_kind) {
		case REENTER_SWITCH:
			lmm_switch(w, lmm_init_ctx(lmm_ctx_domain(next)));
			break;
		case REENTER_UNLAZY:
			lmm_unlazy(w);
			break;
		case REENTER_IDLE_ENTER:
			lmm_idle_enter(w);
			break;
		case REENTER_IDLE_EXIT:
			lmm_idle_exit(w);
			break;
		case REENTER_QUIESCENT:
			lmm_quiescent(w);
			break;
		case REENTER_OFFLINE:
			lmm_worker_offline(w);
			break;
		}
	}
}

static void reentry(void *arg)
{
	enum lmm_scheme scheme = *(enum lmm_scheme *)arg;
	static struct lmm_ops ops;
	ops = harness_ops;
	ops.switch_ctx = reentering_switch;
	struct lmm_config cfg = { .scheme = scheme, .ops = &ops };
	struct lmm_domain *d = NULL;
	struct lmm_worker *w = NULL;
	if (lmm_domain_create(&cfg, &d) || lmm_worker_online(d, NULL, &w))
		h_fail("setup failed");
	struct tctx *a = h_ctx(d, true);
	reentry_target = &a->ctx;
	lmm_switch(w, &a->ctx);
}

/* switch_ctx calling lmm_switch or lmm_unlazy would install under its own feet. */
SCHEME_TEST_OPTS(misuse, switch_ctx_reenters, .timeout = 30)
{
	reentry_kind = REENTER_SWITCH;
	expect_abort(reentry, &scheme, "lazymm: lmm_switch: called from inside switch_ctx");
	reentry_kind = REENTER_UNLAZY;
	expect_abort(reentry, &scheme, "lazymm: lmm_unlazy: called from inside switch_ctx");
}

/* ---------- a domain that failed to be created leaves no live context behind ---------- */

static void *failed_domain;

static int create_fails(pthread_t *t, void *(*start)(void *), void *arg, const char *name, void *user)
{
	(void)t, (void)start, (void)name, (void)user;
	failed_domain = arg; /* the reclaim thread's argument: the domain being built */
	return EAGAIN;
}

/*
 * lmm_domain_create's error paths free the domain after its init context
 * was made live. Memory given back must not look like a live context when
 * the application reuses it (lmm_ctx_init would say -EBUSY): clear the
 * magic, as lmm_domain_destroy does. Seen through the allocator's reuse of
 * the chunk (glibc); a sanitizer's quarantine never reuses it: skipped.
 */
SCHEME_TEST_OPTS(misuse, failed_create_leaves_no_live_init, .timeout = 30)
{
	struct lmm_config cfg = { .scheme = scheme, .ops = &harness_ops, .flags = LMM_F_DEFER_FREE,
				  .thread_create = create_fails };
	struct lmm_domain *d = NULL;
	failed_domain = NULL;
	cr_assert_eq(lmm_domain_create(&cfg, &d), -EAGAIN);
	cr_assert_not_null(failed_domain);
	void *p = malloc(sizeof(struct lmm_domain)); /* the same size class as the domain's chunk */
	cr_assert_not_null(p);
	bool reused = p == failed_domain;
	/* What lmm_ctx_init would read there: the bytes the domain left (volatile: not initialised by us). */
	unsigned magic = reused ? *(volatile unsigned *)&ctx_impl(&((struct lmm_domain *)p)->init)->magic : 0;
	free(p);
	if (!reused)
		cr_skip_test("the allocator did not hand the domain's memory out again");
	cr_assert_neq(magic, CTX_MAGIC, "a failed lmm_domain_create left its init context live");
}

/* ---------- cancelled while LMM_F_DEBUG's free-time check waits ---------- */

/*
 * The check gives a worker that still shows the context 50 ms to move on
 * (shootdown's self-clear window), napping meanwhile. Simulated with a
 * worker still in a task of the context when its last put comes (refcount
 * frees at once), which leaves a few milliseconds later. The thread that
 * put is cancelled while the check naps: no lazymm call is a cancellation
 * point, so the free still happens, the barrier and destroy say 0.
 */
struct debug_leaver {
	struct lmm_domain *d;
	struct tctx *a, *b;
	atomic_bool ready, leave;
	pthread_t th;
};

static void *debug_leaver_main(void *arg)
{
	struct debug_leaver *l = arg;
	struct lmm_worker *w = NULL;
	if (lmm_worker_online(l->d, NULL, &w))
		h_fail("online");
	lmm_switch(w, &l->a->ctx);
	atomic_store(&l->ready, true);
	while (!atomic_load(&l->leave))
		h_nap_us(100);
	lmm_switch(w, &l->b->ctx); /* the check sees a's active go */
	lmm_switch(w, NULL);
	lmm_unlazy(w);
	if (lmm_worker_offline(w))
		h_fail("offline");
	return NULL;
}

struct debug_putter {
	struct tctx *a;
	atomic_bool putting, returned;
};

static void *debug_putter_main(void *arg)
{
	struct debug_putter *p = arg;
	atomic_store(&p->putting, true);
	lmm_put(&p->a->ctx); /* final: the check waits for the leaver */
	atomic_store(&p->returned, true);
	for (;;)
		pause(); /* a cancellation point: the test cancels us here at the latest */
	return NULL;
}

Test(misuse, cancel_in_debug_free_check_refcount, .timeout = 30)
{
#ifdef LMM_TEST_TSAN
	cr_skip_test("pthread_cancel under TSan (google/sanitizers#646)");
#endif
	struct debug_leaver l = { .d = h_domain_timeout(LMM_SCHEME_REFCOUNT, LMM_F_DEBUG, 8, 0) };
	l.a = h_ctx(l.d, true);
	l.b = h_ctx(l.d, true);
	cr_assert_eq(pthread_create(&l.th, NULL, debug_leaver_main, &l), 0);
	while (!atomic_load(&l.ready))
		h_nap_us(100);
	struct debug_putter p = { .a = l.a };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, debug_putter_main, &p), 0);
	while (!atomic_load(&p.putting))
		h_nap_us(100);
	h_nap_us(3000); /* inside the check's naps */
	cr_assert_eq(pthread_cancel(t), 0); /* acted on at pause(), after lmm_put returned */
	atomic_store(&l.leave, true); /* well inside the check's 50 ms */
	void *res;
	cr_assert_eq(pthread_join(t, &res), 0);
	cr_assert_eq(res, PTHREAD_CANCELED);
	cr_assert(atomic_load(&p.returned), "lmm_put was cancelled inside LMM_F_DEBUG's free-time check");
	cr_assert_eq(pthread_join(l.th, NULL), 0);
	cr_assert_eq(atomic_load(&harness_frees), 1);
	lmm_put(&l.b->ctx);
	cr_assert_eq(lmm_barrier(l.d), 0);
	cr_assert_eq(atomic_load(&harness_frees), 2);
	cr_assert_eq(lmm_domain_destroy(l.d), 0);
}

/* The idle bracket, a quiescent report and going offline are the worker loop's, never a hook's. */
SCHEME_TEST_OPTS(misuse, switch_ctx_calls_the_worker_loop, .timeout = 30)
{
	reentry_kind = REENTER_IDLE_ENTER;
	expect_abort(reentry, &scheme, "lazymm: lmm_idle_enter: called from inside switch_ctx");
	reentry_kind = REENTER_IDLE_EXIT;
	expect_abort(reentry, &scheme, "lazymm: lmm_idle_exit: called from inside switch_ctx");
	reentry_kind = REENTER_QUIESCENT;
	expect_abort(reentry, &scheme, "lazymm: lmm_quiescent: called from inside switch_ctx");
	reentry_kind = REENTER_OFFLINE;
	expect_abort(reentry, &scheme, "lazymm: lmm_worker_offline: called from inside switch_ctx");
}

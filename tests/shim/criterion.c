/* SPDX-License-Identifier: MIT */
/*
 * The runner behind tests/shim/criterion/criterion.h: a fork per test, up to
 * --jobs at once, each child's output captured to a file and printed when it
 * ends. A test's outcome is written by the child into a shared page; the
 * parent trusts it only if the child also exited with status 0, so that a
 * sanitizer report at exit (LSan leaks, TSan races) fails the test.
 *
 * Options: --jobs=N (-jN), --filter=GLOB (matched against "suite/name"),
 * --verbose, --list. CRITERION_SHIM_TIMEOUT_SCALE=F multiplies every test's
 * timeout (slow emulators and sanitizers). CRITERION_SHIM_SELFTEST=1 is for
 * selftest.c: each test's name says its verdict (pass_, fail_, skip_), and
 * the run succeeds iff every verdict matches (checked here, in the program,
 * so that it also works through a cross build's exe_wrapper).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criterion/criterion.h"

enum outcome { OUT_NONE, OUT_RUNNING, OUT_PASSED, OUT_FAILED, OUT_SKIPPED };

static struct shim_test *tests;
static struct shim_suite *suites;
static unsigned ntests;
static bool selftest;
static unsigned selftest_mismatches;

/* In a child: its own slot of the shared outcome page, and its test. */
static volatile int *my_outcome;
static volatile int my_nonfatal_failures;

void shim_register_test(struct shim_test *t)
{
	t->next = tests;
	tests = t;
	ntests++;
}

void shim_register_suite(struct shim_suite *s)
{
	s->next = suites;
	suites = s;
}

/* Formatted output straight to fd 2, unbuffered: safe with other threads running. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	for (int off = 0; off < n;) {
		ssize_t w = write(2, buf + off, (size_t)(n - off));
		if (w <= 0)
			break;
		off += (int)w;
	}
}

/* The user's message, if any: the macros prefix every format with a space. */
static void say_message(const char *fmt, va_list ap)
{
	if (!fmt || !fmt[0] || !fmt[1])
		return;
	char buf[1024];
	vsnprintf(buf, sizeof(buf), fmt + 1, ap);
	say("  %s\n", buf);
}

_Noreturn void shim_abort_test(void)
{
	if (my_outcome)
		*my_outcome = OUT_FAILED;
	/* _exit: atexit handlers would race with the test's other threads. */
	_exit(1);
}

static void failed(enum shim_kind kind)
{
	if (kind == SHIM_FATAL)
		shim_abort_test();
	my_nonfatal_failures++;
}

void shim_report(enum shim_kind kind, const char *file, int line, const char *expr,
		 const char *fmt, ...)
{
	say("%s:%d: %s failed: %s\n", file, line, kind == SHIM_FATAL ? "assertion" : "expectation",
	    expr);
	va_list ap;
	va_start(ap, fmt);
	say_message(fmt, ap);
	va_end(ap);
	failed(kind);
}

void shim_report_cmp(enum shim_kind kind, const char *file, int line, const char *expr,
		     struct shim_val a, struct shim_val b, const char *fmt, ...)
{
	say("%s:%d: %s failed: %s\n  left: %s, right: %s\n", file, line,
	    kind == SHIM_FATAL ? "assertion" : "expectation", expr, a.text, b.text);
	va_list ap;
	va_start(ap, fmt);
	say_message(fmt, ap);
	va_end(ap);
	failed(kind);
}

_Noreturn void shim_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	say("skipped\n");
	say_message(fmt, ap);
	va_end(ap);
	if (my_outcome)
		*my_outcome = OUT_SKIPPED;
	exit(0);
}

void shim_log(const char *level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt + 1, ap);
	va_end(ap);
	say("[%s] %s\n", level, buf);
}

struct shim_val shim_show_ll(long long v)
{
	struct shim_val s;
	snprintf(s.text, sizeof(s.text), "%lld", v);
	return s;
}

struct shim_val shim_show_ull(unsigned long long v)
{
	struct shim_val s;
	snprintf(s.text, sizeof(s.text), "%llu (0x%llx)", v, v);
	return s;
}

struct shim_val shim_show_d(long double v)
{
	struct shim_val s;
	snprintf(s.text, sizeof(s.text), "%Lg", v);
	return s;
}

struct shim_val shim_show_s(const char *str)
{
	struct shim_val s;
	if (str)
		snprintf(s.text, sizeof(s.text), "\"%.58s\"", str);
	else
		snprintf(s.text, sizeof(s.text), "(null)");
	return s;
}

struct shim_val shim_show_p(const volatile void *p)
{
	struct shim_val s;
	snprintf(s.text, sizeof(s.text), "%p", (const void *)p);
	return s;
}

/* --- the parent --- */

struct run {
	struct shim_test *t;
	pid_t pid;
	FILE *out;
	double start, deadline;
	bool timed_out;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int by_name(const void *a, const void *b)
{
	const struct shim_test *x = *(struct shim_test *const *)a, *y = *(struct shim_test *const *)b;
	int c = strcmp(x->suite, y->suite);
	return c ? c : strcmp(x->name, y->name);
}

/* A suite's defaults fill whatever the test left zero. */
static void apply_suite(struct shim_test *t)
{
	for (struct shim_suite *s = suites; s; s = s->next) {
		if (strcmp(s->name, t->suite))
			continue;
		struct criterion_test_extra_data *d = &t->data;
		if (!d->timeout)
			d->timeout = s->data.timeout;
		if (!d->signal)
			d->signal = s->data.signal;
		if (!d->exit_code)
			d->exit_code = s->data.exit_code;
		if (!d->init)
			d->init = s->data.init;
		if (!d->fini)
			d->fini = s->data.fini;
		d->disabled = d->disabled || s->data.disabled;
	}
}

static _Noreturn void child_main(struct shim_test *t, volatile int *outcome, int outfd)
{
	/* Expected crashes should not litter the build directory with cores. */
	struct rlimit no_core = { 0, 0 };
	setrlimit(RLIMIT_CORE, &no_core);
	setpgid(0, 0);
	dup2(outfd, 1);
	dup2(outfd, 2);
	close(outfd);
	setvbuf(stdout, NULL, _IONBF, 0);
	my_outcome = outcome;
	*outcome = OUT_RUNNING;
	if (t->data.init)
		t->data.init();
	t->fn();
	if (t->data.fini)
		t->data.fini();
	*outcome = my_nonfatal_failures ? OUT_FAILED : OUT_PASSED;
	exit(0); /* not _exit: LSan and TSan report from their atexit hooks */
}

static void dump_output(FILE *f)
{
	char line[4096];
	rewind(f);
	while (fgets(line, sizeof(line), f))
		printf("    %s%s", line, strchr(line, '\n') ? "" : "\n");
	fclose(f);
}

static void note_selftest(const struct shim_test *t, int verdict)
{
	static const char *const want[] = { "pass_", "fail_", "skip_" };
	if (strncmp(t->name, want[verdict], 5)) {
		printf("selftest: %s::%s got the wrong verdict\n", t->suite, t->name);
		selftest_mismatches++;
	}
}

/* Returns 0 passed, 1 failed, 2 skipped, and prints the verdict. */
static int judge(struct run *r, int status, int outcome, bool verbose)
{
	struct shim_test *t = r->t;
	char why[160] = "";
	int verdict = 1;

	if (r->timed_out)
		snprintf(why, sizeof(why), "timed out after %gs", r->deadline - r->start);
	else if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		if (t->data.signal == sig)
			verdict = 0;
		else
			snprintf(why, sizeof(why), "crashed: signal %d (%s)%s", sig, strsignal(sig),
				 t->data.signal ? ", expected another" : "");
	} else if (t->data.signal) {
		snprintf(why, sizeof(why), "expected signal %d (%s), exited with %d",
			 t->data.signal, strsignal(t->data.signal), WEXITSTATUS(status));
	} else if (t->data.exit_code && outcome != OUT_FAILED) {
		if (WEXITSTATUS(status) == t->data.exit_code)
			verdict = 0;
		else
			snprintf(why, sizeof(why), "expected exit code %d, got %d", t->data.exit_code,
				 WEXITSTATUS(status));
	} else if (WEXITSTATUS(status) == 0 && outcome == OUT_PASSED) {
		verdict = 0;
	} else if (WEXITSTATUS(status) == 0 && outcome == OUT_SKIPPED) {
		verdict = 2;
	} else if (outcome == OUT_FAILED) {
		snprintf(why, sizeof(why), "assertion failed");
	} else if (outcome == OUT_RUNNING) {
		snprintf(why, sizeof(why), "exited with %d before the test returned",
			 WEXITSTATUS(status));
	} else {
		snprintf(why, sizeof(why), "exit status %d after the test returned (sanitizer report?)",
			 WEXITSTATUS(status));
	}
	static const char *const tag[] = { "PASS", "FAIL", "SKIP" };
	if (selftest)
		note_selftest(t, verdict);
	printf("[%s] %s::%s (%.2fs)%s%s\n", tag[verdict], t->suite, t->name, now_s() - r->start,
	       why[0] ? ": " : "", why);
	if (verdict == 1 || verbose) {
		dump_output(r->out);
	} else {
		long size = (fseek(r->out, 0, SEEK_END), ftell(r->out));
		if (size > 0)
			dump_output(r->out); /* cr_log_* and skip reasons */
		else
			fclose(r->out);
	}
	fflush(stdout);
	return verdict;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--jobs=N] [--filter=SUITE/NAME-GLOB] [--verbose] [--list]\n",
		argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	long jobs = sysconf(_SC_NPROCESSORS_ONLN);
	const char *filter = NULL;
	bool verbose = false, list = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strncmp(a, "--jobs=", 7))
			jobs = atol(a + 7);
		else if (!strncmp(a, "-j", 2) && a[2])
			jobs = atol(a + 2);
		else if ((!strcmp(a, "--jobs") || !strcmp(a, "-j")) && i + 1 < argc)
			jobs = atol(argv[++i]);
		else if (!strncmp(a, "--filter=", 9))
			filter = a + 9;
		else if (!strcmp(a, "--filter") && i + 1 < argc)
			filter = argv[++i];
		else if (!strncmp(a, "--verbose", 9))
			verbose = true;
		else if (!strcmp(a, "--list"))
			list = true;
		else
			usage(argv[0]);
	}
	if (jobs < 1)
		jobs = 1;
	selftest = getenv("CRITERION_SHIM_SELFTEST") != NULL;
	double scale = 1;
	const char *s = getenv("CRITERION_SHIM_TIMEOUT_SCALE");
	if (s && atof(s) > 0)
		scale = atof(s);

	struct shim_test **all = calloc(ntests + 1, sizeof(*all));
	unsigned n = 0;
	for (struct shim_test *t = tests; t; t = t->next) {
		char full[256];
		snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
		if (!filter || fnmatch(filter, full, 0) == 0)
			all[n++] = t;
	}
	qsort(all, n, sizeof(*all), by_name);
	if (list) {
		for (unsigned i = 0; i < n; i++)
			printf("%s/%s\n", all[i]->suite, all[i]->name);
		return 0;
	}

	volatile int *outcomes = mmap(NULL, (n + 1) * sizeof(int), PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct run *runs = calloc(n + 1, sizeof(*runs));
	if (outcomes == MAP_FAILED || !runs || !all) {
		perror("criterion shim");
		return 2;
	}
	unsigned next = 0, running = 0, passed = 0, failedn = 0, skipped = 0;
	double t0 = now_s();

	while (next < n || running) {
		while (next < n && running < (unsigned)jobs) {
			unsigned i = next++;
			struct run *r = &runs[i];
			r->t = all[i];
			apply_suite(r->t);
			if (r->t->data.disabled) {
				printf("[SKIP] %s::%s: disabled\n", r->t->suite, r->t->name);
				if (selftest)
					note_selftest(r->t, 2);
				skipped++;
				continue;
			}
			r->out = tmpfile();
			if (!r->out) {
				perror("criterion shim: tmpfile");
				return 2;
			}
			outcomes[i] = OUT_NONE;
			fflush(NULL);
			r->start = now_s();
			r->deadline = r->t->data.timeout > 0 ? r->start + r->t->data.timeout * scale : 0;
			r->pid = fork();
			if (r->pid < 0) {
				perror("criterion shim: fork");
				return 2;
			}
			if (r->pid == 0)
				child_main(r->t, &outcomes[i], fileno(r->out));
			running++;
		}
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno != EINTR) {
			perror("criterion shim: waitpid");
			return 2;
		}
		if (pid > 0) {
			for (unsigned i = 0; i < next; i++) {
				if (runs[i].pid != pid)
					continue;
				runs[i].pid = 0;
				running--;
				int v = judge(&runs[i], status, outcomes[i], verbose);
				passed += v == 0;
				failedn += v == 1;
				skipped += v == 2;
				break;
			}
			continue;
		}
		double now = now_s();
		for (unsigned i = 0; i < next; i++) {
			struct run *r = &runs[i];
			if (r->pid > 0 && r->deadline && now > r->deadline && !r->timed_out) {
				r->timed_out = true;
				kill(-r->pid, SIGKILL);
				kill(r->pid, SIGKILL);
			}
		}
		struct timespec nap = { 0, 2 * 1000 * 1000 };
		nanosleep(&nap, NULL);
	}
	printf("%u tests in %.1fs\n%u passed, %u failed, %u skipped\n", n, now_s() - t0, passed,
	       failedn, skipped);
	if (selftest) {
		if (selftest_mismatches || passed != 6 || failedn != 11 || skipped != 2) {
			printf("selftest: FAILED (%u wrong verdicts; want 6 passed, 11 failed, 2 skipped)\n",
			       selftest_mismatches);
			return 1;
		}
		printf("selftest: every verdict as named\n");
		return 0;
	}
	return failedn ? 1 : 0;
}

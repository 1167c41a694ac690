/* SPDX-License-Identifier: MIT */
/*
 * A minimal stand-in for Criterion 2.4, covering the part of its API that
 * lazymm's tests use. It exists because Criterion cannot start under
 * ThreadSanitizer (Snaipe/Criterion#274), nor be had for every target we
 * cross-build; built with meson -Dcriterion_shim=true.
 *
 * Same model as Criterion: every test runs in its own forked process, with
 * an optional timeout (seconds) and an optional expected signal or exit
 * code. An assertion failure ends the test at once; cr_expect_* only mark it
 * failed. The runner (criterion.c) accepts --jobs=N, --filter=GLOB on
 * "suite/name", --verbose and --list, and ends with "N passed, N failed,
 * N skipped".
 */
#ifndef LMM_CRITERION_SHIM_H
#define LMM_CRITERION_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h> /* as <criterion/criterion.h> does: tests may rely on it */
#include <string.h>

struct criterion_test_extra_data {
	double timeout;         /* seconds; 0 = none */
	int signal;             /* the test passes only if it dies of this */
	int exit_code;          /* the test passes only if it exits with this */
	bool disabled;
	const char *description;
	void (*init)(void);
	void (*fini)(void);
	int sentinel_;
};

struct shim_test {
	const char *suite, *name;
	void (*fn)(void);
	struct criterion_test_extra_data data;
	struct shim_test *next;
};

struct shim_suite {
	const char *name;
	struct criterion_test_extra_data data;
	struct shim_suite *next;
};

void shim_register_test(struct shim_test *t);
void shim_register_suite(struct shim_suite *s);

#define Test(...) SHIM_TEST_(__VA_ARGS__, .sentinel_ = 0)
#define SHIM_TEST_(suite_, name_, ...)                                                  \
	static void suite_##_##name_##_shim_fn(void);                                   \
	static struct shim_test suite_##_##name_##_shim_desc = {                        \
		.suite = #suite_, .name = #name_, .fn = suite_##_##name_##_shim_fn,     \
		.data = { __VA_ARGS__ } };                                              \
	__attribute__((constructor)) static void suite_##_##name_##_shim_reg(void)     \
	{                                                                               \
		shim_register_test(&suite_##_##name_##_shim_desc);                      \
	}                                                                               \
	static void suite_##_##name_##_shim_fn(void)

/* Defaults for every test of a suite; a test's own non-zero fields win. */
#define TestSuite(...) SHIM_SUITE_(__VA_ARGS__, .sentinel_ = 0)
#define SHIM_SUITE_(suite_, ...)                                                        \
	static struct shim_suite suite_##_shim_suite = { .name = #suite_,                \
							 .data = { __VA_ARGS__ } };     \
	__attribute__((constructor)) static void suite_##_shim_suite_reg(void)          \
	{                                                                               \
		shim_register_suite(&suite_##_shim_suite);                              \
	}                                                                               \
	struct shim_suite_semicolon_

/* --- reporting: the fatal ones end the test process --- */

enum shim_kind { SHIM_FATAL, SHIM_NONFATAL };

_Noreturn void shim_abort_test(void);
void shim_report(enum shim_kind kind, const char *file, int line, const char *expr,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
_Noreturn void shim_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void shim_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Values of a failed comparison, printed for the report. The message, when
 * given, is a string literal glued to " " so that an absent one is still a
 * valid format (the leading space is skipped when printing).
 */
struct shim_val { char text[64]; };
struct shim_val shim_show_ll(long long v);
struct shim_val shim_show_ull(unsigned long long v);
struct shim_val shim_show_d(long double v);
struct shim_val shim_show_p(const volatile void *p);
struct shim_val shim_show_s(const char *s);
#define SHIM_SHOW_(x) _Generic((x),                                                     \
	_Bool: shim_show_ull, char: shim_show_ll, signed char: shim_show_ll,            \
	unsigned char: shim_show_ull, short: shim_show_ll, unsigned short: shim_show_ull, \
	int: shim_show_ll, unsigned: shim_show_ull, long: shim_show_ll,                 \
	unsigned long: shim_show_ull, long long: shim_show_ll,                          \
	unsigned long long: shim_show_ull, float: shim_show_d, double: shim_show_d,     \
	long double: shim_show_d, default: shim_show_p)(x)
void shim_report_cmp(enum shim_kind kind, const char *file, int line, const char *expr,
		     struct shim_val a, struct shim_val b, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

#define SHIM_CHECK_(kind, cond, expr, ...)                                              \
	do {                                                                            \
		if (!(cond))                                                            \
			shim_report(kind, __FILE__, __LINE__, expr, " " __VA_ARGS__);     \
	} while (0)
/*
 * Criterion compares (a) op (b) inside a system-header macro, where the
 * compiler does not warn about mixed signedness; the comparison here is of
 * copies, so say the same explicitly rather than make every caller cast.
 */
#define SHIM_MIXED_SIGNS_OK_(stmt)                                                      \
	_Pragma("GCC diagnostic push")                                                  \
	_Pragma("GCC diagnostic ignored \"-Wsign-compare\"")                            \
	stmt                                                                            \
	_Pragma("GCC diagnostic pop")
/* Each operand is evaluated once: a side effect in it happens exactly once. */
#define SHIM_CMP_(kind, op, a, b, ...)                                                  \
	do {                                                                            \
		__typeof__(a) shim_a_ = (a);                                            \
		__typeof__(b) shim_b_ = (b);                                            \
		SHIM_MIXED_SIGNS_OK_(bool shim_ok_ = shim_a_ op shim_b_;)               \
		if (!shim_ok_)                                                          \
			shim_report_cmp(kind, __FILE__, __LINE__, #a " " #op " " #b,    \
					SHIM_SHOW_(shim_a_), SHIM_SHOW_(shim_b_),       \
					" " __VA_ARGS__);                               \
	} while (0)
#define SHIM_STR_(kind, op, a, b, ...)                                                  \
	do {                                                                            \
		const char *shim_a_ = (a), *shim_b_ = (b);                              \
		if (!(shim_a_ && shim_b_ && strcmp(shim_a_, shim_b_) op 0))             \
			shim_report_cmp(kind, __FILE__, __LINE__, #a " " #op " " #b,    \
					shim_show_s(shim_a_), shim_show_s(shim_b_),     \
					" " __VA_ARGS__);                               \
	} while (0)

#define cr_assert(cond, ...) SHIM_CHECK_(SHIM_FATAL, cond, #cond, __VA_ARGS__)
#define cr_assert_not(cond, ...) SHIM_CHECK_(SHIM_FATAL, !(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_assert_null(p, ...) SHIM_CHECK_(SHIM_FATAL, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) SHIM_CHECK_(SHIM_FATAL, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) SHIM_CMP_(SHIM_FATAL, ==, a, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) SHIM_CMP_(SHIM_FATAL, !=, a, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) SHIM_CMP_(SHIM_FATAL, <, a, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) SHIM_CMP_(SHIM_FATAL, <=, a, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) SHIM_CMP_(SHIM_FATAL, >, a, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) SHIM_CMP_(SHIM_FATAL, >=, a, b, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) SHIM_STR_(SHIM_FATAL, ==, a, b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) SHIM_STR_(SHIM_FATAL, !=, a, b, __VA_ARGS__)
#define cr_assert_fail(...) SHIM_CHECK_(SHIM_FATAL, 0, "cr_assert_fail", __VA_ARGS__)

#define cr_expect(cond, ...) SHIM_CHECK_(SHIM_NONFATAL, cond, #cond, __VA_ARGS__)
#define cr_expect_not(cond, ...) SHIM_CHECK_(SHIM_NONFATAL, !(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_expect_null(p, ...) SHIM_CHECK_(SHIM_NONFATAL, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) SHIM_CHECK_(SHIM_NONFATAL, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_eq(a, b, ...) SHIM_CMP_(SHIM_NONFATAL, ==, a, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) SHIM_CMP_(SHIM_NONFATAL, !=, a, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) SHIM_CMP_(SHIM_NONFATAL, <, a, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) SHIM_CMP_(SHIM_NONFATAL, <=, a, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) SHIM_CMP_(SHIM_NONFATAL, >, a, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) SHIM_CMP_(SHIM_NONFATAL, >=, a, b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) SHIM_STR_(SHIM_NONFATAL, ==, a, b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) SHIM_STR_(SHIM_NONFATAL, !=, a, b, __VA_ARGS__)
#define cr_expect_fail(...) SHIM_CHECK_(SHIM_NONFATAL, 0, "cr_expect_fail", __VA_ARGS__)

#define cr_skip_test(...) shim_skip(" " __VA_ARGS__)
#define cr_fatal(...) SHIM_CHECK_(SHIM_FATAL, 0, "cr_fatal", __VA_ARGS__)
#define cr_log_info(...) shim_log("info", " " __VA_ARGS__)
#define cr_log_warn(...) shim_log("warn", " " __VA_ARGS__)
#define cr_log_error(...) shim_log("error", " " __VA_ARGS__)
#define criterion_abort_test() shim_abort_test()

#endif

/* SPDX-License-Identifier: MIT */
/* LMM_TEST_TSAN: defined when the tests are built with ThreadSanitizer (gcc or clang). */
#ifndef LMM_TEST_SANITIZER_H
#define LMM_TEST_SANITIZER_H
#if defined(__SANITIZE_THREAD__)
#define LMM_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LMM_TEST_TSAN 1
#endif
#endif
#endif

/* SPDX-License-Identifier: MIT */
/*
 * pingpong's M:N green-thread scheduler (greenthreads.c): one scheduler per
 * worker thread and a pair of tasks that hand a token to each other. The
 * stacks switch with a few instructions on x86-64; elsewhere, and under
 * sanitizers (which must see every stack switch), with ucontext, whose
 * sigprocmask system call then dominates pingpong.
 */
#ifndef LMM_BENCH_GREENTHREADS_H
#define LMM_BENCH_GREENTHREADS_H

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LMMB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LMMB_SANITIZED 1
#endif
#endif
#if defined(__x86_64__) && !defined(LMMB_SANITIZED)
#define LMMB_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

struct gtask {
	void *sp;
#ifndef LMMB_ASM_SWITCH
	ucontext_t uc;
#endif
	struct gtask *partner;
	struct gsched *sched;
	void *stack;
};

struct gsched {
	void *sp; /* the scheduler's own stack while a task runs */
#ifndef LMMB_ASM_SWITCH
	ucontext_t uc;
#endif
	struct gtask *runnable; /* one slot: the token makes exactly one of a pair runnable */
	struct gtask *running;
	struct gtask *pair[2];
};

#ifdef LMMB_ASM_SWITCH
/* Saves the callee-saved registers on the current stack, swaps stacks, restores. */
void lmmb_stack_swap(void **save_sp, void *to_sp);
#endif

/* s runs on this thread with the pair a, b; a is runnable. */
void gsched_start(struct gsched *s, struct gtask *a, struct gtask *b);
/* The tasks are parked on their own stacks forever: dropping the stacks ends them. */
void gsched_end(struct gsched *s);

/* Runs t until it hands the token on and blocks. */
static inline void gsched_to_task(struct gsched *s, struct gtask *t)
{
#ifdef LMMB_ASM_SWITCH
	lmmb_stack_swap(&s->sp, t->sp);
#else
	swapcontext(&s->uc, &t->uc);
#endif
}

#endif /* LMM_BENCH_GREENTHREADS_H */

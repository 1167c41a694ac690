/* SPDX-License-Identifier: MIT */
/* pingpong's green threads: see greenthreads.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "greenthreads.h"

#define GSTACK (64 * 1024)

#ifdef LMMB_ASM_SWITCH
__asm__(".text\n"
	".globl lmmb_stack_swap\n"
	".type lmmb_stack_swap,@function\n"
	"lmmb_stack_swap:\n"
	"\tpushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
	"\tmovq %rsp, (%rdi)\n"
	"\tmovq %rsi, %rsp\n"
	"\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n"
	"\tret\n"
	".size lmmb_stack_swap, .-lmmb_stack_swap\n");
#endif

static __thread struct gsched *cur_sched;

static void gtask_to_sched(struct gtask *me)
{
#ifdef LMMB_ASM_SWITCH
	lmmb_stack_swap(&me->sp, me->sched->sp);
#else
	swapcontext(&me->uc, &me->sched->uc);
#endif
}

/* A task's whole life: hand the token to the partner, block until it comes back. */
static void gtask_main(void)
{
	struct gtask *me = cur_sched->running;
	for (;;) {
		me->sched->runnable = me->partner;
		gtask_to_sched(me);
	}
}

static void gtask_init(struct gtask *t, struct gsched *s, struct gtask *partner)
{
	t->sched = s;
	t->partner = partner;
	t->stack = aligned_alloc(64, GSTACK);
	if (!t->stack) {
		perror("lmm-bench: stack");
		exit(1);
	}
#ifdef LMMB_ASM_SWITCH
	uintptr_t top = ((uintptr_t)t->stack + GSTACK) & ~(uintptr_t)15;
	void **sp = (void **)top;
	*--sp = NULL;                          /* gtask_main's return slot: entry sees rsp % 16 == 8 */
	*--sp = (void *)(uintptr_t)gtask_main; /* lmmb_stack_swap's ret lands here */
	for (int i = 0; i < 6; i++)
		*--sp = NULL; /* rbp rbx r12 r13 r14 r15 */
	t->sp = sp;
#else
	getcontext(&t->uc);
	t->uc.uc_stack.ss_sp = t->stack;
	t->uc.uc_stack.ss_size = GSTACK;
	t->uc.uc_link = NULL;
	makecontext(&t->uc, gtask_main, 0);
#endif
}

void gsched_start(struct gsched *s, struct gtask *a, struct gtask *b)
{
	memset(s, 0, sizeof(*s));
	gtask_init(a, s, b);
	gtask_init(b, s, a);
	s->pair[0] = a;
	s->pair[1] = b;
	cur_sched = s;
	s->runnable = a;
}

void gsched_end(struct gsched *s)
{
	free(s->pair[0]->stack);
	free(s->pair[1]->stack);
	cur_sched = NULL;
}

/*
 * Promela model of the shootdown scheme: lib/scheme/shootdown.c on top of
 * the core's switch path (lib/switch.c), signal deferral (lib/signal.c,
 * lib/internal.h critical_enter/critical_exit and their _outer forms) and
 * offline (lib/worker.c do_offline). Names below are the code's; each step
 * cites the function it stands for (no line numbers: they go stale).
 *
 * Parties: NW = 2 worker threads, each with its signal handler as a separate
 * process (the handler interrupts its thread between any two steps and runs
 * to completion before the thread resumes), and main, a non-worker thread.
 * Contexts: 0 = init, 1 = A, 2 = B; NUL (3) is NULL (current, or lmm_switch's
 * next for a context-less task). Main holds one reference on each of A and B
 * and drops it at any time; a worker may take a reference while someone else
 * holds one (lmm_get/lmm_grab), run a task of it, go lazy, run context-less
 * tasks, drop its reference (maybe the last: it runs count_zero itself),
 * maybe run a task of init, unlazy, and finally go offline and exit.
 *
 * The switch is the code's: going lazy (lazy_enter) and the
 * lazy hit (lazy_hit) run OUTSIDE the critical bracket, as separate steps
 * (switch_body reads current, then active, then stores current), so the
 * handler lands between any two of them and, critical being 0, does its work
 * at once. Only switch_slow brackets (critical_enter_outer/exit_outer) and
 * reads active again inside; a lazy hit it finds there (a handler moved the
 * worker to init and next is init) is modelled too (a task of init).
 *
 * Checked (spin -a; pan -DSAFETY, exhaustive):
 *   - switch_ctx never installs or leaves a freed context (asserts in INSTALL);
 *   - free never runs while a worker has the context installed, never twice
 *     (assert in COUNT_ZERO's release);
 *   - current is NULL or active at every step of the two lazy transitions
 *     (switch_body's claim: a handler never moves active off a context the
 *     caller holds), and switch_slow starts with critical 0;
 *   - no deadlock: every process reaches its end (invalid end states), so a
 *     dropper never waits forever for a worker that keeps the context.
 *     The dropper signals each holder once (shoot_round's first,
 *     SWEEP_SIGNAL pass) and then only polls: resends (resend(),
 *     SD_RESEND_FIRST_NS) are left out on purpose, so the model proves that
 *     one signal per request suffices.
 *   - at the end every context is freed and nothing is installed.
 *
 * Seeded bugs (each in its own file that defines the macro and includes this
 * one; tests/models/check fails unless spin finds them):
 *   BUG_OFFLINE_EARLY (shootdown-offline-early-bug.pml): offline leaves the
 *     masks (clears the worker's bits, as powerpc's cleanup_cpu_mmu_context
 *     did) before it switches away from its lazy context: the dropper does
 *     not see the worker and frees the context under it. The rule it breaks
 *     is kernel commit a08311b423 ("lazy tlb: fix hotplug exit race with
 *     MMU_LAZY_TLB_SHOOTDOWN"): switch away from the lazy mm before leaving
 *     mm_cpumask.
 *   BUG_PENDING_PER_CTX (shootdown-pending-per-context-bug.pml): a signal
 *     that lands inside a switch is remembered per context instead of per
 *     worker (the lost deferred switch of Martin Schwidefsky's "s390/mm,tlb:
 *     race of lazy TLB flush vs. recreation of TLB entries", Nov 2013): two
 *     workers lazy on the same dying context, both inside a critical section
 *     that leaves them lazy, share one flag; the first clears it, the second
 *     never moves, and the dropper waits forever. With the code's switch no
 *     critical section of a shootdown worker ends with it lazy on a context
 *     other than init (switch_slow installs next or takes the lazy hit on
 *     init, lmm__unlazy installs init), so there a lost pending signal loses
 *     no work: BUG_PENDING_PER_CTX alone verifies. The bug file therefore
 *     also defines LAZY_BRACKETED, a switch that runs both lazy transitions
 *     inside the bracket too, the one shape where a per-context flag loses
 *     a worker (see that file).
 */

#define NW 2
#define NC 3
#define INIT 0
#define NUL NC  /* NULL: no context current (a context-less task) */
#define MAIN NW /* the non-worker thread's index in the per-thread arrays */

#define LIVE 0
#define DYING 1
#define FREED 2

byte count[NC];          /* ctx_impl.count (users' reference folded in) */
byte state[NC];          /* ctx_impl.state */
byte mask[NC];           /* ctx_impl.worker_mask, bit per worker */
byte installed[NC];      /* the application's view: workers that have it installed */
byte act[NW + 1];        /* lmm_worker.active */
byte current[NW + 1];    /* lmm_worker.current (NUL: NULL) */
byte critical[NW + 1];   /* lmm_worker.critical (depth) */
bool pending[NW + 1];    /* lmm_worker.sig_pending */
bool pend_ctx[NC];       /* BUG_PENDING_PER_CTX only: the pending flag kept per context */
bool online[NW + 1];     /* lmm_worker.online (under kill_lock) */
bool is_self[NW + 1];    /* lmm__self == w on the worker's thread */
bool sent[NW + 1];       /* a signal queued for the thread, not yet delivered */
bool alive[NW + 1];      /* the thread exists */
bool inh[NW + 1];        /* the thread is inside its signal handler */
byte done;

#define BIT(i) (1 << (i))
/* A step of thread me: its handler, when running, holds the thread (h: 0 thread, 1 handler). */
#define W(s) atomic { (inh[me] == h) -> s }

/*
 * switch.c install(), with shootdown's hooks, as ONE step: mask_set,
 * switch_ctx, switched_away = sd_switched_away ((b): the release clear of
 * our bit when prev is dying, before the core publishes active) and the
 * release store of active. Every order among these is safe for a dropper of
 * prev (it sees prev still active and waits, or sees it gone after
 * switch_ctx left it) and no new install of a context with count 0 is
 * possible, so coarsening them keeps the races that matter: those with the
 * signal handler (critical) and with the dropper's sweep/poll, which
 * interleave between switch steps. lazy_release and installed: none for
 * shootdown.
 */
inline INSTALL(next, prev_lazy)
{
	W(prev = act[me];
	  assert(prev == INIT || state[prev] != FREED);   /* the switch_ctx hook's checks */
	  assert(next == INIT || state[next] != FREED);
	  if
	  :: next != INIT -> mask[next] = mask[next] | BIT(me); installed[next]++
	  :: else
	  fi;
	  if
	  :: prev != INIT -> installed[prev]--
	  :: else
	  fi;
	  if
	  :: prev_lazy && state[prev] == DYING -> mask[prev] = mask[prev] & ~BIT(me)
	  :: else
	  fi;
	  act[me] = next;
	  prev = 0)
}

/* sd_signal: lazy on a dying context -> shoot_self -> lmm__unlazy. */
inline SD_SIGNAL()
{
	if
	:: act[me] != INIT && current[me] == NUL && state[act[me]] == DYING ->
		/* lmm__unlazy nested inside the deferral: critical 1 -> 2 -> 1, no re-entry */
		W(critical[me]++);
		INSTALL(INIT, 1);
		W(critical[me]--)
	:: else
	fi
}

/* lmm__signal_deferred (signal.c). */
inline DEFERRED()
{
	do
	:: W(critical[me] = 1; pending[me] = 0);
	   SD_SIGNAL();
	   W(critical[me] = 0);
	   if
	   :: pending[me] -> skip
	   :: else -> break
	   fi
	od
}

/* critical_exit / critical_exit_outer (internal.h): run the deferred signal work as the section ends. */
inline CRIT_EXIT()
{
	W(critical[me]--);
#ifdef BUG_PENDING_PER_CTX
	if
	:: critical[me] == 0 && pend_ctx[act[me]] ->
		W(pend_ctx[act[me]] = 0);
		DEFERRED()
	:: else
	fi
#else
	if
	:: critical[me] == 0 && pending[me] -> DEFERRED()
	:: else
	fi
#endif
}

/*
 * switch_slow: everything but the two lazy transitions, in the bracket.
 * active is read again inside: a handler may have moved us to init since
 * switch_body read it (then next == active only if next is init). The
 * next == NUL branch is only for LAZY_BRACKETED (a switch that takes this
 * path for all three cases).
 */
inline SWITCH_SLOW(next)
{
	W(assert(critical[me] == 0); critical[me] = 1);  /* critical_enter_outer */
	W(if
	  :: next == NUL ->
		if
		:: cur != NUL -> current[me] = NUL        /* going lazy (LAZY_BRACKETED only) */
		:: else
		fi
	  :: next != NUL && next == act[me] ->
		if
		:: cur == NUL -> current[me] = next       /* lazy_hit(w, next, true): init, no hook */
		:: else
		fi
	  :: else ->
		lazy = (cur == NUL && act[me] != INIT); inst = 1;
		current[me] = next                        /* current_leaving, current_published: fences */
	  fi);
	if
	:: inst -> INSTALL(next, lazy)
	:: else
	fi;
	CRIT_EXIT();                                      /* critical_exit_outer */
	inst = 0; lazy = 0
}

#ifndef LAZY_BRACKETED
/*
 * lmm_switch -> switch_body (switch.c); next == NUL means NULL. Going lazy
 * and the lazy hit are outside the bracket, one store each: a handler that
 * lands before or after it finds current NULL or active (asserted).
 */
inline SWITCH(next)
{
	W(cur = current[me]; assert(cur == NUL || cur == act[me]));  /* switch_body: cur */
	if
	:: next == NUL ->
		if
		:: cur != NUL ->                      /* lazy_enter; lazy_enter_hook: none for shootdown */
			W(assert(cur == act[me]); current[me] = NUL)
		:: else
		fi
	:: else ->
		W(hit = (cur == NUL && next == act[me]));  /* switch_body: the read of active */
		if
		:: hit ->                             /* lazy_hit; lazy_resume_hook: none for shootdown */
			W(assert(act[me] == next); current[me] = next)
		:: else -> SWITCH_SLOW(next)
		fi;
		hit = 0
	fi;
	cur = 0
}
#else
/* LAZY_BRACKETED: a switch that reads current, then does everything in the bracket. */
inline SWITCH(next)
{
	W(cur = current[me]);
	SWITCH_SLOW(next);
	cur = 0
}
#endif

/* lmm__unlazy (switch.c). */
inline UNLAZY()
{
	W(critical[me]++);
	if
	:: current[me] == NUL && act[me] != INIT -> INSTALL(INIT, 1)
	:: else
	fi;
	CRIT_EXIT()
}

/* sd_count_zero after lmm__count_zero stored DYING (domain.c). */
inline COUNT_ZERO(c)
{
	W(state[c] = DYING);
	/* The dropper is lazy on it itself: shoot_self inline (not inside a switch: critical 0). */
	if
	:: me < NW && act[me] == c && current[me] == NUL && critical[me] == 0 ->
		W(critical[me]++); INSTALL(INIT, 1); CRIT_EXIT()
	:: else
	fi;
	/* shoot_round's first pass, sweep(SWEEP_SIGNAL): per worker in the mask */
	i = 0;
	do
	:: i < NW ->
		W(if
		  :: (mask[c] & BIT(i)) && act[i] != c -> mask[c] = mask[c] & ~BIT(i) /* (a): mask_clear */
		  :: (mask[c] & BIT(i)) && act[i] == c && online[i] -> sent[i] = 1  /* request -> lmm__signal_worker under kill_lock */
		  :: else
		  fi);
		i++
	:: else -> i = 0; break
	od;
	/*
	 * The poll (sweep(SWEEP_POLL) in shoot_round's loop): until no worker in
	 * the mask has c installed. A worker that moved never comes back (the
	 * count is 0, no new install), so one atomic look equals the code's
	 * worker-by-worker sweep.
	 */
	W(!((mask[c] & BIT(0)) && act[0] == c) && !((mask[c] & BIT(1)) && act[1] == c));
	W(mask[c] = 0);
	/* lmm__ctx_release -> lmm__run_free: the free hook's checks */
	W(assert(installed[c] == 0); assert(state[c] != FREED); state[c] = FREED)
}

inline DROP(c)
{
	W(count[c]--; dropped = (count[c] == 0));
	if
	:: dropped -> COUNT_ZERO(c)
	:: else
	fi
}

proctype Handler(byte me)
{
	bit h = 1;
	byte prev;
end:	do
	:: atomic { sent[me] && !inh[me] && alive[me] -> sent[me] = 0; inh[me] = 1 };
		if
		:: is_self[me] ->                    /* handler (signal.c) */
#ifdef BUG_PENDING_PER_CTX
			if
			:: critical[me] == 0 -> DEFERRED()
			:: else -> pend_ctx[act[me]] = 1
			fi;
#else
			pending[me] = 1;
			if
			:: critical[me] == 0 -> DEFERRED()
			:: else
			fi;
#endif
		:: else                              /* not a worker any more: chained, nothing for us */
		fi;
		inh[me] = 0
	od
}

proctype Worker(byte me)
{
	bit h = 0;
	byte prev, c, k, i, cur;
	bool lazy, dropped, ref, hit, inst;

	for (k : 1 .. 2) {
		ref = 0;
		if
		:: c = 1
		:: c = 2
		fi;
		W(if
		  :: count[c] > 0 -> count[c]++; ref = 1  /* lmm_get while another holds one */
		  :: else
		  fi);
		if
		:: ref ->
			SWITCH(c);                   /* a task of c */
			SWITCH(NUL);                 /* a context-less task: lazy on c */
			DROP(c)                      /* maybe the last reference, while lazy on it */
		:: else
		fi;
		c = 0; ref = 0; dropped = 0
	}
	/*
	 * Maybe another context-less task while still lazy (where a per-context
	 * pending flag is lost under LAZY_BRACKETED), or a task of init (switch_slow's lazy hit on
	 * init, when a handler moved us there after switch_body's read). Then
	 * maybe idle lazily (the common case: only a signal moves it) until there
	 * is nothing left to free; or go offline at once (races the drops).
	 */
	if
	:: SWITCH(NUL)
	:: SWITCH(INIT); SWITCH(NUL)
	:: skip
	fi;
	if
	:: W(state[1] == FREED && state[2] == FREED)
	:: skip
	fi;
	/* do_offline (worker.c) */
#ifdef BUG_OFFLINE_EARLY
	W(mask[1] = mask[1] & ~BIT(me); mask[2] = mask[2] & ~BIT(me));
#endif
	UNLAZY();                                    /* kernel a08311b423: before any bookkeeping */
	W(online[me] = 0);                           /* under kill_lock */
	W(is_self[me] = 0);                          /* lmm__self = NULL */
	/* Thread exit: a signal queued while it was online is delivered first. */
	atomic { !sent[me] && !inh[me] -> alive[me] = 0; done++ }
}

init
{
	byte me = MAIN, prev, i;
	bit h = 0;
	bool dropped;

	atomic {
		count[1] = 1; count[2] = 1;
		for (i : 0 .. NW - 1) {
			current[i] = NUL;
			online[i] = 1; is_self[i] = 1; alive[i] = 1;
			run Handler(i);
			run Worker(i)
		}
	}
	/* main drops its references, each at any moment (a last put off-worker) */
	DROP(1);
	DROP(2);
	(done == NW);
	for (i : 1 .. NC - 1) {
		assert(state[i] == FREED);
		assert(installed[i] == 0)
	}
}

/*
 * Promela model of the shootdown scheme: lib/scheme_shootdown.c on top of
 * the core's switch path (lib/switch.c), signal deferral (lib/signal.c,
 * lib/internal.h critical_enter/critical_exit) and offline (lib/worker.c
 * do_offline). Names below are the code's; line numbers are those of the
 * tree when this model was written (issue 7).
 *
 * Parties: NW = 2 worker threads, each with its signal handler as a separate
 * process (the handler interrupts its thread between any two steps and runs
 * to completion before the thread resumes), and main, a non-worker thread.
 * Contexts: 0 = init, 1 = A, 2 = B. Main holds one reference on each of A
 * and B and drops it at any time; a worker may take a reference while
 * someone else holds one (lmm_get/lmm_grab), run a task of it, go lazy, run
 * context-less tasks, drop its reference (maybe the last: it runs count_zero
 * itself), unlazy, and finally go offline and exit.
 *
 * Checked (spin -a; pan -DSAFETY, exhaustive):
 *   - switch_ctx never installs or leaves a freed context (asserts in INSTALL);
 *   - free never runs while a worker has the context installed, never twice
 *     (assert in RELEASE);
 *   - no deadlock: every process reaches its end (invalid end states), so a
 *     dropper never waits forever for a worker that keeps the context.
 *     The dropper signals each holder once (shoot_round's first, SWEEP_SIGNAL
 *     pass) and then only polls: resends (SD_RESEND_FIRST_NS) are left out
 *     on purpose, so the model proves that one signal per request suffices.
 *   - at the end every context is freed and nothing is installed.
 *
 * Seeded bugs (each in its own file that defines the macro and includes this
 * one; tests/models/check fails unless spin finds them):
 *   BUG_000 (shootdown-000-bug.pml): offline leaves the masks (clears the
 *     worker's bits, as powerpc's cleanup_cpu_mmu_context did) before it
 *     switches away from its lazy context: the dropper does not see the
 *     worker and frees the context under it.
 *   BUG_004 (shootdown-004-bug.pml): a signal that lands inside a switch is
 *     remembered per context instead of per worker: two workers lazy on the
 *     same dying context, both inside a switch, share one flag; the first
 *     clears it, the second never moves, and the dropper waits forever.
 */

#define NW 2
#define NC 3
#define INIT 0
#define MAIN NW /* the non-worker thread's index in the per-thread arrays */

#define LIVE 0
#define DYING 1
#define FREED 2

byte count[NC];          /* ctx_impl.count (users' reference folded in) */
byte state[NC];          /* ctx_impl.state */
byte mask[NC];           /* ctx_impl.worker_mask, bit per worker */
byte installed[NC];      /* the application's view: workers that have it installed */
byte act[NW + 1];     /* lmm_worker.active */
byte current[NW + 1];    /* lmm_worker.current */
byte critical[NW + 1];   /* lmm_worker.critical (depth) */
bool pending[NW + 1];    /* lmm_worker.sig_pending */
bool pend_ctx[NC];       /* BUG_004 only: the pending flag kept per context */
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
 * switch.c install() (lines 20-39), with shootdown's hooks, as ONE step:
 * mask_set (line 26), switch_ctx (27), switched_away = sd_switched_away
 * (29; scheme_shootdown.c: (b) the release clear of our bit when prev is
 * dying; an earlier version stored active first, this one clears the bit
 * before the core publishes active) and the release store of active (34). Every
 * order among these is safe for a dropper of prev (it sees prev still
 * active and waits, or sees it gone after switch_ctx left it) and no new
 * install of a context with count 0 is possible, so coarsening them keeps
 * the races that matter: those with the signal handler (critical) and with
 * the dropper's sweep/poll, which interleave between switch steps.
 * lazy_release = sd_nothing (line 37).
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

/* sd_signal (scheme_shootdown.c 128-142): lazy on a dying context -> shoot_self -> lmm__unlazy. */
inline SD_SIGNAL()
{
	if
	:: act[me] != INIT && current[me] == 0 && state[act[me]] == DYING ->
		/* lmm__unlazy nested inside the deferral: critical 1 -> 2 -> 1, no re-entry */
		W(critical[me]++);
		INSTALL(INIT, 1);
		W(critical[me]--)
	:: else
	fi
}

/* lmm__signal_deferred (signal.c 25-40). */
inline DEFERRED()
{
	do
	:: W(critical[me] = 1; pending[me] = 0);    /* lines 29-32 */
	   SD_SIGNAL();
	   W(critical[me] = 0);
	   if
	   :: pending[me] -> skip
	   :: else -> break
	   fi
	od
}

/* critical_exit (internal.h): run the deferred signal work as the switch ends. */
inline CRIT_EXIT()
{
	W(critical[me]--);
#ifdef BUG_004
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

/* lmm_switch (switch.c 58-92); next == 0 means NULL (a context-less task). */
inline SWITCH(next)
{
	/* critical_enter (line 64) with the change of current: the handler lands before or after */
	if
	:: next == 0 ->
		W(critical[me]++; current[me] = 0)   /* lines 66-74; lazy_enter = sd_nothing */
	:: next != 0 && next == act[me] ->
		W(critical[me]++; current[me] = next) /* the lazy hit, lines 75-83 */
	:: next != 0 && next != act[me] ->
		W(critical[me]++; lazy = (current[me] == 0 && act[me] != INIT); current[me] = next); /* line 87 */
		INSTALL(next, lazy);                 /* line 89 */
		lazy = 0
	fi;
	CRIT_EXIT()                                  /* line 91 */
}

/* lmm__unlazy (switch.c 95-105). */
inline UNLAZY()
{
	W(critical[me]++);
	if
	:: current[me] == 0 && act[me] != INIT -> INSTALL(INIT, 1)
	:: else
	fi;
	CRIT_EXIT()
}

/* sd_count_zero (scheme_shootdown.c 345-391) after lmm__count_zero stored DYING (domain.c). */
inline COUNT_ZERO(c)
{
	W(state[c] = DYING);
	/* lines 353-365: the dropper is lazy on it itself: shoot_self inline */
	if
	:: me < NW && act[me] == c && current[me] == 0 && critical[me] == 0 ->
		W(critical[me]++); INSTALL(INIT, 1); CRIT_EXIT()
	:: else
	fi;
	/* shoot_round's first pass, sweep(SWEEP_SIGNAL) (177-216): per worker in the mask */
	i = 0;
	do
	:: i < NW ->
		W(if
		  :: (mask[c] & BIT(i)) && act[i] != c -> mask[c] = mask[c] & ~BIT(i) /* (a), line 197 */
		  :: (mask[c] & BIT(i)) && act[i] == c && online[i] -> sent[i] = 1  /* request -> lmm__signal_worker under kill_lock */
		  :: else
		  fi);
		i++
	:: else -> i = 0; break
	od;
	/*
	 * The poll (SWEEP_POLL, lines 237-266): until no worker in the mask has c
	 * installed. A worker that moved never comes back (the count is 0, no new
	 * install), so one atomic look equals the code's worker-by-worker sweep.
	 */
	W(!((mask[c] & BIT(0)) && act[0] == c) && !((mask[c] & BIT(1)) && act[1] == c));
	W(mask[c] = 0);
	/* lmm__ctx_release -> run_free: the free hook's checks */
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
		:: is_self[me] ->                    /* handler (signal.c 42-55) */
#ifdef BUG_004
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
	byte prev, c, k, i;
	bool lazy, dropped, ref;

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
			SWITCH(0);                   /* a context-less task: lazy on c */
			DROP(c)                      /* maybe the last reference, while lazy on it */
		:: else
		fi;
		c = 0; ref = 0; dropped = 0
	}
	/*
	 * Maybe idle lazily (the common case: only a signal moves it) until
	 * there is nothing left to free; or go offline at once (races the drops).
	 */
	if
	:: SWITCH(0)      /* another context-less task first, while still lazy (seed 004's window) */
	:: skip
	fi;
	if
	:: W(state[1] == FREED && state[2] == FREED)
	:: skip
	fi;
	/* do_offline (worker.c 128-151) */
#ifdef BUG_000
	W(mask[1] = mask[1] & ~BIT(me); mask[2] = mask[2] & ~BIT(me));
#endif
	UNLAZY();                                    /* line 133: seed 000, before any bookkeeping */
	W(online[me] = 0);                           /* lines 143-145, under kill_lock */
	W(is_self[me] = 0);                          /* line 147 */
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

/*
 * Promela model of the rcu scheme's dying/quiescing/idle rules:
 * lib/scheme/rcu.c (QSBR flavour) on the core's switch path (lib/switch.c)
 * with the lazy hook inlined from lib/scheme/rcu.h. Names are the code's;
 * each step cites the function it stands for (no line numbers: they go stale).
 *
 * Parties: NW = 2 workers, main (a non-worker thread that puts the first
 * user of A and B at any time) and the reclaim thread (rcu_reclaim_pass on
 * the engine's thread, lib/reclaim.c: take the queued batch,
 * wait_grace_period while nudging, free), which also sends
 * one stray signal (see stray). Contexts: 0 = init, 1 = A, 2 = B; NUL (3) is
 * NULL (current, or lmm_switch's next for a context-less task). In its first
 * round, worker 0 may also take a user of the other context, go back to the
 * first (a lazy hit), switch task to task to the other, put the first and
 * make a lazy round trip on the other.
 *
 * The grace period is QSBR's: it ends once every worker that was an online
 * reader when it started has reported a quiescent state or gone offline
 * (need[]). Workers report at the end of a lazy window while a grace period
 * waits (lmm__rcu_resume_slow after the lazy hit, rcu_installed), in the
 * nudge (rcu_signal), and by going offline (go_offline: idle, offline). The
 * rule under test: every report comes after settle_lazy_hold: no uncounted
 * lazy hold spans a report; a lazy hold on a context whose count is 0 is
 * left (unlazy) instead of counted.
 *
 * The switch is the code's: going lazy (lazy_enter, no hook
 * for rcu) and the lazy hit (lazy_hit: store current, compiler barrier, then
 * rcu_lazy_resume, which reads RS_COUNTED and the grace-period hint and only
 * then takes the critical section in lmm__rcu_resume_slow) run OUTSIDE the
 * critical bracket; switch_slow brackets and reads active again. The signal
 * handler (rcu_signal) runs at once wherever critical is 0: it is modelled
 * (NUDGE_POINT) wherever the worker is lazy (current NULL) in those paths:
 * between switch_body's read of active and what follows, and between the
 * store of current and the hook's loads; plus at the points where the
 * worker sleeps or idles lazily, and after going lazy and after a put. A
 * nudge that lands inside a critical section runs at its end (critical_exit,
 * checked by shootdown.pml); there and wherever current is not NULL the
 * handler only reports, which is always valid (the task holds its
 * reference), so those points are merged into the next lazy one: a report
 * there could only end a grace period sooner, never free what a worker
 * holds. A queued nudge stays queued until one of those points runs it:
 * delivery after its grace period ended is modelled too.
 *
 * Checked exhaustively: never installed or left after free, free never while
 * installed, never twice, never before the grace period (RELEASE); no count
 * goes below 0, and lmm__rcu_resume_slow's decrement is never the last
 * reference (the task holds one); current is NULL or active at every step
 * of the switch; no deadlock; at the end everything freed, counts 0.
 *
 * Seeded bugs (each in its own file that defines the macro and includes this
 * one; tests/models/check fails unless spin finds them):
 *   BUG_NOSETTLE (rcu-nosettle-bug.pml): idle_enter goes offline without
 *     settling the lazy hold: the grace period ends while the worker sleeps
 *     lazily on the dying context, and it is freed under it.
 *   BUG_HITORDER (rcu-hitorder-bug.pml): rcu_lazy_resume reads the state
 *     before lazy_hit stores current (the order the compiler barrier in
 *     lazy_hit forbids). A signal that lands between the loads and the store
 *     sees the worker lazy and counts its hold; the hook acts on what it read
 *     (nothing counted, no grace period waiting) and leaves RS_COUNTED set
 *     while the task runs. A task-to-task switch installs with prev_lazy
 *     false (no lazy_release), so the count follows the worker to the next
 *     context, whose lazy hit returns it there: spin reports the decrement
 *     that takes that context's last reference (the assert in RESUME_SLOW),
 *     which in the code would leave it unfreeable at 0 (and the first context
 *     is leaked with one count too many).
 */

#define NW 2
#define NC 3
#define INIT 0
#define NUL NC
#define MAIN NW
#define LIVE 0
#define FREED 2

byte users[NC], count[NC], state[NC], installed[NC];
bool queued[NC], batch[NC];
byte act[NW + 1], current[NW + 1];
bool counted[NW + 1];  /* RS_COUNTED in hot.rcu.state */
bool online[NW + 1];   /* RS_ONLINE: an online QSBR reader */
bool need[NW + 1];     /* the running grace period waits for this worker */
bool nudge[NW + 1];    /* a nudge signal queued for the worker */
bool gp_wait;          /* hot.rcu.gp_waiting: some grace period waits */
/*
 * The domain's signal sent for a reason of its own, once in the run, to
 * either worker: lmm_membarrier's fallback signals a worker whose current is
 * the context (the handler runs the scheme's signal hook all the same), a
 * nudge of another rcu domain's grace period (QSBR is process-wide), or one
 * of ours that arrives after its grace period ended. Sent while the reclaim
 * thread is between grace periods, delivered at any later point.
 */
bool stray;
bool main_done, stop;
byte done;

#define W(s) atomic { s }

inline RELEASE(x)
{
	W(assert(installed[x] == 0); assert(state[x] != FREED); assert(users[x] == 0); state[x] = FREED)
}

/* lmm_drop; the last calls rcu_count_zero: queue for the next grace period. */
inline DROP(x)
{
	W(assert(count[x] > 0); count[x]--; if :: count[x] == 0 -> queued[x] = 1 :: else fi)
}

/* lmm_put: the last user drops the users' reference. */
inline PUT(x)
{
	W(users[x]--; last = (users[x] == 0));
	if
	:: last -> last = 0; DROP(x)
	:: else
	fi
}

/* report_qs: a quiescent state, if an online reader. */
inline REPORT_QS()
{
	W(if :: online[me] -> need[me] = 0 :: else fi)
}

/* install (switch.c) as one step, then rcu_lazy_release, rcu_installed. */
inline INSTALL(next, prev_lazy)
{
	W(prev = act[me];
	  assert(prev == INIT || state[prev] != FREED);
	  assert(next == INIT || state[next] != FREED);
	  if
	  :: next != INIT -> installed[next]++
	  :: else
	  fi;
	  if
	  :: prev != INIT -> installed[prev]--
	  :: else
	  fi;
	  act[me] = next);
	if
	:: prev_lazy && counted[me] -> W(counted[me] = 0); DROP(prev)
	:: else
	fi;
	if
	:: gp_wait -> REPORT_QS()
	:: else
	fi;
	prev = 0
}

/* lmm__unlazy (switch.c): in its critical section. */
inline UNLAZY()
{
	if
	:: current[me] == NUL && act[me] != INIT -> INSTALL(INIT, 1)
	:: else
	fi
}

/* settle_lazy_hold. */
inline SETTLE()
{
	if
	:: current[me] == NUL && act[me] != INIT && !counted[me] ->
		W(if                                 /* count_inc_not_zero */
		  :: count[act[me]] > 0 -> count[act[me]]++; counted[me] = 1
		  :: else
		  fi);
		if
		:: !counted[me] -> UNLAZY()          /* dying: leave it first */
		:: else
		fi
	:: else
	fi
}

/* rcu_signal: the nudge (in the handler, or run by critical_exit). */
inline NUDGED()
{
	W(nudge[me] = 0);
	if
	:: online[me] -> SETTLE(); W(need[me] = 0)
	:: else
	fi
}

/* The handler may run here (critical is 0), if a nudge is queued. */
inline NUDGE_POINT()
{
	if
	:: nudge[me] -> NUDGED()
	:: true
	fi
}

/*
 * lmm__rcu_resume_slow: critical_enter; clear RS_COUNTED and drop its
 * reference (never the last: the task holds one); report if a grace period
 * waits; critical_exit runs a nudge that landed meanwhile.
 */
inline RESUME_SLOW(next)
{
	W(if
	  :: counted[me] -> assert(count[next] > 1); counted[me] = 0; count[next]--
	  :: else
	  fi);
	if
	:: gp_wait -> REPORT_QS()
	:: else
	fi
}

/*
 * lazy_hit (switch.c) with rcu_lazy_resume (lib/scheme/rcu.h), outside the
 * bracket: the relaxed store of current, then (atomic_signal_fence) the
 * hook's relaxed loads of RS_COUNTED and the hint, then the slow half.
 */
inline LAZY_HIT(next)
{
#ifndef BUG_HITORDER
	W(assert(act[me] == next); current[me] = next);
	NUDGE_POINT();
	W(rd = counted[me] || gp_wait);
#else
	W(rd = counted[me] || gp_wait);              /* the hook's loads hoisted above the store */
	NUDGE_POINT();
	W(assert(act[me] == next); current[me] = next);
#endif
	if
	:: rd -> RESUME_SLOW(next)
	:: else
	fi;
	rd = 0
}

/*
 * switch_slow (switch.c): critical_enter_outer, active read again (a nudge
 * may have moved us to init since switch_body read it: then next == active
 * only if next is init, a lazy hit with no hook), current = next, install;
 * critical_exit_outer runs a nudge that landed meanwhile.
 */
inline SWITCH_SLOW(next)
{
	W(if
	  :: next == act[me] ->
		if
		:: cur == NUL -> current[me] = next
		:: else
		fi
	  :: else ->
		plazy = (cur == NUL && act[me] != INIT); inst = 1;
		current[me] = next
	  fi);
	if
	:: inst -> INSTALL(next, plazy)
	:: else
	fi;
	inst = 0; plazy = 0
}

/* lmm_switch -> switch_body (switch.c) with the rcu hooks; next == NUL is NULL. */
inline SWITCH(next)
{
	W(cur = current[me]; assert(cur == NUL || cur == act[me]));  /* switch_body: cur */
	if
	:: next == NUL ->
		if
		:: cur != NUL ->                       /* lazy_enter: no hook for rcu */
			W(assert(cur == act[me]); current[me] = NUL)
		:: else
		fi
	:: else ->
		W(hit = (cur == NUL && next == act[me]));  /* switch_body: the read of active */
		if
		:: cur == NUL -> NUDGE_POINT()
		:: else
		fi;
		if
		:: hit -> LAZY_HIT(next)
		:: else -> SWITCH_SLOW(next)
		fi;
		hit = 0
	fi;
	cur = 0
}

/* A sleep until main is done; only nudges wake it meanwhile. */
inline SLEEP()
{
	do
	:: nudge[me] -> NUDGED()
	:: main_done -> break
	od
}

proctype Worker(byte me)
{
	byte c, d, k, prev, cur;
	bool last, plazy, hit, rd, inst;

	for (k : 1 .. 2) {
		if
		:: c = 1
		:: c = 2
		fi;
		W(if :: users[c] > 0 -> users[c]++ :: else -> c = 0 fi);
		if
		:: c != 0 ->
			SWITCH(c);
			SWITCH(NUL);                 /* lazy on c, uncounted */
			NUDGE_POINT();
			if
			:: me == 0 && k == 1 ->      /* a user of the other context d too */
				W(if :: users[3 - c] > 0 -> users[3 - c]++; d = 3 - c :: else fi);
				if
				:: d != 0 ->
					SWITCH(c);           /* the lazy hit on c */
					SWITCH(d);           /* task to task: install with prev_lazy false */
					PUT(c);
					c = d; d = 0;
					SWITCH(NUL);         /* lazy on d */
					NUDGE_POINT();
					SWITCH(c);           /* the lazy hit on d */
					SWITCH(NUL);
					NUDGE_POINT()
				:: else
				fi
			:: else
			fi;
			PUT(c);                      /* maybe the last user, while lazy */
			NUDGE_POINT()
		:: else
		fi;
		c = 0
	}
	if
	:: true -> /* idle with lmm_idle_enter: rcu_idle_enter -> go_offline */
#ifndef BUG_NOSETTLE
		SETTLE();
#endif
		W(online[me] = 0; need[me] = 0);
		SLEEP();
		W(online[me] = 1);                   /* rcu_idle_exit */
		if
		:: counted[me] && count[act[me]] == 1 -> UNLAZY()
		:: else
		fi
	:: true -> /* a lazy sleep without lmm_idle_enter: only nudges help */
		SLEEP()
	:: true -> SWITCH(NUL); NUDGE_POINT()        /* a context-less task */
	fi;
	/* do_offline: unlazy (lazy_release drops a counted hold), then rcu_worker_offline */
	UNLAZY();
	W(online[me] = 0; need[me] = 0; done++)
}

/* wait_grace_period: nudge while waiting (the flags went up with the start). */
inline WAIT_GP()
{
	do
	:: atomic { need[0] && !nudge[0] -> nudge[0] = 1 }
	:: atomic { need[1] && !nudge[1] -> nudge[1] = 1 }
	:: atomic { !need[0] && !need[1] -> gp_wait = 0; break }
	od
}

/* rcu_reclaim_pass (the engine's thread); and the stray signal. */
proctype Reclaimer()
{
	byte i;
end:	do
	:: atomic {                                  /* take the batch, start a grace period */
		(queued[1] || queued[2]) ->
		for (i : 1 .. NC - 1) {
			batch[i] = queued[i];
			queued[i] = 0
		}
		for (i : 0 .. NW - 1) {
			need[i] = online[i]
		}
		gp_wait = 1;
		i = 0
	   };
	   WAIT_GP();
	   for (i : 1 .. NC - 1) {                   /* lmm__ctx_release of the batch */
		if
		:: batch[i] -> RELEASE(i); batch[i] = 0
		:: else
		fi
	   };
	   i = 0
	:: atomic { !stray -> stray = 1; nudge[0] = 1 }  /* the stray signal (see stray) */
	:: atomic { !stray -> stray = 1; nudge[1] = 1 }
	:: stop -> break
	od
}

init
{
	byte me = MAIN, i;
	bool last;

	atomic {
		for (i : 1 .. NC - 1) {
			users[i] = 1; count[i] = 1
		}
		current[0] = NUL; current[1] = NUL;
		online[0] = 1; online[1] = 1;
		run Worker(0);
		run Worker(1);
		run Reclaimer()
	}
	PUT(1);
	PUT(2);
	main_done = 1;
	(done == NW && !queued[1] && !queued[2] && !batch[1] && !batch[2] && !gp_wait);
	stop = 1;
	for (i : 1 .. NC - 1) {
		assert(state[i] == FREED);
		assert(count[i] == 0 && installed[i] == 0)
	}
}

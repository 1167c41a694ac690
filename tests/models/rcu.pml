/*
 * Promela model of the rcu scheme's dying/quiescing/idle rules:
 * lib/scheme_rcu.c (QSBR flavour) on the core's switch path (lib/switch.c).
 * Names are the code's; line numbers are scheme_rcu.c's when this model was
 * written (issue 7).
 *
 * Parties: NW = 2 workers, main (a non-worker thread that puts the first
 * user of A and B at any time) and the reclaim thread (reclaim_main 327-365:
 * take the queued batch, wait one grace period while nudging, free).
 * Contexts: 0 = init, 1 = A, 2 = B.
 *
 * The grace period is QSBR's: it ends once every worker that was an online
 * reader when it started has reported a quiescent state or gone offline
 * (need[]). Workers report at the end of a lazy window while a grace period
 * waits (rcu_lazy_resume 154-166, rcu_installed 179-185), in the nudge
 * (rcu_signal 187-195), and by going offline (go_offline 129-137: idle,
 * offline). The rule under test: every report comes after settle_lazy_hold
 * (107-120): no uncounted lazy hold spans a report; a lazy hold on a context
 * whose count is 0 is left (unlazy) instead of counted.
 *
 * A nudge is modelled at the points where the worker is outside a switch
 * (the core defers a signal that lands inside one to its end; that
 * machinery is checked by shootdown.pml), plus every lazy sleep.
 *
 * Checked exhaustively: never installed or left after free, free never while
 * installed, never twice, never before the grace period (RELEASE); no
 * deadlock; at the end everything freed, counts 0.
 *
 * Seeded bug BUG_NOSETTLE (rcu-nosettle-bug.pml): idle_enter goes offline
 * without settling the lazy hold: the grace period ends while the worker
 * sleeps lazily on the dying context, and it is freed under it.
 */

#define NW 2
#define NC 3
#define INIT 0
#define MAIN NW
#define LIVE 0
#define FREED 2

byte users[NC], count[NC], state[NC], installed[NC];
bool queued[NC], batch[NC];
byte act[NW + 1], current[NW + 1];
bool counted[NW + 1];  /* RS_COUNTED */
bool online[NW + 1];   /* RS_ONLINE: an online QSBR reader */
bool need[NW + 1];     /* the running grace period waits for this worker */
bool nudge[NW + 1];    /* a nudge signal queued for the worker */
bool gp_wait;          /* slot[1]: some grace period waits */
bool main_done, stop;
byte done;

#define W(s) atomic { s }

inline RELEASE(x)
{
	W(assert(installed[x] == 0); assert(state[x] != FREED); assert(users[x] == 0); state[x] = FREED)
}

/* rcu_count_zero (402-422): queue for the next grace period. */
inline DROP(x)
{
	W(count[x]--; if :: count[x] == 0 -> queued[x] = 1 :: else fi)
}

inline PUT()
{
	W(users[c]--; last = (users[c] == 0));
	if
	:: last -> last = 0; DROP(c)
	:: else
	fi
}

/* report_qs (122-126): a quiescent state, if an online reader. */
inline REPORT_QS()
{
	W(if :: online[me] -> need[me] = 0 :: else fi)
}

/* install (switch.c 20-39) as one step, then rcu_lazy_release (168-177), rcu_installed (179-185). */
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

inline UNLAZY()
{
	if
	:: current[me] == 0 && act[me] != INIT -> INSTALL(INIT, 1)
	:: else
	fi
}

/* settle_lazy_hold (107-120). */
inline SETTLE()
{
	if
	:: current[me] == 0 && act[me] != INIT && !counted[me] ->
		W(if                                 /* count_inc_not_zero (89-101) */
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

/* rcu_signal (187-195): the nudge. */
inline NUDGED()
{
	W(nudge[me] = 0);
	if
	:: online[me] -> SETTLE(); W(need[me] = 0)
	:: else
	fi
}

inline NUDGE_POINT()
{
	if
	:: nudge[me] -> NUDGED()
	:: true
	fi
}

/* lmm_switch (switch.c 58-92) with the rcu hooks. */
inline SWITCH(next)
{
	if
	:: next == 0 -> W(current[me] = 0)           /* no lazy_enter hook */
	:: next != 0 && next == act[me] ->
		W(current[me] = next);
		if                                   /* rcu_lazy_resume */
		:: counted[me] -> W(counted[me] = 0; count[next]--)
		:: else
		fi;
		if
		:: gp_wait -> REPORT_QS()
		:: else
		fi
	:: next != 0 && next != act[me] ->
		plazy = (current[me] == 0 && act[me] != INIT);
		W(current[me] = next);
		INSTALL(next, plazy);
		plazy = 0
	fi
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
	byte c, k, prev;
	bool last, plazy;

	for (k : 1 .. 2) {
		if
		:: c = 1
		:: c = 2
		fi;
		W(if :: users[c] > 0 -> users[c]++ :: else -> c = 0 fi);
		if
		:: c != 0 ->
			SWITCH(c);
			SWITCH(0);                   /* lazy on c, uncounted */
			NUDGE_POINT();
			PUT();                       /* maybe the last user, while lazy */
			NUDGE_POINT()
		:: else
		fi;
		c = 0
	}
	if
	:: true -> /* idle with lmm_idle_enter: rcu_idle_enter -> go_offline (129-137) */
#ifndef BUG_NOSETTLE
		SETTLE();
#endif
		W(online[me] = 0; need[me] = 0);
		SLEEP();
		W(online[me] = 1);                   /* rcu_idle_exit (447-463) */
		if
		:: counted[me] && count[act[me]] == 1 -> UNLAZY()
		:: else
		fi
	:: true -> /* a lazy sleep without lmm_idle_enter: only nudges help */
		SLEEP()
	:: true -> SWITCH(0); NUDGE_POINT()          /* a context-less task */
	fi;
	/* do_offline: unlazy (lazy_release drops a counted hold), then rcu_worker_offline */
	UNLAZY();
	W(online[me] = 0; need[me] = 0; done++)
}

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
	   do                                        /* wait_grace_period (283-325): nudge while waiting */
	   :: atomic { need[0] && !nudge[0] -> nudge[0] = 1 }
	   :: atomic { need[1] && !nudge[1] -> nudge[1] = 1 }
	   :: atomic { !need[0] && !need[1] -> gp_wait = 0; break }
	   od;
	   for (i : 1 .. NC - 1) {                   /* lmm__ctx_release of the batch */
		if
		:: batch[i] -> RELEASE(i); batch[i] = 0
		:: else
		fi
	   };
	   i = 0
	:: stop -> break
	od
}

init
{
	byte me = MAIN, c, i;
	bool last;

	atomic {
		users[1] = 1; count[1] = 1;
		users[2] = 1; count[2] = 1;
		online[0] = 1; online[1] = 1;
		run Worker(0);
		run Worker(1);
		run Reclaimer()
	}
	c = 1; PUT();
	c = 2; PUT();
	main_done = 1;
	(done == NW && !queued[1] && !queued[2] && !batch[1] && !batch[2] && !gp_wait);
	stop = 1;
	for (i : 1 .. NC - 1) {
		assert(state[i] == FREED);
		assert(count[i] == 0 && installed[i] == 0)
	}
}

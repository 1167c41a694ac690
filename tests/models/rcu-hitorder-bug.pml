/* Seeded bug BUG_HITORDER: see the header of rcu.pml. tests/models/check fails unless spin finds it. */
#define BUG_HITORDER
#include "rcu.pml"

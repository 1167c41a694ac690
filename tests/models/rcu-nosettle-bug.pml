/* Seeded bug BUG_NOSETTLE: see the header of rcu.pml. tests/models/check fails unless spin finds it. */
#define BUG_NOSETTLE
#include "rcu.pml"

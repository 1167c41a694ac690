/* Seeded bug BUG_004: see the header of shootdown.pml. tests/models/check fails unless spin finds it. */
#define BUG_004
#include "shootdown.pml"

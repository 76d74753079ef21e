/* libFuzzer target: snap_load on files whose fuzzed records sit at the edge
 * of its 8 MiB read window (or follow a record that makes the window grow).
 * The harness, its checks and its MAKE_SEEDS generator are fuzz_snap_load.c's,
 * in SNAP_WINDOW_MODE; see there for the input layout. Every input costs an
 * 8 MiB file, hence a target of its own rather than a mode of the fast one. */
#define SNAP_WINDOW_MODE 1
#include "fuzz_snap_load.c"

"""The garbage collector of a long-running crmsync process, tuned once it has loaded.

`tune(young)` collects, moves every object alive then (the modules, models, routes, the
engine: some 230,000 in the API) to the permanent generation (gc.freeze), so that full
collections scan only what came later, and collects the young generation every `young`
net allocations of container objects instead of Python's 700:

- the API asks API_YOUNG: a request building thousands of rows (a series by owner)
  triggered fifty collections, and its CPU time went from a mean of 78 ms (gen-2
  collections of 100-400 ms now and then) to 34 ms (docs/benchmarks.md, Metrics API);
- a worker asks WORKER_YOUNG: a sync's pages of records (a few at a time) outlived the
  young collections and were scanned by the older ones again and again, 1.37 s of CPU in
  a 100,000-deal full sync, 0.25 s after (docs/benchmarks.md, Sync). More collects even
  less, but some of a sync's garbage is in reference cycles that hold HTTP answers: at
  50,000 a syncing process's peak memory grew with N (147 MB at 20,000 deals, 213 MB at
  100,000; 132 and 136 MB at 5,000).

A process that does both (`crmsync serve` without Redis runs the jobs itself) asks the
worker's figure, and a process asked both keeps the lower.
"""

import gc

API_YOUNG = 50_000
WORKER_YOUNG = 5_000
_young: int | None = None  # what this process was tuned to


def tune(young: int) -> None:
    """Freeze what is loaded (the first time) and collect the young generation every
    `young` allocations, unless a lower figure was asked before."""
    global _young
    if _young is None:
        gc.collect()
        gc.freeze()
    if _young is None or young < _young:
        _young = young
        gc.set_threshold(young, *gc.get_threshold()[1:])

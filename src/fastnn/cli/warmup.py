"""``fastnn warmup``: compile every kernel into the on-disk cache."""
import sys

import numpy as np

from ._common import _say


def _warmup(args):
    from .._warmup import usable_cpus, warmup
    from ..kernels import _jit, _threading

    dtypes = (np.float32, np.float64) if args.float64 else (np.float32,)
    jobs = usable_cpus() if args.jobs is None else args.jobs
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    where = _jit.CACHE_DIR if _jit.CACHE else f"nowhere: the cache is {_jit.CACHE_REASON}"
    _say(f"fastnn warmup: compiling kernels for {', '.join(np.dtype(d).name for d in dtypes)} into {where} "
         f"(threading layer {_threading.configured_layer()}, {jobs} process{'es' if jobs > 1 else ''})")
    report = warmup(dtypes, out=_say, jobs=jobs, progress=not args.no_progress)
    _say(f"fastnn warmup: {report['kernels']} kernels ready ({report['signatures']} signatures) "
         f"in {report['seconds']:.1f} s")
    if report["unused"]:
        _say(f"fastnn warmup: not reached (compile on first use): {', '.join(report['unused'])}")
    for failure in report["failed"]:
        print(f"fastnn warmup: error: {failure}", file=sys.stderr)
    return 1 if report["failed"] else 0

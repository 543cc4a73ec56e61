"""``fastnn info``: versions, CPU, threads, threading layer, kernel cache."""
import os
import sys

import numpy as np

from ._common import _say


def collect_info():
    """The facts ``fastnn info`` prints, as a dict."""
    import platform

    import llvmlite
    import llvmlite.binding as llvm
    import numba

    from .. import __version__, _malloc, _precompile
    from ..kernels import _jit, _threading

    try:
        features = llvm.get_host_cpu_features()
        wanted = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512bf16",
                  "amx-tile", "neon", "sve")
        cpu_features = [f for f in wanted if features.get(f)]
    except RuntimeError:
        cpu_features = []
    from .._warmup import usable_cpus

    affinity = usable_cpus()
    env_threads = os.environ.get("NUMBA_NUM_THREADS")
    user_layer = _threading._user_layer
    cache_dir = _jit.CACHE_DIR
    try:
        compile_jobs = _precompile.default_jobs()
    except ValueError as err:  # a bad FASTNN_COMPILE_JOBS: say so here rather than fail
        compile_jobs = str(err)
    return {
        "fastnn": __version__, "python": platform.python_version(), "numpy": np.__version__,
        "numba": numba.__version__, "llvmlite": llvmlite.__version__, "platform": platform.platform(),
        "cpu": llvm.get_host_cpu_name(), "cpu_features": cpu_features, "cpus": os.cpu_count(),
        "cpus_allowed": affinity, "threads": _threading.get_threads(),
        "threads_source": f"NUMBA_NUM_THREADS={env_threads}" if env_threads else "CPUs allowed (affinity)",
        "threading_layer": _threading.configured_layer(),
        "threading_layer_source": f"NUMBA_THREADING_LAYER={user_layer}" if user_layer else "fastnn default",
        "cache": bool(_jit.CACHE), "cache_dir": cache_dir, "cache_reason": _jit.CACHE_REASON,
        "cache_writable": bool(cache_dir) and _jit._writable_dir(cache_dir),
        "malloc_tuning": _malloc.STATE,
        "compile_jobs": compile_jobs, "cache_empty": _precompile.cache_is_empty(),
        "compile_jobs_source": _precompile.ENV_JOBS if os.environ.get(_precompile.ENV_JOBS)
        else f"CPUs allowed, at most {_precompile.MAX_JOBS}",
    }


def _info(args):
    info = collect_info()
    if args.json:
        import json

        _say(json.dumps(info, indent=1))
        return 0
    _say(f"fastnn          {info['fastnn']}")
    _say(f"python          {info['python']} ({sys.executable})")
    _say(f"numpy / numba   {info['numpy']} / {info['numba']} (llvmlite {info['llvmlite']})")
    _say(f"platform        {info['platform']}")
    _say(f"cpu             {info['cpu']}, {info['cpus']} CPUs, {info['cpus_allowed']} allowed; "
         f"features: {' '.join(info['cpu_features']) or 'n/a'}")
    _say(f"threads         {info['threads']} ({info['threads_source']}; fastnn.set_num_threads to change)")
    _say(f"threading layer {info['threading_layer']} ({info['threading_layer_source']})")
    if info["cache"]:
        state = "writable" if info["cache_writable"] else "NOT writable now"
        _say(f"kernel cache    {info['cache_dir']} ({state}; {info['cache_reason']})")
    else:
        _say(f"kernel cache    {info['cache_reason']}")
    jobs = info["compile_jobs"]
    if isinstance(jobs, int):
        now = "is empty: the next fit or predict compiles so" if info["cache_empty"] else "holds kernels"
        _say(f"compile jobs    {jobs} on a first run ({info['compile_jobs_source']}; the cache {now})")
    else:
        _say(f"compile jobs    {jobs}")
    _say(f"malloc tuning   {info['malloc_tuning']}")
    return 0

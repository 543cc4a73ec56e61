"""Progress bars: tqdm when it is installed, otherwise a quiet stand-in."""
import contextlib
import sys


class _Quiet:
    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass


def progress_bar(total, desc, enabled=True, unit="it"):
    """A tqdm bar on stderr, or an object with the same methods that prints nothing."""
    if not enabled:
        return _Quiet()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print(f"{desc}: {total} {unit}s (install tqdm for a progress bar)", file=sys.stderr)
        return _Quiet()
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False, file=sys.stderr)


class CompileNotice:
    """Says on a progress bar that kernels are compiling, and keeps its rate honest.

    Use as a context manager around the steps, and count each step's work with
    :meth:`update` instead of the bar's own. When a fastnn kernel starts compiling
    (a kernel cache miss, usually in the first step) the bar's description becomes
    "compiling kernels (first run only)" at once; once that step is done the
    description comes back and the clock restarts, so the rate and the ETA count
    only the steps after the compile. With no bar (``_Quiet``) it does nothing, and
    a compile prints its one terminal line instead (``kernels._cache``).
    """

    def __init__(self, bar):
        self.bar = bar
        self.compiled = False
        self._context = contextlib.nullcontext()
        if not isinstance(bar, _Quiet):
            from .kernels._cache import compiling

            self._context = compiling(self._started)

    def __enter__(self):
        self._context.__enter__()
        return self

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)

    def _started(self):
        if not self.compiled:
            from .kernels._jit import CACHE

            self.compiled = True
            self._desc = self.bar.desc
            self.bar.set_description("compiling kernels " + ("(first run only)" if CACHE else "(no kernel cache)"))

    def update(self, n):
        """The bar's ``update(n)``; after a step that compiled, also restarts the bar's clock."""
        bar = self.bar
        if not self.compiled:
            bar.update(n)
            return
        self.compiled = False
        done = bar.n + n
        bar.reset()  # the clock, the smoothed rate and the ETA start again from here...
        bar.n = bar.initial = bar.last_print_n = done  # ...with the work done so far counted, not timed
        bar.set_description_str(self._desc)

"""Progress bars: tqdm when it is installed, otherwise a quiet stand-in."""
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

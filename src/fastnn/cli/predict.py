"""``fastnn predict MODEL INPUT OUTPUT``: score an .npy/.npz file chunk by chunk."""
import os
import time

import numpy as np

from ._common import _say, _threads


def _predict(args):
    from .._arrayfile import InputError, open_rows, write_rows
    from ..autograd.grad_mode import no_grad
    from ..checkpoint import load_model
    from ..inference import run as run_planned
    from ..progress import progress_bar
    from ..tensor import Tensor, _wrap
    from ..training import _first_run_compile_inference

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not args.output.endswith((".npy", ".npz")):
        raise InputError(f"{args.output!r}: the output must be an .npy or .npz file")
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"the output folder {folder!r} does not exist")
    _threads(args.threads)
    model = load_model(args.model)
    model.eval()
    dtype = np.dtype(model.dtype)
    reader = open_rows(args.input, args.key)
    try:
        n = reader.shape[0]
        if n == 0:
            raise InputError(f"{args.input!r} has no rows")
        chunks = reader.chunks(args.batch_size)

        def score(chunk):
            chunk = np.asarray(chunk)
            if chunk.dtype.kind == "f" and chunk.dtype != dtype:
                chunk = chunk.astype(dtype)
            with no_grad():
                out = run_planned(model, (_wrap(chunk),))
            out = out[0] if isinstance(out, tuple) else out
            return out.data if isinstance(out, Tensor) else np.asarray(out)

        first = next(chunks)
        # an empty kernel cache: the plan's kernels compile in several processes first
        _first_run_compile_inference(model, first, len(first), not args.no_progress, repeated=n > len(first))
        try:
            out = score(first)
        except (ValueError, TypeError) as err:
            raise InputError(f"the model does not accept {args.input!r} (rows of shape {reader.shape[1:]}, "
                             f"{reader.dtype}): {err}") from None
        bar = progress_bar(total=n, desc="predict", enabled=not args.no_progress, unit="row")
        start = time.perf_counter()
        try:
            with write_rows(args.output, (n,) + out.shape[1:], out.dtype, key=args.output_key) as write:
                write(out)
                bar.update(len(first))
                for chunk in chunks:
                    write(score(chunk))
                    bar.update(len(chunk))
        finally:
            bar.close()
    finally:
        reader.close()
    elapsed = time.perf_counter() - start
    _say(f"fastnn predict: {n} rows -> {args.output} {(n,) + out.shape[1:]} {out.dtype} "
         f"({n / elapsed if elapsed > 0 else float('inf'):,.0f} rows/s)")
    return 0

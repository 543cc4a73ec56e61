"""The ``fastnn`` command line (also ``python -m fastnn``).

``fastnn train CONFIG``, ``fastnn predict MODEL INPUT OUTPUT``, ``fastnn warmup``,
``fastnn info``, ``fastnn demo``. An error prints one line on stderr,
``fastnn <command>: error: ...``, and exits with status 2 (1 for unexpected
errors, 130 when interrupted); ``--debug`` shows the traceback instead.
"""
import argparse
import os
import sys
import time

import numpy as np


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _say(*parts):
    print(*parts, flush=True)


def _threads(n):
    if n is not None:
        from ._config import set_num_threads

        set_num_threads(n)


# ------------------------------------------------------------------ train
def _check_fits(model, loss, x, y, what):
    """Run one sample through the model and the loss; a clear error if they do not fit."""
    from .config_file import ConfigError

    model.eval()
    try:
        out = model(x[:1])
    except (ValueError, TypeError) as err:
        raise ConfigError(f"the model does not fit the {what} inputs (x has shape {x.shape}): {err}") from None
    finally:
        model.train()
    out = out[0] if isinstance(out, tuple) else out
    try:
        loss(out, y[:1])
    except (ValueError, TypeError) as err:
        raise ConfigError(f"the model's output (shape {out.shape[1:]} per sample) does not fit the {what} targets "
                          f"(y has shape {y.shape}) for {type(loss).__name__}: {err}") from None
    if type(loss).__name__ == "CrossEntropyLoss" and out.ndim == 2 and len(y) and (y.min() < 0 or y.max() >= out.shape[1]):
        raise ConfigError(f"the {what} labels run from {y.min()} to {y.max()} but the model outputs "
                          f"{out.shape[1]} classes")


def _resume_path(resume, checkpoint_dir):
    from .checkpoint import list_checkpoints

    if resume is None:
        return None
    if resume == "auto":  # the newest checkpoint of this config, if any: for jobs run on a schedule
        if os.path.isdir(checkpoint_dir) and list_checkpoints(checkpoint_dir):
            return checkpoint_dir
        return None
    if not os.path.exists(resume):
        raise FileNotFoundError(f"no such checkpoint: {resume!r}")
    return resume


def _distributed(args):
    """Whether ``train`` runs data-parallel: ``--distributed``, or started by an MPI launcher."""
    if args.distributed is None:
        from .distributed import launched

        args.distributed = launched()
    return args.distributed


def _end_job(args, status):
    """Under MPI, a rank that fails ends every rank: the others would wait for it forever."""
    if getattr(args, "distributed", None) and "mpi4py.MPI" in sys.modules:
        from .distributed import get_comm

        if get_comm().Get_size() > 1:
            get_comm().Abort(status)
    return status


def _train(args):
    from . import config_file as cf
    from .checkpoint import latest_checkpoint
    from ._config import set_default_dtype
    from .random import manual_seed
    from .serialization import save
    from .training import fit

    distributed, lead = _distributed(args), True
    if distributed:  # rank 0 alone prints and saves; fit lets it alone write checkpoints and the progress bar
        from .distributed import rank

        lead = rank() == 0
    say = _say if lead else (lambda *parts: None)
    cfg = cf.read_config(args.config)
    epochs = cfg.epochs if args.epochs is None else args.epochs
    _threads(args.threads if args.threads is not None else cfg.threads)
    set_default_dtype(cfg.dtype)
    dtype = np.dtype(cfg.dtype)
    manual_seed(cfg.seed)
    model = cf.build_sequential(cfg.layers)
    loss = cf.build_loss(cfg.loss)
    optimizer = cf.build_optimizer(cfg.optimizer, model.parameters())
    scheduler = None if cfg.scheduler is None else cf.build_scheduler(cfg.scheduler, optimizer)
    x, y = cf.prepare_targets(*cf.load_data(cfg, cfg.data, "data"), loss, dtype)
    if len(x) != len(y):
        raise cf.ConfigError(f"data: x has {len(x)} samples but y has {len(y)}")
    validation = None
    if isinstance(cfg.validation, float):
        order = np.random.default_rng(cfg.seed).permutation(len(x))
        n_val = max(1, int(round(len(x) * cfg.validation)))
        if n_val >= len(x):
            raise cf.ConfigError(f"validation = {cfg.validation} leaves no training samples out of {len(x)}")
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        validation, x, y = (x[val_idx], y[val_idx]), x[train_idx], y[train_idx]
    elif cfg.validation is not None:
        validation = cf.prepare_targets(*cf.load_data(cfg, cfg.validation, "validation"), loss, dtype)
    _check_fits(model, loss, x, y, "training")
    if validation is not None:
        _check_fits(model, loss, *validation, "validation")
    resume = _resume_path(args.resume, cfg.checkpoint_dir)
    n_params = sum(p.size for p in model.parameters())
    say(f"fastnn train: {os.path.basename(cfg.path)}: {len(x)} samples"
        + (f" (+{len(validation[0])} validation)" if validation is not None else "")
        + f", {n_params:,} parameters, {epochs} epochs, batch size {cfg.batch_size}")
    if resume is not None:
        say(f"resuming from {latest_checkpoint(resume) if os.path.isdir(resume) else resume}")

    def log(epoch, metrics):
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "samples_per_sec")
        say(f"epoch {epoch + 1}/{epochs}  {shown}  {metrics['samples_per_sec']:,.0f} samples/s  "
            f"-> {os.path.relpath(os.path.join(cfg.checkpoint_dir, f'epoch-{epoch + 1:04d}.ckpt'))}")

    start = time.perf_counter()
    fit(model, x, y, loss, optimizer, epochs=epochs, batch_size=cfg.batch_size, shuffle=cfg.shuffle,
        validation_data=validation, seed=cfg.seed, progress=cfg.progress and not args.no_progress,
        scheduler=scheduler, callbacks=[log], checkpoint_dir=cfg.checkpoint_dir,
        keep_checkpoints=cfg.keep_checkpoints, resume=resume, deterministic=cfg.deterministic or None,
        distributed=distributed)
    if lead:
        save(model, cfg.output)
    say(f"saved {os.path.relpath(cfg.output)} ({time.perf_counter() - start:.1f} s)")
    return 0


# ------------------------------------------------------------------ predict
def _predict(args):
    from ._arrayfile import InputError, open_rows, write_rows
    from .checkpoint import load_model
    from .progress import progress_bar

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
            out = model(chunk)
            return out[0] if isinstance(out, tuple) else out

        first = next(chunks)
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


# ------------------------------------------------------------------ warmup, info
def _warmup(args):
    from ._warmup import warmup
    from .kernels import _jit, _threading

    dtypes = (np.float32, np.float64) if args.float64 else (np.float32,)
    where = _jit.CACHE_DIR if _jit.CACHE else f"nowhere: the cache is {_jit.CACHE_REASON}"
    _say(f"fastnn warmup: compiling kernels for {', '.join(np.dtype(d).name for d in dtypes)} into {where} "
         f"(threading layer {_threading.configured_layer()})")
    report = warmup(dtypes, out=_say)
    _say(f"fastnn warmup: {report['kernels']} kernels ready ({report['signatures']} signatures) "
         f"in {report['seconds']:.1f} s")
    if report["unused"]:
        _say(f"fastnn warmup: not reached (compile on first use): {', '.join(report['unused'])}")
    for failure in report["failed"]:
        print(f"fastnn warmup: error: {failure}", file=sys.stderr)
    return 1 if report["failed"] else 0


def collect_info():
    """The facts ``fastnn info`` prints, as a dict."""
    import platform

    import llvmlite
    import llvmlite.binding as llvm
    import numba

    from . import __version__, _malloc
    from .kernels import _jit, _threading

    try:
        features = llvm.get_host_cpu_features()
        wanted = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512bf16",
                  "amx-tile", "neon", "sve")
        cpu_features = [f for f in wanted if features.get(f)]
    except RuntimeError:
        cpu_features = []
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env_threads = os.environ.get("NUMBA_NUM_THREADS")
    user_layer = _threading._user_layer
    cache_dir = _jit.CACHE_DIR
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
    _say(f"malloc tuning   {info['malloc_tuning']}")
    return 0


def _demo(args):
    from .demo import run_demo

    _threads(args.threads)
    run_demo(args.model, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    return 0


# ------------------------------------------------------------------ parser
def build_parser():
    from .demo import DEMOS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=int, default=None, metavar="N",
                         help="threads for the kernels (default: NUMBA_NUM_THREADS or the CPUs allowed)")
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument("--no-progress", action="store_true", help="no progress bar")

    parser = _Parser(prog="fastnn", description="fastnn: neural networks on Numba kernels")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", parents=[common, threads, progress], help="train a model described in a TOML file",
                           description="Train the model and run described in CONFIG (TOML); a checkpoint is "
                                       "written every epoch and the model is saved at the end.")
    train.add_argument("config", metavar="CONFIG")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue from a checkpoint file, a folder (its newest), or 'auto' (the newest in the "
                            "config's checkpoint_dir if there is one, else start fresh)")
    train.add_argument("--epochs", type=int, default=None, help="override the config's epochs (total, not extra)")
    train.add_argument("--distributed", action=argparse.BooleanOptionalAction, default=None,
                       help="train data-parallel over MPI ranks (default: when mpirun/mpiexec/srun started "
                            "more than one rank)")
    train.set_defaults(func=_train)

    predict = sub.add_parser("predict", parents=[common, threads, progress], help="score an .npy/.npz file in chunks",
                             description="Score INPUT (.npy, or .npz) with MODEL (a fastnn.save file or a "
                                         "checkpoint) chunk by chunk, in bounded memory; OUTPUT (.npy or .npz) "
                                         "appears atomically when complete.")
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument("input", metavar="INPUT")
    predict.add_argument("output", metavar="OUTPUT")
    predict.add_argument("--batch-size", type=int, default=1024, help="rows per chunk (default 1024)")
    predict.add_argument("--key", default=None, help="array of an .npz INPUT (default: x, or its only array)")
    predict.add_argument("--output-key", default="y", help="array name in an .npz OUTPUT (default: y)")
    predict.set_defaults(func=_predict)

    warm = sub.add_parser("warmup", parents=[common], help="compile every kernel into the cache",
                          description="Compile every kernel into the on-disk cache (for container images, and "
                                      "before forking workers) and report the time taken.")
    warm.add_argument("--float64", action="store_true", help="float64 kernels too")
    warm.set_defaults(func=_warmup)

    info = sub.add_parser("info", parents=[common], help="versions, CPU, threads, threading layer, cache")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_info)

    demo = sub.add_parser("demo", parents=[common, threads, progress], help="train a small model on the bundled digits")
    demo.add_argument("--model", choices=sorted(DEMOS), default="mlp")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def _message(exc):
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv=None):
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"fastnn {args.command}: interrupted", file=sys.stderr)
        return _end_job(args, 130)
    except Exception as exc:
        if args.debug:
            raise
        expected = isinstance(exc, (OSError, ValueError, TypeError, KeyError, ArithmeticError))
        kind = "" if expected else f"{type(exc).__name__}: "
        print(f"fastnn {args.command}: error: {kind}{_message(exc)}", file=sys.stderr)
        return _end_job(args, 2 if expected else 1)

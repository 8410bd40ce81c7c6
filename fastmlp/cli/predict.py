"""``fastmlp predict``: labels or probabilities for the images in a .npy file.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from pathlib import Path

from ..backend import DEVICES, get_backend
from ..config import recorded_run
from ..datasets import SCALES, scale_pixels
from ..errors import ZIP_MAGICS, FastMLPError, open_regular, os_errors, probe_path
from ..model import MLP
from .common import (
    EXIT_OK,
    Command,
)

PREDICT_SCALES = ("auto", "none", *SCALES)
PREDICT_SUFFIXES = (".npy", ".csv")


def _configure_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.npz", help="a model written by 'fastmlp train'")
    p.add_argument("images", metavar="IMAGES.npy",
                   help="(N, 784) or (N, 28, 28): floats already scaled, or uint8 pixels 0..255")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="write to FILE.npy or FILE.csv instead of printing")
    p.add_argument("--proba", action="store_true",
                   help="class probabilities (N x K) instead of labels")
    p.add_argument("--scale", choices=PREDICT_SCALES, default="auto",
                   help="unit: pixels/255; symmetric: pixels/127.5-1; none: as given; auto (the "
                        "default): uint8 images get the model's training scale (unit if not "
                        "recorded), floats are used as given")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: auto")


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (also through links), as far as can be told."""
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_predict_out(out: str | None, inputs: dict[str, str] | None = None) -> Path | None:
    """Validate --out before any work, so a typo does not cost a forward pass; it must not be
    one of ``inputs`` (what -> path: the images, the model), which it would replace."""
    if out is None:
        return None
    path = Path(out).expanduser()
    for what, name in (inputs or {}).items():
        if _same_file(path, Path(name).expanduser()):
            raise FastMLPError(f"--out {out} is the {what} file; it would be replaced: write the "
                               f"predictions to another file")
    if path.suffix.lower() not in PREDICT_SUFFIXES:
        raise FastMLPError(f"--out must end in .npy or .csv, got {path.name!r}")
    # probe_path: one line where is_dir() would raise (a name too long, an unreadable folder)
    if _is_dir(probe_path(path)):
        raise FastMLPError(f"--out {path} is a directory")
    if not _is_dir(probe_path(path.parent)):
        raise FastMLPError(f"--out: directory {path.parent} does not exist")
    return path


def _is_dir(st: os.stat_result | None) -> bool:
    return st is not None and stat.S_ISDIR(st.st_mode)


def _read_images(name: str):
    """The array in a .npy file; one-line errors for anything else."""
    import numpy as np

    from ..npyfile import OBJECTS_REFUSED, NumpyFileError, read_npy

    path = Path(name).expanduser()
    if path.suffix.lower() != ".npy":
        raise FastMLPError(f"images must be a .npy file (numpy.save), got {path.name!r}")
    try:
        images = read_npy(path, what="images file")
    except NumpyFileError as exc:
        if exc.reason.startswith("not NumPy data"):
            with open_regular(path) as f:
                npz = f.read(4) in ZIP_MAGICS
            if npz:  # an .npz archive under a .npy name
                raise FastMLPError(f"{path} is an .npz archive, not a .npy array") from None
            raise FastMLPError(f"{path} is not a .npy file (no NumPy header: another format, "
                               f"or corrupt or truncated?)") from None
        if exc.reason == OBJECTS_REFUSED:
            raise
        doubt = "" if exc.reason.endswith("the file is corrupt") else " (corrupt or truncated?)"
        raise FastMLPError(f"cannot read {path} as .npy{doubt}: {exc.reason}") from None
    if images.dtype == np.bool_ or images.dtype.kind not in "iuf":
        raise FastMLPError(f"{path}: images must be real numbers, got dtype {images.dtype}")
    return images


def _prepare_images(images, model: MLP, scale: str, where: str):
    """(N, F) float rows of the model's dtype, plus a note for the user (or "")."""
    import numpy as np

    side = math.isqrt(model.n_in)
    square = f" or (N, {side}, {side})" if side * side == model.n_in else ""
    if images.ndim not in (2, 3) or math.prod(images.shape[1:]) != model.n_in or (
            images.ndim == 3 and images.shape[1:] != (side, side)):
        raise FastMLPError(f"{where} has shape {images.shape} but the model takes "
                           f"{model.n_in} features: expected (N, {model.n_in}){square}")
    if len(images) == 0:
        raise FastMLPError(f"{where} holds no images (shape {images.shape})")
    x = images.reshape(len(images), model.n_in).astype(np.float64)
    if not np.isfinite(x).all():
        raise FastMLPError(f"{where} contains NaN or infinite values")
    note = ""
    saved = recorded_run(model.saved_config)
    if scale == "auto" and images.dtype == np.uint8 and saved.get("dataset") in ("npz",
                                                                                "synthetic"):
        scale = "none"  # trained on features used as given: so are these
    if scale == "auto":
        if images.dtype == np.uint8:
            scale = saved.get("scale") if saved.get("scale") in SCALES else "unit"
            target = "[0, 1]" if scale == "unit" else "[-1, 1]"
            note = (f"note: uint8 pixels scaled to {target} (--scale {scale}); "
                    f"--scale none uses them as given")
        else:
            scale = "none"
            if x.max() > 2.0:  # raw pixels saved as floats, most likely
                note = (f"note: values go up to {x.max():g}; if these are 0..255 pixels, "
                        f"pass --scale unit")
    with np.errstate(over="ignore"):
        x = (scale_pixels(images, scale, model.dtype) if scale in SCALES
             else np.ascontiguousarray(x, dtype=model.dtype))
    if not np.isfinite(x).all():  # float64 beyond float32's range
        raise FastMLPError(f"{where}: values overflow {model.dtype}")
    return x, note


def run_predict(args: argparse.Namespace) -> int:
    """``fastmlp predict``: labels (or probabilities) for the images in a .npy file."""
    import numpy as np

    from .. import report

    if args.out is None and getattr(args, "_stdout_closed", False):
        raise FastMLPError("standard output is closed; give --out FILE for the predictions")
    out = _check_predict_out(args.out, {"images": args.images, "model": args.model})
    images = _read_images(args.images)
    backend = get_backend(args.device)
    model = MLP.load(args.model, device=backend)
    x, note = _prepare_images(images, model, args.scale, args.images)
    if note:
        print(note, file=sys.stderr, flush=True)
    probs = backend.to_host(model.forward(backend.asarray(x, dtype=model.dtype)))
    labels = probs.argmax(axis=1).astype(np.int64)
    if out is None:
        for label, p in zip(labels, probs, strict=True):
            print(" ".join(f"{v:.6f}" for v in p) if args.proba else label)
        return EXIT_OK

    def write_csv(f) -> None:
        header = ["row", "prediction"] + ([f"p{k}" for k in range(model.n_out)]
                                          if args.proba else [])
        f.write(",".join(header) + "\n")
        for i, (label, p) in enumerate(zip(labels, probs, strict=True)):
            extra = "".join(f",{v:.8g}" for v in p) if args.proba else ""
            f.write(f"{i},{label}{extra}\n")

    # atomic: an interrupted write never leaves a complete-looking file
    with os_errors("write", out):
        if out.suffix.lower() == ".npy":
            result = probs if args.proba else labels
            report.atomic_write(out, lambda f: np.save(f, result), binary=True)
        else:
            report.atomic_write(out, write_csv, newline="")
    what = "probabilities" if args.proba else "predictions"
    print(f"wrote {len(labels)} {what} to {out}", flush=True)
    return EXIT_OK


COMMAND = Command(
    name="predict",
    help="predict the labels of images in a .npy file with a saved model",
    configure=_configure_predict,
    run=run_predict,
)

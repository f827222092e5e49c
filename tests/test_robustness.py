"""Malformed input never crashes the loaders: property-based tests (hypothesis) write NIfTI files
with odd headers, shapes, dtypes and values byte by byte and expect either a correct result or
one InputError line; model weights load without ever unpickling."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noise2average.errors import InputError
from noise2average.io import nifti
from noise2average.workflows import read_repetitions

# 40 fixed examples per test keep CI fast and repeatable; N2A_FUZZ=2000 searches harder, at random
_FUZZ = int(os.environ.get("N2A_FUZZ", "0"))
SETTINGS = settings(max_examples=_FUZZ or 40, deadline=None, derandomize=not _FUZZ,
                    suppress_health_check=[HealthCheck.too_slow])

# NIfTI datatype code -> numpy dtype of the bytes we write (None: a code nibabel cannot read)
DTYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 32: np.complex64,
          64: np.float64, 128: np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]), 256: np.int8,
          512: np.uint16, 768: np.uint32, 1024: np.int64, 1280: np.uint64, 1792: np.complex128,
          2304: np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")]),
          0: None, 1: None, 255: None, 1536: None, 16384: None}  # 16384: float16 has no code
ODD = [0.0, -1.0, float("nan"), float("inf"), 1e-30, 1e30]
GOOD_AFFINE = np.array([[-1.0, 0, 0, 3], [0, 1.2, 0, -4], [0, 0, 1.0, 5], [0, 0, 0, 1]])


@st.composite
def headers(draw, ndim=None):
    """Everything a header can get wrong, each field drawn independently."""
    nd = draw(st.integers(1, 5)) if ndim is None else ndim
    shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 5]), min_size=nd, max_size=nd)))
    if nd >= 3 and draw(st.booleans()):  # often a sane volume, so the later checks are reached
        shape = (4, 5, 3) + shape[3:]
    return {
        "shape": shape,
        "code": draw(st.sampled_from(sorted(DTYPES))),
        "values": draw(st.sampled_from(["normal", "nan", "inf", "huge", "zeros", "negative"])),
        "pixdim": [draw(st.sampled_from([1.0, 1.0, 0.7] + ODD)) for _ in range(3)],
        "sform": draw(st.sampled_from(["good", "none", "singular", "nan", "inf", "shear"])),
        "qform": draw(st.sampled_from(["none", "good", "nan"])),
        "slope": draw(st.sampled_from([1.0, 1.0, -2.0] + ODD)),
        "inter": draw(st.sampled_from([0.0, 0.0, 5.0, float("nan"), float("inf")])),
        "truncated": draw(st.booleans()) and draw(st.booleans()),
        "gz": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def _voxels(h) -> tuple[bytes, np.ndarray | None]:
    """The data bytes of a header description, and the values they hold (None: no numbers)."""
    n = int(np.prod(h["shape"])) if h["shape"] else 0
    dtype = DTYPES[h["code"]]
    rng = np.random.default_rng(h["seed"])
    if dtype is None:
        return rng.integers(0, 256, 4 * n, dtype=np.uint8).tobytes(), None
    dtype = np.dtype(dtype)
    if dtype.names:  # RGB(A): structured bytes
        return rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).tobytes(), None
    vals = rng.uniform(0, 100, n)
    if h["values"] == "negative":
        vals -= 50
    elif h["values"] == "zeros":
        vals[:] = 0
    elif h["values"] == "huge":
        vals *= 1e300 if dtype.kind in "fc" else 1
    with np.errstate(over="ignore", invalid="ignore"):
        arr = vals.astype(dtype)
    if dtype.kind in "fc" and n and h["values"] in ("nan", "inf"):
        arr.flat[n // 2] = np.nan if h["values"] == "nan" else np.inf
    return arr.reshape(h["shape"], order="F").tobytes(order="F"), arr


def write_raw(path: Path, h) -> np.ndarray | None:
    """A single-file NIfTI-1 written field by field (nibabel would refuse to save most of
    these); returns the stored values, or None when they are not plain numbers."""
    hdr = nib.Nifti1Header()
    dim = np.ones(8, dtype=np.int16)
    dim[0] = len(h["shape"])
    dim[1:1 + len(h["shape"])] = h["shape"]
    hdr["dim"] = dim
    dtype = DTYPES[h["code"]]
    hdr["datatype"] = h["code"]
    hdr["bitpix"] = 8 * (np.dtype(dtype).itemsize if dtype is not None else 4)
    pixdim = np.ones(8, dtype=np.float32)
    pixdim[1:4] = h["pixdim"]
    hdr["pixdim"] = pixdim
    aff = GOOD_AFFINE.copy()
    if h["sform"] == "singular":
        aff[2, :3] = 0
    elif h["sform"] == "nan":
        aff[0, 0] = np.nan
    elif h["sform"] == "inf":
        aff[1, 3] = np.inf
    elif h["sform"] == "shear":
        aff[0, 1] = 0.5
    hdr["sform_code"] = 0 if h["sform"] == "none" else 1
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = aff[0], aff[1], aff[2]
    hdr["qform_code"] = 0 if h["qform"] == "none" else 1
    q = np.nan if h["qform"] == "nan" else 0.1
    hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = q, 0.0, 0.0
    hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = 1.0, 2.0, 3.0
    hdr["scl_slope"], hdr["scl_inter"] = h["slope"], h["inter"]
    hdr["vox_offset"] = 352
    data, values = _voxels(h)
    if h["truncated"]:
        data = data[: len(data) // 2]
    blob = hdr.binaryblock + b"\x00" * 4 + data
    if h["gz"]:
        blob = gzip.compress(blob)
    path.write_bytes(blob)
    return values


def _assert_one_line(exc: InputError) -> None:
    msg = str(exc)
    assert msg and "\n" not in msg and len(msg) < 400, msg


def _check_volume(path: Path, h, values) -> None:
    """load_volume: a finite float32 3D volume on a usable grid, or one InputError line."""
    try:
        data, img = nifti.load_volume(path)
    except InputError as exc:
        _assert_one_line(exc)
        return
    assert data.dtype == np.float32 and data.ndim == 3 and min(data.shape) >= 2
    assert np.isfinite(data).all()
    aff = img.affine
    assert np.isfinite(aff).all() and abs(np.linalg.det(aff[:3, :3])) > 0
    zooms = np.asarray(img.header.get_zooms()[:3])
    assert np.isfinite(zooms).all() and (zooms > 0).all()
    assert h["code"] not in (32, 1792), "complex data must be refused, not silently cut"
    if values is not None and h["slope"] in (1.0, -2.0) and h["inter"] in (0.0, 5.0):
        expect = values.astype(np.float64) * h["slope"] + h["inter"]
        np.testing.assert_allclose(data.ravel(order="F"), expect.astype(np.float32),
                                   rtol=1e-5, atol=1e-3)


@SETTINGS
@given(h=headers())
def test_load_volume_any_header(h):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("img.nii.gz" if h["gz"] else "img.nii")
        values = write_raw(path, h)
        _check_volume(path, h, values)


@SETTINGS
@given(h=headers(ndim=3))
def test_load_volume_3d_headers(h):
    """The same with three dimensions, where most files get past the shape check."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("img.nii.gz" if h["gz"] else "img.nii")
        values = write_raw(path, h)
        _check_volume(path, h, values)


@SETTINGS
@given(h=headers())
def test_load_mask_any_header(h):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("mask.nii.gz" if h["gz"] else "mask.nii")
        write_raw(path, h)
        try:
            mask = nifti.load_mask(path, (4, 5, 3), GOOD_AFFINE)
        except InputError as exc:
            _assert_one_line(exc)
            return
        assert mask.dtype == bool and mask.shape == (4, 5, 3) and mask.any()


@SETTINGS
@given(shapes=st.lists(st.sampled_from([(4, 5, 3), (4, 5, 4), (5, 4, 3)]), min_size=2,
                       max_size=3),
       shifts=st.lists(st.sampled_from([0.0, 0.001, 0.5, np.nan, np.inf]), min_size=3,
                       max_size=3))
def test_check_same_grid(shapes, shifts):
    imgs, paths = [], []
    for k, (shape, shift) in enumerate(zip(shapes, shifts)):
        aff = GOOD_AFFINE.copy()
        aff[0, 3] += shift
        imgs.append(nib.Nifti1Image(np.zeros(shape, np.float32), aff))
        paths.append(Path(f"rep{k}.nii"))
    same = all(s == shapes[0] for s in shapes) and all(
        np.allclose(i.affine, imgs[0].affine, atol=nifti.AFFINE_ATOL_MM, rtol=0) for i in imgs)
    try:
        nifti.check_same_grid(imgs, paths, shapes)
    except InputError as exc:
        _assert_one_line(exc)
        assert not same
        return
    assert same


@SETTINGS
@given(reps=st.lists(headers(ndim=3), min_size=1, max_size=3), mask=st.none() | headers(ndim=3))
def test_read_repetitions_any_headers(reps, mask):
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for k, h in enumerate(reps):
            paths.append(Path(d) / f"rep{k}.nii")
            write_raw(paths[-1], h | {"gz": False})
        mask_path = None
        if mask is not None:
            mask_path = Path(d) / "mask.nii"
            write_raw(mask_path, mask | {"gz": False})
        try:
            arrays, mask_arr, like = read_repetitions(paths, mask_path)
        except InputError as exc:
            _assert_one_line(exc)
            return
        assert len(arrays) == len(paths) >= 2
        assert all(a.shape == arrays[0].shape and np.isfinite(a).all() for a in arrays)
        assert mask_arr is None or (mask_arr.shape == arrays[0].shape and mask_arr.any())
        assert np.isfinite(like.affine).all()


def test_unreadable_and_missing_files(tmp_path):
    for name, blob in (("empty.nii", b""), ("junk.nii", b"\x00" * 100 + b"junk" * 200),
                       ("junk.nii.gz", b"\x1f\x8b not really gzip"),
                       ("text.nii", b"this is not an image\n" * 30)):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(InputError) as info:
            nifti.load_volume(tmp_path / name)
        _assert_one_line(info.value)
    with pytest.raises(InputError, match="not found"):
        nifti.load_volume(tmp_path / "missing.nii.gz")
    with pytest.raises(InputError):
        nifti.load_volume(tmp_path)  # a folder


def test_float16_cannot_hide_in_a_nifti(tmp_path):
    """NIfTI-1 has no float16 code: nibabel either refuses to write it or stores another type
    that loads as numbers."""
    data = np.random.default_rng(0).uniform(0, 1, (4, 4, 4)).astype(np.float16)
    try:
        nib.save(nib.Nifti1Image(data, GOOD_AFFINE), str(tmp_path / "half.nii"))
    except Exception:  # nibabel's HeaderDataError: nothing was written
        return
    vol, _ = nifti.load_volume(tmp_path / "half.nii")
    np.testing.assert_allclose(vol, data.astype(np.float32), rtol=1e-3)


def test_cli_reports_one_line_for_a_malformed_header(tmp_path, capsys):
    from noise2average.cli import main

    h = {"shape": (6, 6, 6), "code": 16, "values": "normal", "pixdim": [1.0, float("nan"), 1.0],
         "sform": "nan", "qform": "nan", "slope": 1.0, "inter": 0.0, "truncated": False,
         "gz": True, "seed": 0}
    bad, good = tmp_path / "bad.nii.gz", tmp_path / "good.nii.gz"
    write_raw(bad, h)
    write_raw(good, h | {"pixdim": [1.0, 1.0, 1.0], "sform": "good", "qform": "none"})
    assert main(["denoise", str(good), str(bad), "-o", str(tmp_path / "out.nii.gz"),
                 "--method", "average", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("n2a denoise: error:") and "\n" not in err
    assert not (tmp_path / "out.nii.gz").exists()


# ---------------------------------------------------------------------------------------------
# model weights: safetensors only, never unpickled


class _Boom:
    """Unpickling this would create a file: the proof that pickled code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _pickle_payloads(tmp_path: Path) -> dict[str, Path]:
    import pickle

    import torch

    marker = tmp_path / "PWNED"
    files = {}
    p = tmp_path / "pickle.safetensors"
    p.write_bytes(pickle.dumps(_Boom(str(marker))))
    files["raw pickle"] = p
    p = tmp_path / "torch.safetensors"
    torch.save({"weight": torch.zeros(2), "evil": _Boom(str(marker))}, p)
    files["torch zip"] = p
    p = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2), "evil": _Boom(str(marker))}, p)
    files["torch .pt"] = p
    return files


def _safetensors_blob(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def test_load_model_refuses_pickles_and_junk(tmp_path):
    from noise2average.io.weights import load_model

    files = _pickle_payloads(tmp_path)
    junk = {
        "random bytes": np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes(),
        "huge header length": (2**62).to_bytes(8, "little") + b"{}",
        "header not json": (10).to_bytes(8, "little") + b"not json!!",
        "no config": _safetensors_blob({"w": {"dtype": "F32", "shape": [2],
                                              "data_offsets": [0, 8]}}, b"\x00" * 8),
        "config junk": _safetensors_blob({"__metadata__": {"config": "{not json"}}),
        "config wrong keys": _safetensors_blob({"__metadata__": {"config": '{"depth": 3}'}}),
        "config absurd": _safetensors_blob({"__metadata__": {"config": '{"width": -4}'}}),
        "config too wide": _safetensors_blob(
            {"__metadata__": {"config": '{"width": 100000000, "n_blocks": 9}'}}),
        "tensors missing": _safetensors_blob({"__metadata__": {"config": '{"width": 8, '
                                                                        '"n_blocks": 3}'}}),
        "bad offsets": _safetensors_blob({"w": {"dtype": "F32", "shape": [4],
                                                "data_offsets": [0, 1000]}}, b"\x00" * 16),
    }
    for name, blob in junk.items():
        p = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        p.write_bytes(blob)
        files[name] = p
    for name, path in files.items():
        with pytest.raises(InputError) as info:
            load_model(path)
        _assert_one_line(info.value)
        assert str(path.name) in str(info.value), name
    assert not (tmp_path / "PWNED").exists()


def test_load_model_names_pytorch_checkpoints(tmp_path):
    from noise2average.io.weights import load_model

    files = _pickle_payloads(tmp_path)
    with pytest.raises(InputError, match="safetensors"):
        load_model(files["torch .pt"])


def test_model_with_wrong_tensors_is_refused(tmp_path):
    """A well-formed file whose tensors do not fit its declared architecture."""
    import torch
    from safetensors.torch import save_file

    from noise2average.io.weights import load_model, save_model
    from noise2average.nn.models import build_model

    good = tmp_path / "good.safetensors"
    save_model(good, build_model("tiny"))
    load_model(good)  # the real thing loads
    bad = tmp_path / "bad.safetensors"
    meta = {"config": json.dumps({"width": 8, "n_blocks": 3})}
    save_file({"nonsense": torch.zeros(3)}, str(bad), metadata=meta)
    with pytest.raises(InputError) as info:
        load_model(bad)
    _assert_one_line(info.value)


def test_cli_init_pickle_refused(tmp_path, capsys, nifti_case):
    from noise2average.cli import main

    _, paths, mpath = nifti_case
    pt = _pickle_payloads(tmp_path)["torch .pt"]
    rc = main(["denoise", *map(str, paths), "--mask", str(mpath), "-o", str(tmp_path / "o.nii.gz"),
               "--init", str(pt), "--steps", "1", "--iterations", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "safetensors" in err, err
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "o.nii.gz").exists()


def test_cli_init_channel_mismatch_refused(tmp_path, capsys, nifti_case):
    """A network whose input channels fit neither the image alone nor the image and a noise
    map is refused in one line instead of failing inside inference."""
    from dataclasses import replace

    from noise2average.cli import main
    from noise2average.io.weights import save_model
    from noise2average.nn.models import PRESETS, build_model

    _, paths, mpath = nifti_case
    path = tmp_path / "three.safetensors"
    save_model(path, build_model(replace(PRESETS["unet-tiny"], in_channels=3)))
    rc = main(["denoise", *map(str, paths), "--mask", str(mpath), "-o", str(tmp_path / "o.nii.gz"),
               "--init", str(path), "--steps", "1", "--iterations", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "3 input channels" in err, err
    assert not (tmp_path / "o.nii.gz").exists()


def test_identical_repetitions_and_zero_steps_are_refused(tmp_path, phantom):
    from noise2average.cli import main
    from noise2average.config import DenoiseConfig
    from noise2average.errors import InputError

    reps, _, mask = phantom
    a = tmp_path / "a.nii.gz"
    b = tmp_path / "b.nii.gz"
    for p in (a, b):
        nib.save(nib.Nifti1Image(reps[0], np.eye(4)), str(p))
    assert main(["denoise", str(a), str(b), "-o", str(tmp_path / "o.nii.gz"), "--quiet"]) == 2
    assert not (tmp_path / "o.nii.gz").exists()
    with pytest.raises(InputError, match="pretrained"):
        DenoiseConfig(steps=0)
    DenoiseConfig(method="pretrained", steps=0)  # the pre-trained network alone needs none


def test_auto_mask_keeps_the_outer_slices_of_a_head_that_fills_the_field_of_view():
    """An EPI slab: the head fills the first and last slices; none of them may be dropped."""
    from noise2average.arrays.masking import auto_mask

    rng = np.random.default_rng(0)
    img = np.abs(rng.normal(0, 0.05, (48, 40, 12))).astype(np.float32)
    img[8:40, 6:34, :] += 1.0  # through every slice
    mask = auto_mask(img)
    assert mask[8:40, 6:34, 0].mean() > 0.95 and mask[8:40, 6:34, -1].mean() > 0.95
    assert not mask[:4].any()

"""Rigid registration on arrays (a 40^3 crop of the MNI152 template), its ITK transform files,
and ``n2a register`` / ``n2a denoise --register`` on NIfTI files of different grids."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from noise2average.arrays import registration as reg
from noise2average.cli import main
from noise2average.errors import InputError
from noise2average.io.transforms import read_itk_affine, write_itk_affine


def _about_centre(shape, rot_deg, trans_vox, zooms=(1.0, 1.0, 1.0)):
    """World map (mm, grid origin at voxel 0) of a rotation about the volume centre."""
    z = np.asarray(zooms)
    c = (np.asarray(shape) - 1) / 2 * z
    return (reg.translation_matrix(c) @ reg.rigid_from_euler(rot_deg, np.asarray(trans_vox) * z)
            @ reg.translation_matrix(-c))


def _moved(fixed, world, zooms=(1.0, 1.0, 1.0)):
    """A moving image such that fixed(x) = moving(world x): moving = fixed o world^-1."""
    s = np.diag([*zooms, 1.0])
    vox = reg.world_to_voxel(world, s, s)
    return reg.apply_rigid(fixed, reg.invert(vox))


def _corner_error(matrix, truth, shape):
    """Largest distance (voxels) between the two voxel maps at the corners of the grid."""
    corners = np.array([[x, y, z, 1.0] for x in (0, shape[0] - 1) for y in (0, shape[1] - 1)
                        for z in (0, shape[2] - 1)]).T
    return float(np.linalg.norm(((matrix - truth) @ corners)[:3], axis=0).max())


def test_matrix_helpers_round_trip():
    m = reg.rigid_from_euler((3.0, -2.0, 1.0), (1.0, 2.0, -3.0))
    assert np.allclose(reg.euler_deg(m), (3.0, -2.0, 1.0))
    assert reg.is_rigid(m) and not reg.is_rigid(np.diag([1.0, 1.0, 1.1, 1.0]))
    assert np.allclose(reg.compose(m, reg.invert(m)), np.eye(4))
    a = np.diag([1.2, 1.0, 2.0, 1.0])
    a[:3, 3] = (5.0, -3.0, 1.0)
    b = np.array([[0.0, -1, 0, 10], [1, 0, 0, -4], [0, 0, 1.5, 2], [0, 0, 0, 1]])
    assert np.allclose(reg.voxel_to_world(reg.world_to_voxel(m, a, b), a, b), m)
    assert np.allclose(reg.rotation_matrix(np.deg2rad([0, 0, 90])) @ [1, 0, 0], [0, 1, 0])


def test_apply_rigid_shift_and_identity(mni_crop):
    t1, _ = mni_crop
    assert np.array_equal(reg.apply_rigid(t1, np.eye(4)), t1.astype(np.float32))
    shift = reg.translation_matrix((2, 0, 0))  # out[x] = image[x + 2]
    out = reg.apply_rigid(t1, shift, order=1)
    assert np.allclose(out[:-2], t1[2:], atol=1e-5)
    assert reg.apply_rigid(t1, shift, shape=(10, 12, 14)).shape == (10, 12, 14)


def test_rigid_register_recovers_motion(mni_crop):
    fixed, mask = mni_crop
    truth = _about_centre(fixed.shape, (2.0, -1.2, 1.5), (1.5, -1.0, 0.8))
    rng = np.random.default_rng(0)
    moving = _moved(fixed, truth) + rng.normal(0, 0.01, fixed.shape).astype(np.float32)
    res = reg.rigid_register(fixed, moving, mask=mask)
    assert _corner_error(res.matrix, truth, fixed.shape) < 0.1
    assert np.abs(np.subtract(res.rotation_deg, reg.euler_deg(truth))).max() < 0.2
    assert res.metric_name == "ncc" and res.metric > 0.99
    assert reg.is_rigid(res.world)
    coarse = reg.rigid_register(fixed, moving, mask=mask, refine=False)  # mutual information only
    assert coarse.metric_name == "neg_mutual_information" and reg.is_rigid(coarse.world)


def test_refine_rigid_subvoxel_on_noisy_images(mni_crop):
    fixed, mask = mni_crop
    rng = np.random.default_rng(1)
    truth = _about_centre(fixed.shape, (0.3, -0.2, 0.25), (0.4, -0.3, 0.25))
    moving = 1.4 * _moved(fixed, truth) + 0.05  # another intensity scale, e.g. a later echo
    f_noisy = fixed + rng.normal(0, 0.02, fixed.shape).astype(np.float32)
    m_noisy = moving + rng.normal(0, 0.02, fixed.shape).astype(np.float32)
    res = reg.refine_rigid(f_noisy, m_noisy, mask=mask)
    assert _corner_error(res.matrix, truth, fixed.shape) < 0.05
    assert res.metric_name == "ncc" and 0.9 < res.metric <= 1.0
    # the result resamples the moving image onto the fixed one
    back = reg.apply_rigid(moving, res.matrix)
    inner = np.zeros_like(mask)
    inner[4:-4, 4:-4, 4:-4] = True
    assert np.corrcoef(back[inner & mask], fixed[inner & mask])[0, 1] > 0.999


def test_identity_stays_identity(mni_crop):
    fixed, mask = mni_crop
    res = reg.refine_rigid(fixed, fixed, mask=mask)
    assert np.allclose(res.matrix, np.eye(4), atol=1e-6)
    noisy = fixed + np.random.default_rng(2).normal(0, 0.02, fixed.shape).astype(np.float32)
    res = reg.rigid_register(fixed, noisy, mask=mask)
    assert _corner_error(res.matrix, np.eye(4), fixed.shape) < 0.05


def test_anisotropic_grids_in_world_space(mni_crop):
    """The moving image on another grid (voxel size, axis flip, offset): the world map is
    recovered from the affines plus the motion."""
    fixed, mask = mni_crop
    fa = np.diag([1.0, 1.0, 1.0, 1.0])
    fa[:3, 3] = (-20.0, -20.0, -20.0)
    ma = np.array([[-1.25, 0, 0, 24.0], [0, 1.0, 0, -18.0], [0, 0, 1.25, -22.0], [0, 0, 0, 1]])
    truth = _about_centre(fixed.shape, (1.0, 0.0, -1.5), (0.0, 0.0, 0.0))  # about voxel centre
    truth = fa @ truth @ reg.invert(fa)  # same motion, in this world frame
    shape = (32, 40, 32)
    # moving[y] = fixed(inv(fa) truth^-1 ma y)
    moving = reg.apply_rigid(fixed, reg.compose(reg.invert(fa), reg.invert(truth), ma),
                             shape=shape)
    res = reg.rigid_register(fixed, moving, mask=mask, fixed_affine=fa, moving_affine=ma)
    expected = reg.world_to_voxel(truth, fa, ma)
    assert _corner_error(res.matrix, expected, fixed.shape) < 0.15


@pytest.mark.parametrize("case", ["shape", "ndim", "nan", "affine", "mask", "one_affine"])
def test_bad_inputs_raise_input_error(mni_crop, case):
    fixed, mask = mni_crop
    moving, kwargs = fixed.copy(), {"mask": mask}
    if case == "shape":
        moving = fixed[:-2]
    elif case == "ndim":
        moving = fixed[..., None]
    elif case == "nan":
        moving[3, 3, 3] = np.nan
    elif case == "affine":
        kwargs.update(fixed_affine=np.zeros((4, 4)), moving_affine=np.eye(4))
    elif case == "mask":
        kwargs["mask"] = np.zeros_like(mask)
    else:
        kwargs["fixed_affine"] = np.eye(4)
    for fit in (reg.refine_rigid, reg.rigid_register):
        with pytest.raises(InputError):
            fit(fixed, moving, **kwargs)


def test_itk_transform_round_trip_and_ants_agrees(tmp_path, mni_crop):
    """Our .txt is read back exactly, and ANTs resamples through it as apply_rigid does."""
    fixed, _ = mni_crop
    aff = np.array([[-1.0, 0, 0, 20.0], [0, 1.0, 0, -20.0], [0, 0, 1.0, -19.0], [0, 0, 0, 1]])
    motion = _about_centre(fixed.shape, (2.0, 1.0, -1.0), (1.0, 0.5, -0.7))
    world = aff @ motion @ np.linalg.inv(aff)
    path = tmp_path / "rep-2_to_rep-1.txt"
    write_itk_affine(path, world)
    assert np.allclose(read_itk_affine(path), world)
    ants = pytest.importorskip("ants")
    nib.save(nib.Nifti1Image(fixed, aff), str(tmp_path / "img.nii.gz"))
    img = ants.image_read(str(tmp_path / "img.nii.gz"))
    ours = reg.apply_rigid(fixed, reg.world_to_voxel(world, aff, aff), order=1)
    theirs = ants.apply_transforms(img, img, transformlist=[str(path)], interpolator="linear")
    inner = (slice(5, -5),) * 3
    assert np.abs(theirs.numpy()[inner] - ours[inner]).max() < 1e-3


# ---------------------------------------------------------------------------------------------
# files


def _two_grids(tmp_path, mni_crop):
    """rep-1 on an LAS 1 mm grid; rep-2 moved by 2 degrees and 1.5 mm and stored on an RAS grid
    of another shape and origin, as a scanner would after a repositioning."""
    fixed, mask = mni_crop
    a1 = np.array([[-1.0, 0, 0, 20.0], [0, 1.0, 0, -20.0], [0, 0, 1.0, -19.0], [0, 0, 0, 1]])
    a2 = np.array([[1.0, 0, 0, -21.0], [0, 1.0, 0, -18.0], [0, 0, 1.0, -20.0], [0, 0, 0, 1]])
    motion = a1 @ _about_centre(fixed.shape, (2.0, -1.0, 1.0), (1.5, -1.0, 0.5)) @ np.linalg.inv(a1)
    rep2 = reg.apply_rigid(fixed, reg.compose(reg.invert(a1), reg.invert(motion), a2),
                           shape=(38, 42, 40))
    p1, p2, pm = tmp_path / "rep1.nii.gz", tmp_path / "rep2.nii.gz", tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image((fixed * 1000).astype(np.int16), a1), str(p1))
    nib.save(nib.Nifti1Image((rep2 * 1000).astype(np.int16), a2), str(p2))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), a1), str(pm))
    return p1, p2, pm, motion, a1, a2


def test_cli_register_two_grids(tmp_path, mni_crop, capsys):
    p1, p2, pm, motion, a1, a2 = _two_grids(tmp_path, mni_crop)
    out = tmp_path / "reg"
    assert main(["register", str(p1), str(p2), "-o", str(out), "--mask", str(pm), "--quiet"]) == 0
    for name in ("rep-1.nii.gz", "rep-2_registered.nii.gz", "rep-2_to_rep-1.txt", "rep-1.json",
                 "rep-2_registered.json"):
        assert (out / name).is_file(), name
    r1 = nib.load(str(out / "rep-1.nii.gz"))
    r2 = nib.load(str(out / "rep-2_registered.nii.gz"))
    assert np.allclose(r2.affine, a1) and r2.shape == r1.shape
    assert r2.get_data_dtype() == np.float32
    fixed, mask = mni_crop
    inner = np.zeros_like(mask)
    inner[4:-4, 4:-4, 4:-4] = True
    sel = inner & mask
    assert np.corrcoef(r2.get_fdata()[sel], fixed[sel])[0, 1] > 0.995
    # the transform file is the world map fixed -> moving, the motion we applied
    world = read_itk_affine(out / "rep-2_to_rep-1.txt")
    corners = np.array([[x, y, z, 1.0] for x in (0, 39) for y in (0, 39) for z in (0, 39)]).T
    err = np.linalg.norm(((world - motion) @ a1 @ corners)[:3], axis=0).max()
    assert err < 0.15
    side = json.loads((out / "rep-2_registered.json").read_text())
    assert side["registration"]["metric_name"] == "ncc"
    assert len(side["Sources"]) == 3 and "convention" in side["registration"]
    # refusing to overwrite without --force
    capsys.readouterr()
    assert main(["register", str(p1), str(p2), "-o", str(out), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["register", str(p1), str(p2), "-o", str(out), "--quiet", "--force"]) == 0


def test_cli_register_refuses_bad_input(tmp_path, mni_crop, capsys):
    p1, p2, pm, *_ = _two_grids(tmp_path, mni_crop)
    out = tmp_path / "reg"
    assert main(["register", str(p1), "-o", str(out)]) == 2
    assert main(["register", str(p1), str(p1), "-o", str(out)]) == 2
    assert main(["register", str(p1), str(p2), "-o", str(out), "--mask", str(p2)]) == 2
    assert "mask" in capsys.readouterr().err
    assert not out.exists()


def test_denoise_register_accepts_different_grids(tmp_path, mni_crop):
    p1, p2, pm, *_ = _two_grids(tmp_path, mni_crop)
    out = tmp_path / "den.nii.gz"
    # without --register, different grids are refused
    assert main(["denoise", str(p1), str(p2), "-o", str(out), "--method", "average",
                 "--quiet"]) == 2
    assert main(["denoise", str(p1), str(p2), "-o", str(out), "--mask", str(pm), "--method",
                 "average", "--register", "--quiet", "--no-report"]) == 0
    side = json.loads((tmp_path / "den.json").read_text())
    (rec,) = side["registration"]
    assert rec["repetition"] == 2 and abs(rec["rotation_deg"][0] - 2.0) < 0.3
    fixed, mask = mni_crop
    res = nib.load(str(out)).get_fdata()
    inner = np.zeros_like(mask)
    inner[4:-4, 4:-4, 4:-4] = True
    assert np.corrcoef(res[inner & mask], fixed[inner & mask])[0, 1] > 0.995

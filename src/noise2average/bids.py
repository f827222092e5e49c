"""BIDS-App mode: find the repeated acquisitions of each participant in a BIDS dataset,
denoise every group with :func:`noise2average.workflows.run_denoise`, and write BIDS
derivatives, a ``dataset_description.json`` and a summary table.

File layer only (names, folders, sidecars, scheduling); no algorithm lives here. Groups run
one after the other in this process, on a local Dask cluster (``--workers N``) or on an
existing Dask cluster (``--scheduler ADDRESS``). A failing group never stops the others.

Repetitions are files of one participant (and session) that differ only in the entities of
:data:`REPEATS`: ``run``/``echo`` for anatomical T1w and MEGRE images, ``dir``/``run`` for
DWI. The derivative drops those entities and adds ``desc-denoised``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import re
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

BIDS_VERSION = "1.10.0"
PIPELINE = "noise2average"
RAW_LINK = "raw"  # the DatasetLinks name that the Sources URIs point through
DESC = "denoised"
SUMMARY_NAME = "n2a_summary.tsv"
SUMMARY_COLUMNS = ("participant_id", "session_id", "group", "repeats", "n_inputs", "status",
                   "seconds", "output", "error")

# suffix -> (datatype folder, entities whose values tell repetitions of one acquisition apart)
REPEATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "T1w": ("anat", ("run", "echo")),
    "MEGRE": ("anat", ("run", "echo")),
    "dwi": ("dwi", ("dir", "run")),
}

_EXTS = (".nii.gz", ".nii", ".json", ".bval", ".bvec", ".tsv")
_ENTITY = re.compile(r"([a-zA-Z]+)-([a-zA-Z0-9]+)$")
_LABEL = re.compile(r"[a-zA-Z0-9]+$")


# --------------------------------------------------------------------------- file names


@dataclass(frozen=True)
class BIDSName:
    """A parsed BIDS file name: ordered ``key-value`` entities, a suffix and an extension."""

    entities: tuple[tuple[str, str], ...]
    suffix: str
    ext: str

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.entities).get(key, default)

    def stem(self, drop: tuple[str, ...] = (), desc: str | None = None) -> str:
        """The name without extension, less the ``drop`` entities, with ``desc-`` appended
        (the last entity in BIDS order)."""
        parts = [f"{k}-{v}" for k, v in self.entities if k not in drop]
        if desc:
            parts.append(f"desc-{desc}")
        return "_".join(parts + [self.suffix])


def parse_name(name: str, require_sub: bool = True) -> BIDSName | None:
    """Parse ``sub-01_ses-1_run-2_T1w.nii.gz``; None when the name does not follow BIDS.

    ``require_sub=False`` also accepts the subject-less names that the inheritance principle
    allows above the subject level (``dwi.bval``, ``acq-b1000_dwi.bval``).
    """
    ext = next((e for e in _EXTS if name.endswith(e)), None)
    if ext is None:
        return None
    parts = name[: -len(ext)].split("_")
    if not _LABEL.match(parts[-1]) or (require_sub and len(parts) < 2):
        return None
    entities = []
    for part in parts[:-1]:
        m = _ENTITY.match(part)
        if m is None:
            return None
        entities.append((m.group(1), m.group(2)))
    keys = [k for k, _ in entities]
    if len(set(keys)) != len(keys) or (require_sub and keys[0] != "sub"):
        return None
    return BIDSName(tuple(entities), parts[-1], ext)


def _inherited(path: Path, name: BIDSName, ext: str, root: Path) -> Path | None:
    """The file with extension ``ext`` that applies to ``path`` by the BIDS inheritance
    principle: the same stem beside it, else the most specific matching file in the nearest
    folder up to the dataset root."""
    same = path.with_name(name.stem() + ext)
    if same.is_file():
        return same
    own = dict(name.entities)
    folder = path.parent
    while True:
        best, best_n = None, -1
        for cand in sorted(folder.glob(f"*{ext}")):
            cn = parse_name(cand.name, require_sub=False)
            if cn is None or cn.suffix != name.suffix or cn.ext != ext:
                continue
            if all(own.get(k) == v for k, v in cn.entities) and len(cn.entities) > best_n:
                best, best_n = cand, len(cn.entities)
        if best is not None:
            return best
        if folder == root or root not in folder.parents:
            return None
        folder = folder.parent


# --------------------------------------------------------------------------- the dataset


def validate_dataset(bids_dir: Path) -> dict:
    """The dataset description of a valid BIDS folder; else one InputError naming everything
    that is missing."""
    if not bids_dir.is_dir():
        raise InputError(f"BIDS_DIR {bids_dir} is not a folder")
    problems = []
    desc: dict = {}
    desc_path = bids_dir / "dataset_description.json"
    if not desc_path.is_file():
        problems.append("no dataset_description.json")
    else:
        try:
            desc = json.loads(desc_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"dataset_description.json is not valid JSON ({exc})")
        else:
            if not isinstance(desc, dict):
                problems.append("dataset_description.json is not a JSON object")
                desc = {}
            missing = [k for k in ("Name", "BIDSVersion") if not desc.get(k)]
            if missing:
                problems.append(f"dataset_description.json has no {' and no '.join(missing)}")
    if not participants(bids_dir):
        problems.append("no sub-<label> participant folders")
    if problems:
        raise InputError(f"{bids_dir} is not a valid BIDS dataset: {'; '.join(problems)}")
    return desc


def participants(bids_dir: Path) -> list[str]:
    """Labels of the ``sub-<label>`` folders, sorted."""
    return sorted(p.name[4:] for p in bids_dir.glob("sub-*")
                  if p.is_dir() and _LABEL.match(p.name[4:]))


def _labels(values: list[str] | None, prefix: str, what: str) -> list[str] | None:
    if not values:
        return None
    out = []
    for v in values:
        label = v[len(prefix):] if v.startswith(prefix) else v
        if not _LABEL.match(label):
            raise InputError(f"invalid {what} label {v!r}: BIDS labels are letters and digits")
        if label not in out:
            out.append(label)
    return out


def _shortlist(items: list[str], n: int = 12) -> str:
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def select_participants(bids_dir: Path, requested: list[str] | None) -> list[str]:
    """Requested labels (with or without ``sub-``) checked against the dataset; all when None."""
    available = participants(bids_dir)
    wanted = _labels(requested, "sub-", "participant")
    if wanted is None:
        return available
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise InputError(f"participant(s) {', '.join(unknown)} not in {bids_dir} "
                         f"(it has {_shortlist(available)})")
    return wanted


@dataclass
class Group:
    """Repetitions of one acquisition and the derivative they become."""

    participant: str
    session: str  # "" for a dataset without sessions
    datatype: str
    name: str  # the derivative's name without sub/ses/desc, e.g. "acq-mprage_T1w"
    repeats: str  # the entities that vary, e.g. "run" or "dir+run"
    sources: list[Path]
    output: Path
    bvals: list[Path] | None = None
    bvecs: list[Path] | None = None
    problem: str | None = None  # a dataset error found while grouping: reported, not run

    @property
    def output_rel(self) -> str:
        """The output below OUT_DIR (sub-XX/[ses-YY/]datatype/name)."""
        n = 4 if self.session else 3
        return "/".join(self.output.parts[-n:])

    def row(self, **values) -> dict:
        row = {"participant_id": f"sub-{self.participant}",
               "session_id": f"ses-{self.session}" if self.session else "n/a",
               "group": self.name, "repeats": self.repeats, "n_inputs": len(self.sources),
               "status": "", "seconds": "n/a", "output": self.output_rel, "error": "n/a"}
        row.update(values)
        return row


def _units(bids_dir: Path, label: str, sessions: list[str] | None) -> list[tuple[str, Path]]:
    """(session label, folder) of a participant; ("", sub folder) without sessions."""
    sub = bids_dir / f"sub-{label}"
    ses = sorted(p for p in sub.glob("ses-*") if p.is_dir() and _LABEL.match(p.name[4:]))
    if not ses:
        return [] if sessions else [("", sub)]
    return [(p.name[4:], p) for p in ses if sessions is None or p.name[4:] in sessions]


def discover(bids_dir: Path, out_dir: Path, labels: list[str],
             sessions: list[str] | None = None) -> tuple[list[Group], list[dict]]:
    """Groups of repetitions of the selected participants, and a skipped-row for every
    participant/session that has none."""
    sessions = _labels(sessions, "ses-", "session")
    if sessions:
        seen = {p.name[4:] for lab in labels for p in (bids_dir / f"sub-{lab}").glob("ses-*")}
        unknown = [s for s in sessions if s not in seen]
        if unknown:
            raise InputError(f"session(s) {', '.join(unknown)} not found for the selected "
                             f"participants (they have {_shortlist(sorted(seen)) or 'no sessions'})")
    groups: list[Group] = []
    empty: list[dict] = []
    for label in labels:
        for ses, folder in _units(bids_dir, label, sessions):
            found = _groups_in(bids_dir, out_dir, label, ses, folder)
            groups.extend(found)
            if not found:
                empty.append({"participant_id": f"sub-{label}",
                              "session_id": f"ses-{ses}" if ses else "n/a", "group": "n/a",
                              "repeats": "n/a", "n_inputs": 0, "status": "skipped",
                              "seconds": "n/a", "output": "n/a",
                              "error": "no repeated acquisitions (T1w/MEGRE files differing "
                                       "only in run or echo, DWI only in dir or run)"})
    return groups, empty


def _groups_in(bids_dir: Path, out_dir: Path, label: str, ses: str, folder: Path) -> list[Group]:
    buckets: dict[tuple, list[tuple[BIDSName, Path]]] = {}
    for suffix, (datatype, varying) in REPEATS.items():
        for path in sorted((folder / datatype).glob(f"*_{suffix}.nii*")):
            name = parse_name(path.name)
            if name is None or name.ext not in (".nii", ".nii.gz"):
                continue
            # a file must belong to its folder; phase images are not repetitions of magnitude
            if name.get("sub") != label or (name.get("ses") or "") != ses:
                continue
            if name.get("part") == "phase":
                continue
            key = (datatype, suffix, tuple((k, v) for k, v in name.entities if k not in varying))
            buckets.setdefault(key, []).append((name, path))
    groups = []
    for (datatype, suffix, _), members in buckets.items():
        if len(members) < 2:
            continue
        varying = REPEATS[suffix][1]
        members.sort(key=lambda m: tuple(_index(m[0].get(k)) for k in varying))
        first = members[0][0]
        vary = [k for k in varying if len({m[0].get(k) for m in members}) > 1]
        sub_ses = ("sub", "ses")
        rel = Path(f"sub-{label}") / (f"ses-{ses}" if ses else "") / datatype
        group = Group(participant=label, session=ses, datatype=datatype,
                      name=first.stem(drop=varying + sub_ses),
                      repeats="+".join(vary) or "none",
                      sources=[p for _, p in members],
                      output=out_dir / rel / f"{first.stem(drop=varying, desc=DESC)}.nii.gz")
        stems = [n.stem() for n, _ in members]
        twice = [s for s in stems if stems.count(s) > 1]
        if twice:
            group.problem = f"the same acquisition is stored twice (.nii and .nii.gz): {twice[0]}"
        if datatype == "dwi" and group.problem is None:
            group.bvals, group.bvecs = [], []
            for name, path in members:
                bval, bvec = (_inherited(path, name, e, bids_dir) for e in (".bval", ".bvec"))
                if bval is None or bvec is None:
                    group.problem = f"no {'.bval' if bval is None else '.bvec'} file for {path.name}"
                    break
                group.bvals.append(bval)
                group.bvecs.append(bvec)
        groups.append(group)
    return groups


def _index(value: str | None) -> tuple[int, str]:
    """Sort key: run-2 before run-10, labels after numbers."""
    if value is None:
        return (-1, "")
    return (int(value), "") if value.isdigit() else (1 << 30, value)


# --------------------------------------------------------------------------- one group


def _time_left(rows: list[dict], total: int, parallel: bool) -> str:
    """"; about N min left", measured from the groups this run has denoised (serial runs
    only: on a cluster the groups overlap), or "" before the first one."""
    timed = [float(r["seconds"]) for r in rows if r["status"] == "ok" and r.get("seconds")]
    left = total - len(rows)
    if parallel or not timed or left <= 0:
        return ""
    return f"; about {left * sum(timed) / len(timed) / 60:.1f} min left at this pace"


def diffusion_supported() -> bool:
    """Whether this installation's ``run_denoise`` takes b-values (the diffusion workflow)."""
    from . import workflows

    return "bvals" in inspect.signature(workflows.run_denoise).parameters


def _cpus() -> int:
    from .nn.device import available_cpus

    return available_cpus()


def _worker_threads() -> int | None:
    """Torch threads for a task on a Dask worker: the CPUs this process may use, shared among
    the worker's task slots (Dask's nanny sets OMP_NUM_THREADS=1, which would leave 1)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    slots = getattr(worker, "nthreads", None) or 1
    return max(1, _cpus() // slots)


def _one_line(message: object) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= 300 else text[:297] + "..."


def run_group(group: Group, options: dict) -> dict:
    """Denoise one group into its derivative and return its summary row. Runs in a worker
    process; every failure of the group is reported in the row, never raised."""
    t0 = time.perf_counter()
    try:
        _denoise_group(group, options)
        row = group.row(status="ok")
    except InputError as exc:
        row = group.row(status="failed", error=_one_line(exc))
    except Exception as exc:  # a bug or an exhausted resource in one group must not stop a cohort
        row = group.row(status="failed", error=_one_line(f"{type(exc).__name__}: {exc}"),
                        traceback=traceback.format_exc())
    row["seconds"] = f"{time.perf_counter() - t0:.1f}"
    return row


def _denoise_group(group: Group, options: dict) -> None:
    from . import workflows

    config = dict(options["config"])
    if config.get("threads") is None:
        threads = _worker_threads()
        if threads is not None:
            config["threads"] = threads
    extra = {}
    if group.datatype == "dwi":
        extra = {"bvals": [str(p) for p in group.bvals], "bvecs": [str(p) for p in group.bvecs]}
    workflows.run_denoise([str(p) for p in group.sources], str(group.output), mask=None,
                          force=options["force"], resume=options["resume"],
                          quiet=options["quiet"], **extra, **config)
    _add_bids_keys(group, Path(options["bids_dir"]))


def _add_bids_keys(group: Group, bids_dir: Path) -> None:
    """Put the BIDS derivative keys at the top of the sidecar that run_denoise wrote."""
    from .io.atomic import write_text
    from .provenance import sidecar_path

    path = sidecar_path(group.output)
    record = json.loads(path.read_text(encoding="utf-8"))
    sources = list(group.sources)
    for extra in (group.bvals or []) + (group.bvecs or []):
        if extra not in sources:
            sources.append(extra)
    keys = {
        "Description": f"Noise2Average denoising ({record.get('config', {}).get('method', 'n2a')}) "
                       f"of {len(group.sources)} repetitions differing in {group.repeats}",
        # not resolved: in a DataLad dataset the files are links into the annex
        "Sources": [f"bids:{RAW_LINK}:{Path(os.path.relpath(p, bids_dir)).as_posix()}"
                    for p in sources],
        "SkullStripped": False,
    }
    merged = {**keys, **{k: v for k, v in record.items() if k not in keys}}
    write_text(path, json.dumps(merged, indent=2))


# --------------------------------------------------------------------------- the derivative dataset


def command_line(args: argparse.Namespace) -> str:
    """The ``n2a bids`` command that ``args`` stands for, options in a fixed order."""
    import shlex

    parts = ["n2a", "bids", str(args.bids_dir), str(args.output_dir), args.analysis_level]
    skip = {"command", "bids_dir", "output_dir", "analysis_level"}
    for key, value in vars(args).items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _is_ours(desc_path: Path) -> bool:
    try:
        desc = json.loads(desc_path.read_text(encoding="utf-8"))
        return any(g.get("Name") == PIPELINE for g in desc.get("GeneratedBy", []))
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError, OSError):
        return False


def derivative_description(raw: dict, bids_dir: Path, out_dir: Path, command: str) -> dict:
    from ._version import __version__

    link = os.path.relpath(bids_dir.resolve(), out_dir.resolve())
    return {
        "Name": f"Noise2Average denoising of {raw.get('Name', bids_dir.name)}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": PIPELINE, "Version": __version__,
                         "Description": f"Noise2Average self-supervised denoising of repeated "
                                        f"acquisitions. Command: {command}"}],
        "SourceDatasets": [{"URL": link, **({"DOI": raw["DatasetDOI"]}
                                            if raw.get("DatasetDOI") else {})}],
        "DatasetLinks": {RAW_LINK: link},
    }


def _check_out_dir(bids_dir: Path, out_dir: Path, force: bool) -> None:
    raw, out = bids_dir.resolve(), out_dir.resolve()
    if out == raw:
        raise InputError("OUT_DIR is BIDS_DIR; write derivatives elsewhere, e.g. "
                         f"{bids_dir / 'derivatives' / PIPELINE}")
    if raw in out.parents and out.relative_to(raw).parts[0].startswith("sub-"):
        raise InputError(f"OUT_DIR {out_dir} is inside a participant folder of BIDS_DIR")
    if out.exists() and not out.is_dir():
        raise InputError(f"OUT_DIR {out_dir} exists and is not a folder")
    desc = out_dir / "dataset_description.json"
    if desc.exists() and not force and not _is_ours(desc):
        raise InputError(f"{desc} belongs to another dataset or pipeline; choose another OUT_DIR "
                         "or pass --force")


# --------------------------------------------------------------------------- running


def _config_changes(args: argparse.Namespace) -> dict:
    from .config import DenoiseConfig, changes_from_options

    changes = changes_from_options(vars(args))
    DenoiseConfig(**changes)  # bad values stop here, before anything is written
    if args.method == "supervised":
        raise InputError("--method supervised needs a clean reference per group; n2a bids does "
                         "not take one (use n2a denoise --reference)")
    if (args.init not in ("pretrained", "pretrained-munet", "scratch")
            and not Path(args.init).is_file()):
        raise InputError(f"--init {args.init}: no such model file")
    return changes


def _dask_client(workers: int | None, scheduler: str | None):
    """A Dask client on a new local cluster or an existing scheduler; (client, cluster)."""
    try:
        import distributed
    except ImportError as exc:
        raise InputError("--workers and --scheduler need Dask: pip install "
                         "'noise2average[cohort]' (or 'dask[distributed]')") from exc
    if scheduler:
        try:
            return distributed.Client(scheduler, timeout=20), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot connect to the Dask scheduler at {scheduler}: "
                             f"{_one_line(exc)}") from exc
    # one single-threaded process per participant: torch gets its threads from the task
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       silence_logs=logging.ERROR, dashboard_address=None)
    return distributed.Client(cluster), cluster


def _run_serial(groups: list[Group], options: dict, done) -> None:
    for group in groups:
        done(run_group(group, options))


def _run_dask(groups: list[Group], options: dict, done, client_cluster) -> None:
    from distributed import as_completed

    client, cluster = client_cluster
    t0 = time.perf_counter()
    try:
        tag = uuid.uuid4().hex[:8]
        futures = {client.submit(run_group, g, options, pure=False, retries=0,
                                 key=f"n2a-{g.participant}-{g.session}-{g.name}-{tag}"): g
                   for g in groups}
        for fut in as_completed(futures):
            group = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # the worker died (memory?) or could not run the task
                row = group.row(status="failed", seconds=f"{time.perf_counter() - t0:.1f}",
                                error=_one_line(f"{type(exc).__name__}: {exc}"))
            done(row)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _write_summary(path: Path, rows: list[dict]) -> None:
    from .io.atomic import write_text

    def cell(v) -> str:
        return " ".join(str(v).split()) or "n/a"

    lines = ["\t".join(SUMMARY_COLUMNS)]
    lines += ["\t".join(cell(r.get(c, "n/a")) for c in SUMMARY_COLUMNS) for r in _sorted(rows)]
    write_text(path, "\n".join(lines) + "\n")


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["participant_id"], r["session_id"], r["group"]))


def format_table(rows: list[dict]) -> str:
    """The summary as an aligned text table (participant, session, group, status, seconds, error)."""
    cols = ("participant_id", "session_id", "group", "status", "seconds", "error")
    head = ("participant", "session", "group", "status", "seconds", "error")
    body = [[("-" if r.get(c) in (None, "", "n/a") else str(r[c])) for c in cols]
            for r in _sorted(rows)]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    widths[-1] = 0  # the error column is last and not padded
    fmt = "  ".join(f"{{:{w}s}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [list(head), *body])


def run_app(args: argparse.Namespace) -> int:
    """``n2a bids``: validate everything, then run every group; 0 when no group failed, 1
    when any did (bad input raises InputError before anything is written)."""
    bids_dir, out_dir = Path(args.bids_dir), Path(args.output_dir)
    if args.force and args.skip_existing:
        raise InputError("--force and --skip-existing contradict each other; choose one")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    raw_desc = validate_dataset(bids_dir)
    _check_out_dir(bids_dir, out_dir, args.force)
    labels = select_participants(bids_dir, args.participant_label)
    groups, rows = discover(bids_dir, out_dir, labels, args.session_label)
    if not groups:
        raise InputError(f"no repeated acquisitions found for participant(s) {_shortlist(labels)}"
                         ": Noise2Average needs T1w/MEGRE files that differ only in run or echo, "
                         "or DWI files that differ only in dir or run")
    config = _config_changes(args)
    parallel = args.workers is not None or args.scheduler is not None
    if args.workers is not None and config.get("threads") is None:
        config["threads"] = max(1, _cpus() // args.workers)  # share the cores, no oversubscription
    pending, existing = [], []
    dwi_ok = diffusion_supported()
    for g in groups:
        if g.problem:
            rows.append(g.row(status="failed", error=g.problem))
        elif g.datatype == "dwi" and not dwi_ok:
            rows.append(g.row(status="skipped", error="diffusion support not installed"))
        elif g.output.exists() and args.skip_existing:
            rows.append(g.row(status="skipped", error="output exists (--skip-existing)"))
        elif g.output.exists() and not args.force:
            existing.append(g)
        else:
            pending.append(g)
    if existing:
        raise InputError(f"{len(existing)} output(s) exist already (e.g. {existing[0].output}); "
                         "pass --force to overwrite them or --skip-existing to keep them")
    client_cluster = _dask_client(args.workers, args.scheduler) if parallel and pending else None

    from .io.atomic import write_text

    command = command_line(args)
    write_text(out_dir / "dataset_description.json",
               json.dumps(derivative_description(raw_desc, bids_dir, out_dir, command), indent=2))
    ignore = out_dir / ".bidsignore"  # keep the validator quiet about our non-BIDS files
    if not ignore.exists():
        write_text(ignore, f"{SUMMARY_NAME}\n*_report.html\n*.ckpt/\n")
    summary = out_dir / SUMMARY_NAME
    _write_summary(summary, rows)
    total = len(rows) + len(pending)

    def done(row: dict) -> None:
        rows.append(row)
        _write_summary(summary, rows)  # kept current: a killed cohort still tells what finished
        if not args.quiet:
            err = f": {row['error']}" if row["status"] != "ok" else ""
            ses = f" {row['session_id']}" if row["session_id"] != "n/a" else ""
            print(f"n2a bids: [{len(rows)}/{total}] {row['participant_id']}{ses} {row['group']} "
                  f"{row['status']} ({row['seconds']} s){err}{_time_left(rows, total, parallel)}",
                  file=sys.stderr, flush=True)

    options = {"bids_dir": str(bids_dir), "force": args.force, "resume": args.resume,
               "quiet": args.quiet or parallel, "config": config}
    if client_cluster is None:
        _run_serial(pending, options, done)
    else:
        _run_dask(pending, options, done, client_cluster)
    print(format_table(rows))
    for row in rows:
        if row.get("traceback") and not args.quiet:
            print(f"\n{row['participant_id']} {row['group']}:\n{row['traceback']}", file=sys.stderr)
    failed = sum(r["status"] == "failed" for r in rows)
    if not args.quiet:
        print(f"n2a bids: {sum(r['status'] == 'ok' for r in rows)} ok, {failed} failed, "
              f"{sum(r['status'] == 'skipped' for r in rows)} skipped; summary in {summary}",
              file=sys.stderr)
    return 1 if failed else 0

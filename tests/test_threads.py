"""The default thread count follows the CPUs a process may use, not the machine's cores."""

import json
import os
import subprocess
import sys

import pytest

from noise2average.nn.device import available_cpus, default_threads

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                                    reason="no CPU affinity on this platform")


@needs_affinity
def test_restricted_affinity_sets_the_default_threads():
    """A child process pinned to one CPU (as a cluster cpuset or taskset would) uses 1 thread
    without --threads, and its provenance records it."""
    code = ("import json, os, torch; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from noise2average.nn.device import resolve_policy; "
            "from noise2average.provenance import environment; "
            "p = resolve_policy('cpu', 'fp32'); e = environment(p); "
            "print(json.dumps([torch.get_num_threads(), e['cpus_available'], e['torch_threads']]))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1, 1, 1]


def test_cgroup_quota_caps_the_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: rounds down to 1
    assert available_cpus(str(tmp_path)) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(tmp_path)) == available_cpus(str(tmp_path / "none"))
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(str(v1)) == 1


def test_omp_num_threads_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert default_threads() == available_cpus()

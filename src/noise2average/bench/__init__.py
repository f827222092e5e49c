"""The benchmarks as loops: protocol v1 on T1w volumes (:mod:`.volumes`: the same simulated
case through every method, scored the same way) and the diffusion comparison on the tensor
phantom (:mod:`.dwi`). ``n2a benchmark`` and the scripts in ``benchmarks/`` run them; the
simulators they draw from are array functions (``arrays/simulate.py``,
``arrays/dwi_phantom.py``), shared with the demo and the diffusion pre-training."""

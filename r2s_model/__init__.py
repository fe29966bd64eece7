"""R2S (Relevant Reasoning Segmentation) in pure PyTorch: model, data, training, metrics.

This package never imports ROS; ``r2s_ros`` wraps it for robots.

OpenMP (torch's libgomp) reads its idle policy once, when torch loads it. Its default spins an
idle thread for 300,000 iterations after every parallel region, which on a small CPU takes
cores from other processes; ``OMP_WAIT_POLICY=PASSIVE`` puts it to sleep at once, which makes
the LLM's and the parser's thousands of tiny regions much slower (``bench/bench_model.py``).
Imported before torch, this package sets a short spin (``GOMP_SPINCOUNT``, nearly the default's
speed) unless the environment already chose a policy.
"""

import os

if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

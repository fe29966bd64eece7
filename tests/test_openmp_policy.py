"""The packages' OpenMP idle policy: a short spin unless the environment chose one, set before
torch loads OpenMP (it reads the policy once, then)."""

import os
import subprocess
import sys

import pytest

PROBE = "import {module}, os, torch; print(os.environ.get('GOMP_SPINCOUNT'))"


def spin_count(module: str, **environment: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    command = [sys.executable, "-c", PROBE.format(module=module)]
    result = subprocess.run(command, env={**env, **environment}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("module", ["r2s_model", "r2s_ros"])
def test_a_short_spin_unless_the_environment_chose_a_policy(module: str) -> None:
    assert spin_count(module) == "10000"
    assert spin_count(module, OMP_WAIT_POLICY="PASSIVE") == "None"
    assert spin_count(module, GOMP_SPINCOUNT="5") == "5"

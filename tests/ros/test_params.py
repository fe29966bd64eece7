"""The node's parameters: config/r2s.yaml documents every one with its default; bad values are
refused with the parameter's name."""

import dataclasses

import pytest
import yaml

from r2s_ros.params import (
    DESCRIPTIONS,
    NodeParameters,
    ParameterError,
    parameters_from_file,
    parameters_from_values,
)
from tests.ros.conftest import PARAMS_FILE


def test_the_params_file_lists_every_parameter_with_its_default() -> None:
    listed = yaml.safe_load(PARAMS_FILE.read_text())["r2s"]["ros__parameters"]
    names = [spec.name for spec in dataclasses.fields(NodeParameters)]
    assert list(listed) == names
    assert parameters_from_file(PARAMS_FILE) == NodeParameters()
    assert set(DESCRIPTIONS) == set(names) and all(DESCRIPTIONS.values())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pose_source": "gps"}, "pose_source must be one of ('tf', 'odometry', 'fixed')"),
        ({"tf_timeout_s": 0.0}, "tf_timeout_s must be > 0"),
        ({"instruction_queue_size": 65}, "instruction_queue_size must be in 1..64, got 65"),
        ({"tf_timeout": 1.0}, "unknown parameters ['tf_timeout']"),
        ({"score_threshold": 1.0}, "score_threshold must be in [0, 1), got 1.0"),
    ],
)
def test_bad_values_name_the_parameter(values: dict, message: str) -> None:
    with pytest.raises(ParameterError) as error:
        parameters_from_values(values)
    assert message in str(error.value)

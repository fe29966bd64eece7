# Sourced, not run: `source tools/ros_env.sh VENV`. Points CMake, ament and colcon at the ROS 2
# packages that the pip wheels installed into VENV (they put share/ and lib/ under its prefix).
_r2s_venv="$(cd "${1:?usage: source tools/ros_env.sh VENV}" && pwd)"
export PATH="$_r2s_venv/bin:$PATH"
export AMENT_PREFIX_PATH="$_r2s_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$_r2s_venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export LD_LIBRARY_PATH="$_r2s_venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _r2s_venv

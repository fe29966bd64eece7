"""ROS 2 glue for R2S: the node, PointCloud2 codec, scene accumulation and replay tools.

The generated interfaces (``r2s_ros.msg``, ``r2s_ros.srv``) live in a separate install tree in a
development setup (see README, "Package layout"); extending ``__path__`` lets Python find them
there. In a colcon install both share one directory and this line changes nothing.

``r2s_model`` is imported first so that its OpenMP spin default precedes torch's load.
"""

from pkgutil import extend_path

import r2s_model  # noqa: F401

__path__ = extend_path(__path__, __name__)

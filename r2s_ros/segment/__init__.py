"""`r2s-segment`: R2S on a saved scan (PLY, PCD, LAS/LAZ, NPY/NPZ or a rosbag2 topic).

readers (files, no ROS or model import) and bag_input (a bag through the node's intake) give a
`Cloud`; checks finds wrong units and axes; cli encodes the scene once and answers every
instruction; render and outputs write each answer's PNG, PLY and JSON atomically. Like `bags`,
a tool around the node: it may use `r2s_ros.bags`.
"""

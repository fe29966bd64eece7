"""R2S (Relevant Reasoning Segmentation) in pure PyTorch: model, data, training, metrics.

This package never imports ROS; ``r2s_ros`` wraps it for robots.
"""

"""pip metadata for the Python side of r2s_ros (the ROS build uses CMakeLists.txt)."""

from setuptools import find_packages, setup

setup(
    name="r2s_ros",
    version="0.1.0",
    description="Language-driven 3D target segmentation with spatial reasoning (R2S) for ROS 2",
    license="Apache-2.0",
    python_requires="==3.11.*",
    packages=find_packages(include=["r2s_model", "r2s_model.*", "r2s_ros", "r2s_ros.*"]),
    package_data={"r2s_model": ["weights/default/*", "weights/parser/*"]},  # the shipped models
    install_requires=[
        "numpy",
        "scipy",
        "pyyaml",
        "tqdm",
        "rich",
        "matplotlib",
        "safetensors",
        "torch",
        "transformers",
        "accelerate",
        "gguf",
        "peft",
        "rosbags",
        "plyfile",
        "pypcd4",
        "laspy[lazrs]",
    ],
    entry_points={
        "console_scripts": [
            "r2s-gen-data=r2s_model.synthetic.generate:main",
            "r2s-eval=r2s_model.eval.evaluate:main",
            "r2s-train=r2s_model.train.cli:main",
            "r2s-pretrain=r2s_model.train.cli:pretrain_main",
            "r2s-scan-data=r2s_model.synthetic.scan_data:main",
            "r2s-cache-objects=r2s_model.objects.cache:main",
            "r2s-cache-states=r2s_model.train.states:main",
            "r2s-node=r2s_ros.node:main",
            "r2s-lifecycle-node=r2s_ros.lifecycle_node:main",
            "r2s-make-bag=r2s_ros.bags.make_bag:main",
            "r2s-replay=r2s_ros.bags.replay:main",
            "r2s-demo=r2s_ros.bags.demo:main",
            "r2s-segment=r2s_ros.segment.cli:main",
        ]
    },
)

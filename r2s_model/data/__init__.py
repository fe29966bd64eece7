"""Datasets on disk: the synthetic benchmark's files (io), ScanNet-style data (scannet), and the
error both raise for a malformed file. The generator that writes the benchmark is
r2s_model.synthetic."""

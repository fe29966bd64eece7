"""The procedural benchmark: rooms of furniture built from parts, instructions with the programs
that define their answers, the independent checker, and `r2s-gen-data` (generate). Its files
are read back with r2s_model.data."""

"""One module per CLI command; each wires the stages and returns an exit code."""

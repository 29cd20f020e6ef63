"""The composition root: the `xixin` command and the orchestration that starts a broker, the
gateway and simulated terminals together. The only package that imports all the others."""

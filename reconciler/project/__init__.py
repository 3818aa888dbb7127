"""Project files, the pipeline's first stage after a source: `prefect.yaml`,
`work-pools.yaml` and the flows' entrypoints (read with `ast`), loaded and checked."""

"""hydra-core config groups (dataset/ model/ train/ eval/ scale/); composed by `hieramamba.engine.config`."""

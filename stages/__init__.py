"""Stage orchestration: one module per stage, each exposing run(config) -> RunResult."""

"""Executable runbooks: YAML files that run, verify, roll back, audit, and render as doc pages.

Load with :func:`v4runtime.runbooks.loader.load`, run with
:func:`v4runtime.runbooks.runner.run_runbook`, render with
:func:`v4runtime.runbooks.render.render_page`. Submodules are imported on demand so the CLI
starts fast.
"""

__all__ = ["audit", "commands", "coverage", "execute", "loader", "lock", "model", "params", "render", "runner", "schema"]

"""Build hook: the parser compiled with mypyc, or built as Python where it cannot be compiled.

hatch-mypyc compiles the modules that pyproject.toml lists under
``[tool.hatch.build.targets.wheel.hooks.custom]``; on its own, a failed compilation (no C
compiler, no Python headers) stops the install. This hook builds the package as Python instead
and says so, so ``pip install`` works on every machine: the parser is then slower, not
different (``storyreasoning --version`` tells which one runs). ``STORYREASONING_REQUIRE_COMPILED=1``
makes a failed compilation stop the build (to be sure a machine gets the compiled parser).
"""

from __future__ import annotations

import os

import hatch_mypyc.plugin


class ParserBuildHook(hatch_mypyc.plugin.MypycBuildHook):
    PLUGIN_NAME = "custom"

    def initialize(self, version, build_data):
        try:
            super().initialize(version, build_data)
        except Exception as exc:
            if os.environ.get("STORYREASONING_REQUIRE_COMPILED", "").lower() in ("1", "true", "yes", "on"):
                raise
            self.clean([version])  # nothing half-built is shipped
            lines = str(exc).strip().splitlines()
            reason = (lines[-1] if lines else type(exc).__name__)[:200]
            self.app.display_warning(
                f"storyreasoning: the parser could not be compiled with mypyc ({reason}); "
                "installing it as Python (slower, same "
                "results). Install a C compiler and the Python headers (apt install gcc python3-dev) "
                "and reinstall for the compiled parser."
            )


def get_build_hook():
    return ParserBuildHook

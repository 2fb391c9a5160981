"""Run at start-up by every Python process of the device run: benchmarks/gpu_vision.sh puts this folder on PYTHONPATH.

The GPU machine's image has transformers 5, which LeRobot 0.4.4 cannot import beside it (`import lerobot.policies`
fails: groot's config no longer subclasses transformers' PretrainedConfig cleanly), and transformers 5 in turn needs a
newer huggingface-hub than LeRobot takes. ACT needs nothing of transformers, so every process sees it absent, as on
this project's own machines: the path finder is swapped for one that does not find it, so
`importlib.util.find_spec("transformers")` answers None (LeRobot's and diffusers' availability checks), `import
transformers` raises ModuleNotFoundError, and it is never in sys.modules (datasets imports it when it is there).
"""

import importlib.machinery
import importlib.util
import os
import sys

HIDDEN = ("transformers",)


class _PathFinderWithout(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in HIDDEN:
            return None
        return super().find_spec(fullname, path, target)


sys.meta_path[:] = [_PathFinderWithout if f is importlib.machinery.PathFinder else f for f in sys.meta_path]

# A sitecustomize of the image's own, further along the path, still runs.
_here = os.path.dirname(os.path.abspath(__file__))
_rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _rest)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)

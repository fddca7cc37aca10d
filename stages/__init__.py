"""DVC stage entry points, run as ``python -m stages.<name>`` from the repository root.

Run as modules, not as ``python stages/<name>.py``: Python then puts the working directory
first on ``sys.path``, so a stage imports the ``bsegn`` beside it (in a queued experiment's
own copy of the workspace, too) rather than whatever ``bsegn`` is installed.
"""

from bsegn.lifeline import watch_parent

# First thing, before any stage imports torch: from here on, a dead dvc stops this stage.
watch_parent()

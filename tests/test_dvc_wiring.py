"""dvc.yaml lists, for every stage, exactly the bsegn modules its entry script imports.

Without this a change to, say, bsegn/metrics.py would not rerun classify: DVC only
knows about the files a stage lists as dependencies.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

PROBE = """
import json, runpy, sys
sys.path.insert(0, {root!r})
sys.argv = ["probe"]
runpy.run_path({script!r}, run_name="not_main")  # imports only: main() is not called
print(json.dumps(sorted(m for m in sys.modules if m.startswith("bsegn."))))
"""


def _script(stage: dict) -> str:
    """``exec python -m stages.train ...`` -> ``stages/train.py``.

    Every command starts with ``exec``: DVC runs it through ``$SHELL -c`` (``/bin/sh`` when
    SHELL is unset, as on CI), and dash does not exec the last command by itself. Without it
    the stage's parent is a shell that outlives a killed dvc, and the stage runs on."""
    cmd = stage.get("do", stage)["cmd"].split()
    assert cmd[:3] == ["exec", "python", "-m"] and cmd[3].startswith("stages."), cmd
    return cmd[3].replace(".", "/") + ".py"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_depends_on_the_modules_it_imports(name):
    stage = STAGES[name].get("do", STAGES[name])
    script = _script(STAGES[name])
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), script=str(ROOT / script))],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    imported = {m.replace(".", "/") + ".py" for m in json.loads(out.stdout)}
    listed = {d for d in stage["deps"] if d.startswith("bsegn/")}
    assert script in stage["deps"], f"{name}: entry script {script} not in deps"
    assert "stages/__init__.py" in stage["deps"], f"{name}: stages/__init__.py (run first) not in deps"
    assert "bsegn/__init__.py" in stage["deps"], f"{name}: bsegn/__init__.py (its CPU-kernel pin) not in deps"
    listed.discard("bsegn/__init__.py")
    assert imported == listed, (f"{name}: dvc.yaml deps differ from imports; "
                                f"missing {sorted(imported - listed)}, unused {sorted(listed - imported)}")


def test_every_stage_script_exists():
    for name, stage in STAGES.items():
        assert (ROOT / _script(stage)).is_file(), name


def test_per_seed_stages_depend_on_the_settings_files_they_read():
    """Each per-seed stage lists as deps exactly the settings files it reads
    (bsegn.pipeline.STAGE_SECTIONS) and no params: changing one dataset's block then changes
    only that dataset's files, and DVC leaves the other datasets' stages up to date (#24)."""
    from bsegn.config import PER_DATASET_SECTIONS
    from bsegn.pipeline import STAGE_SECTIONS

    settings = STAGES["settings"]["do"]
    outs = [next(iter(o)) for o in settings["outs"]]
    assert outs == [f"runs/${{item}}/settings/{s}.json" for s in PER_DATASET_SECTIONS]
    assert set(settings["params"][:-1]) == {"base.device", "base.tf32", "base.method", *PER_DATASET_SECTIONS}
    assert settings["params"][-1] == {"methods.yaml": ["${base.method}"]}
    for name, sections in STAGE_SECTIONS.items():
        listed = [d for d in STAGES[name]["deps"] if "/settings/" in d]
        assert listed == [f"runs/${{item.dataset}}/settings/{s}.json" for s in sections], name
        assert "params" not in STAGES[name], f"{name}: depends on params sections, not on its dataset's settings"


def test_each_per_seed_stage_computes_with_its_run_function():
    """The layout bsegn/pipeline.py describes: stages/<stage>.py calls ``run_<stage>`` (the
    function the in-process ablation calls too) and no other stage's."""
    import ast

    from bsegn.pipeline import STAGE_SECTIONS

    for name in STAGE_SECTIONS:
        tree = ast.parse((ROOT / "stages" / f"{name}.py").read_text())
        called = {getattr(node.func, "attr", getattr(node.func, "id", None)) for node in ast.walk(tree)
                  if isinstance(node, ast.Call)}
        assert {f"run_{s}" for s in STAGE_SECTIONS} & called == {f"run_{name}"}, name


def test_dvc_lock_records_the_code_as_committed():
    """Every source file a stage depends on has, in dvc.lock, the md5 it has now: a code change
    without `dvc repro` would leave `dvc status` reporting changed stages on a fresh clone and
    the committed outputs not those of the committed code (trainer.py's docstring, 2026-12-08)."""
    import hashlib

    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split())
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    gone = sorted(name for name in lock if name.split("@")[0] not in STAGES)
    assert not gone, f"dvc.lock holds stages dvc.yaml no longer has: {gone}"
    stale = {}
    for name, stage in lock.items():
        for dep in stage.get("deps", []):
            if dep["path"] in tracked and dep["path"].endswith(".py"):
                now = hashlib.md5((ROOT / dep["path"]).read_bytes()).hexdigest()
                if now != dep["md5"]:
                    stale.setdefault(dep["path"], []).append(name)
    assert not stale, f"dvc.lock is older than these files (run `dvc repro` and commit dvc.lock): {stale}"

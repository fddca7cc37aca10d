"""Stage entry points: every expected failure is one line on stderr and a set exit code."""

import errno

import pytest

from bsegn import cli
from bsegn.config import ConfigError


@pytest.fixture(autouse=True)
def no_signal_setup(monkeypatch):
    """cli.run would install its SIGTERM handler in the test process itself."""
    monkeypatch.setattr(cli, "_stop_on_sigterm", lambda: None)


def run_failing(exc, capsys):
    def main():
        raise exc
    with pytest.raises(SystemExit) as code:
        cli.run(main)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return code.value.code, err


@pytest.mark.parametrize("exc, code, text", [
    (ConfigError("train.CUB.lr: must be >= 0"), 2, "train.CUB.lr"),
    # DVC removed the stage's old outputs before it ran: the line says so and how to get them back
    (KeyboardInterrupt(), 130, "interrupted; this stage wrote nothing, but DVC had removed its previous outputs "
                               "before starting it: `dvc checkout` brings back"),
    (PermissionError(errno.EACCES, "Permission denied", "reports/results.csv"), 2,
     "reports/results.csv: Permission denied"),
    (OSError(errno.ENOSPC, "No space left on device", "runs/SYN/seed0/model.pt"), 2, "No space left"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "data/raw/SYN/res101.mat"), 2, "data/raw/SYN"),
])
def test_expected_failures_are_one_line(exc, code, text, capsys):
    got, err = run_failing(exc, capsys)
    assert got == code and text in err


def test_unexpected_errors_still_show_a_traceback():
    def main():
        raise ZeroDivisionError("a bug")
    with pytest.raises(ZeroDivisionError):
        cli.run(main)

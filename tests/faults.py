"""Assertions shared by the bad-input and fault tests: one line, no traceback, earlier files untouched."""

import hashlib
from pathlib import Path


def error_lines(result) -> list[str]:
    return [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("Error:")]


def assert_one_line_error(result, *names: str, exit_code: int | None = None) -> str:
    """The command failed with exactly one ``Error:`` line that names each of ``names``; no traceback."""
    output = result.stderr + result.stdout
    assert result.returncode != 0, output
    if exit_code is not None:
        assert result.returncode == exit_code, output
    assert "Traceback" not in output, output
    lines = error_lines(result)
    assert len(lines) == 1, output
    for name in names:
        assert str(name) in lines[0], f"{name!r} not in {lines[0]!r}"
    assert "np.str_(" not in lines[0] and "PosixPath(" not in lines[0], lines[0]
    return lines[0]


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to show a failed command changed nothing)."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}

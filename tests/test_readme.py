"""README.md starts with the two commands that CI and users rely on; CI runs the second one verbatim."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [b.split("\n```")[0].strip() for b in blocks]


def test_readme_opens_with_install_and_test_commands():
    install, tests = _commands()
    assert "pip install torch==2.13.0" in install and install.endswith("dsd sample out.png")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command():
    assert _commands()[1] in (ROOT / ".ci" / "run").read_text().splitlines()

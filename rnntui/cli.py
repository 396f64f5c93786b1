"""The ``rnntui`` command.

    rnntui CORPUS [options]            train, watching it in the terminal app (or --headless)
    rnntui train CORPUS [options]      the same; also for a corpus named like a command (or: rnntui [options] -- CORPUS)
    rnntui sample CHECKPOINT [options] generate text from a checkpoint
    rnntui gradcheck [options]         numerical (complex-step) check of the BPTT gradients

Every mistake a user can make gets one line ``rnntui: error: …`` and exit code 2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys

import click
import numpy as np

from . import __version__
from .checkpoint import CheckpointError, check_writable, claim, describe, header_of, may_replace
from .checkpoint import load as _load
from .config import (
    CELLS,
    CLIP_MODES,
    DTYPES,
    INITS,
    LECTURE_SETTINGS,
    OPTIMIZERS,
    ConfigError,
    HyperParams,
    TrainConfig,
)
from .corpus import LARGE_VOCAB, Corpus, CorpusError, Vocab, printable, read_text

EXIT_USAGE = 2


class UsageProblem(click.ClickException):
    exit_code = EXIT_USAGE


class DefaultGroup(click.Group):
    """A group whose default command is ``train``: ``rnntui CORPUS`` means ``rnntui train CORPUS``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["train", *args]
        return super().parse_args(ctx, args)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=DefaultGroup, context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, "--version", prog_name="rnntui")
@click.pass_context
def main(ctx):
    """Train a character-level RNN with hand-written BPTT and watch its gradients live.

    \b
      rnntui CORPUS.txt                  open the live trainer on a text file
      rnntui CORPUS.txt --headless       train with progress lines instead
      rnntui sample run.npz --prime "ROMEO:"
      rnntui gradcheck

    rnntui CORPUS means rnntui train CORPUS: rnntui train --help lists the training options. A corpus file
    named like a command (sample, train, gradcheck) is given as rnntui train FILE [options], or after --
    and the options: rnntui [options] -- FILE.
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _hyper_option(*names, **kw):
    return click.option(*names, show_default=True, **kw)


D = HyperParams()
C = TrainConfig()


@main.command(context_settings=CONTEXT)
@click.argument("corpus", type=click.Path(dir_okay=True, path_type=str))
@click.option("--hidden-size", type=int, default=C.hidden_size, show_default=True, help="Hidden units H.")
@click.option("--seq-length", type=int, default=C.seq_length, show_default=True, help="BPTT window T (steps).")
@click.option("--batch-size", type=int, default=C.batch_size, show_default=True, help="Sequences per batch B.")
@_hyper_option("--lr", type=float, default=D.lr, help="Learning rate.")
@_hyper_option("--optimizer", type=click.Choice(OPTIMIZERS, case_sensitive=False), default=D.optimizer,
               help="Update rule (switching mid-run starts its state fresh).")
@_hyper_option("--clip-mode", type=click.Choice(CLIP_MODES, case_sensitive=False), default=D.clip_mode,
               help="global: rescale when ‖g‖ > clip; element: clip each entry to ±clip; none.")
@_hyper_option("--clip", type=float, default=D.clip, help="Clip threshold.")
@click.option("--init", type=click.Choice(INITS), default=C.init, show_default=True,
              help="scaled: U(±1/√H); lecture: N(0, 0.01²).")
@click.option("--cell", type=click.Choice(CELLS, case_sensitive=False), default=C.cell, show_default=True,
              help="rnn: the lecture's tanh RNN; lstm, gru: PyTorch's nn.LSTM / nn.GRU cells.")
@click.option("--layers", type=int, default=C.layers, show_default=True, help="Stacked layers of the cell (1–4).")
@click.option("--dropout", type=float, default=C.dropout, show_default=True,
              help="Dropout between layers while training (0 ≤ P < 1; needs --layers 2 or more).")
@click.option("--lecture", is_flag=True,
              help="The lecture's settings: adagrad, lr 0.1, element clip ±5, N(0, 0.01²) init.")
@click.option("--dtype", type=click.Choice(DTYPES), default=C.dtype, show_default=True,
              help="Precision of the parameters and of every computation (float64 trains up to 2× slower).")
@click.option("--seed", type=int, default=C.seed, show_default=True, help="Seed for initialisation and sampling.")
@_hyper_option("--temperature", type=float, default=D.temperature, help="Sampling temperature (0: argmax).")
@_hyper_option("--sample-every", type=int, default=D.sample_every, help="Steps between samples (0: never).")
@_hyper_option("--sample-length", type=int, default=D.sample_length, help="Characters per sample.")
@_hyper_option("--val-every", type=int, default=D.val_every, help="Steps between validation losses (0: never).")
@click.option("--val-fraction", type=float, default=C.val_fraction, show_default=True,
              help="Share of the text held out for validation (the end of the file).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps in all.  [default: no limit]")
@click.option("--checkpoint", "checkpoint", type=str, default=None, metavar="PATH",
              help="Save here on ctrl+s, on quit, on Ctrl+C/SIGTERM/SIGHUP and every --checkpoint-every. "
                   "A PATH holding another run's checkpoint (or any other file) is refused; see --overwrite.")
@click.option("--overwrite", is_flag=True,
              help="Let --checkpoint PATH replace the file there, though it is not this run's (or --resume's).")
@click.option("--checkpoint-every", type=str, default="0", show_default=True, metavar="N|Ns|Nm|Nh",
              help="Periodic saves to --checkpoint: every N steps (500), or every N seconds/minutes/hours "
                   "(30s, 5m, 1h); 0: never.")
@click.option("--resume", type=str, default=None, metavar="PATH", help="Continue training from a checkpoint.")
@click.option("--headless", is_flag=True, help="Train without the app, printing progress lines.")
@click.option("--log-every", type=int, default=100, show_default=True,
              help="Steps between progress lines (headless) and --metrics lines.")
@click.option("--metrics", "metrics", type=str, default=None, metavar="PATH",
              help="Append one JSON line of figures every --log-every steps (headless and app).")
@click.option("--no-mouse", is_flag=True, help="Do not capture the mouse (for SSH and tmux).")
@click.pass_context
def train(ctx, corpus, **opts):
    """Train on CORPUS, a UTF-8 text file. Opens the live app unless --headless."""
    trainer = _build_trainer(ctx, corpus, opts)
    if not opts["headless"] and not (sys.stdin.isatty() and sys.stdout.isatty()):
        click.echo("rnntui: not a terminal, training headless (pass --headless to say so)", err=True)
        opts["headless"] = True
    if opts["headless"]:
        from .headless import run_headless

        code = run_headless(trainer, max_steps=opts["max_steps"], log_every=opts["log_every"],
                            metrics_path=opts["metrics"])
    else:
        from .tui.app import run_app

        code = run_app(trainer, max_steps=opts["max_steps"], mouse=not opts["no_mouse"], metrics_path=opts["metrics"],
                       log_every=opts["log_every"])
    ctx.exit(code)


def _positive(name, value, allow_zero=False):
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageProblem(f"{name} must be {'0 or more' if allow_zero else 'at least 1'}, got {value}")


def parse_interval(text: str) -> tuple[int, float]:
    """``--checkpoint-every``: ``"500"`` → (500 steps, 0 s); ``"30s"``, ``"5m"``, ``"1h"`` → (0 steps, seconds)."""
    raw = str(text).strip().lower()
    unit = {"s": 1, "m": 60, "h": 3600}.get(raw[-1:], 0)
    number = raw[:-1] if unit else raw
    problem = (f"--checkpoint-every must be a number of steps (500) or of seconds, minutes or hours "
               f"(30s, 5m, 1h), got {text!r}")
    try:
        value = float(number) if unit else int(number)
    except ValueError:
        raise UsageProblem(problem) from None
    if not math.isfinite(value * (unit or 1)) or value < 0:
        raise UsageProblem(problem)
    if unit:
        if 0 < value * unit < 1:
            raise UsageProblem(f"--checkpoint-every must be at least 1 second, got {text!r}")
        return 0, value * unit
    return value, 0.0


def _same_file(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


# A resumed run continues the checkpoint's TrainConfig: every field but these must match it when given.
#   hyper: the hyperparameters, which may change at any time (and do on resume: --lr and the like);
#   seed:  it only draws the first weights and random state, and the checkpoint brings both, so a --seed
#          given with --resume has nothing left to seed and is not a conflict.
RESUME_FREE = frozenset({"hyper", "seed"})
RESUME_FIXED = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in RESUME_FREE)
HYPER_NAMES = tuple(f.name for f in dataclasses.fields(HyperParams))


def _build_trainer(ctx, corpus_path: str, o: dict):
    explicit, saves = _options_checked(ctx, corpus_path, o)
    notes: list[str] = []  # shown once the run is sure to start, so a refusal stays one line
    try:
        config = _settings(o)
        if o["checkpoint"]:
            check_writable(o["checkpoint"])
        if o["metrics"]:
            check_writable(o["metrics"], "metrics", "metrics.jsonl", replaced=False)
        if o["resume"]:
            trainer = _resumed(corpus_path, o, config, explicit, saves, notes)
        else:
            trainer = _fresh(corpus_path, o, config, saves, notes)
    except (ConfigError, CorpusError, CheckpointError) as e:
        raise UsageProblem(str(e)) from None
    except MemoryError:
        raise UsageProblem(f"not enough memory for a model with hidden size {o['hidden_size']} and batch size "
                           f"{o['batch_size']} on this corpus; use a smaller --hidden-size or --batch-size") from None
    _destination_checked(trainer, o)
    if o["max_steps"] is not None and trainer.step >= o["max_steps"] and o["resume"]:
        raise UsageProblem(f"the checkpoint is already at step {trainer.step}; give a --max-steps above it")
    for note in notes:
        click.echo(note, err=True)
    return trainer


def _options_checked(ctx, corpus_path: str, o: dict) -> tuple[set[str], dict]:
    """Apply --lecture to ``o`` and refuse bad values and combinations of options (no file is read).

    Returns the options given on the command line (--lecture's count as given) and the save schedule as
    :class:`~rnntui.trainer.Trainer` keywords."""
    explicit = {k for k in o if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
    if o["lecture"]:
        for k, v in LECTURE_SETTINGS.items():
            if k not in explicit:
                o[k] = v
                explicit.add(k)
    _positive("--max-steps", o["max_steps"], allow_zero=True)
    every_steps, every_seconds = parse_interval(o["checkpoint_every"])
    if (every_steps or every_seconds) and not (o["checkpoint"] or o["resume"]):
        raise UsageProblem(f"--checkpoint-every {o['checkpoint_every']} needs --checkpoint PATH to save to; add it")
    if o["overwrite"] and not o["checkpoint"]:
        raise UsageProblem("--overwrite lets --checkpoint PATH replace its file; give --checkpoint PATH or leave "
                           "--overwrite out")
    _positive("--log-every", o["log_every"])
    for name, other in (("--checkpoint", o["checkpoint"]), ("--metrics", o["metrics"])):
        if _same_file(other, corpus_path):
            raise UsageProblem(f"{name} {other} is the corpus file itself; give another path")
    if _same_file(o["checkpoint"] or o["resume"], o["metrics"]):
        raise UsageProblem(f"--metrics {o['metrics']} is the checkpoint file; give another path")
    return explicit, {"checkpoint_every": every_steps, "checkpoint_seconds": every_seconds}


def _settings(o: dict) -> TrainConfig:
    """The run's settings from the options (a TrainConfig field without an option keeps its default)."""
    hyper = HyperParams(**{k: o[k] for k in HYPER_NAMES}).validated()  # its messages first, as always
    given = {f.name: o[f.name] for f in dataclasses.fields(TrainConfig) if f.name != "hyper" and f.name in o}
    return TrainConfig(**given, hyper=hyper).validated()


def _resumed(corpus_path: str, o: dict, config: TrainConfig, explicit: set[str], saves: dict, notes: list[str]):
    """The trainer continuing ``--resume``'s checkpoint, with the hyperparameters given on the command line."""
    from .trainer import resume_trainer

    ckpt = load_checkpoint(o["resume"], "the path given to --resume")
    corpus = _corpus_for_checkpoint(read_text(corpus_path), ckpt, corpus_path, notes)
    fixed = [k for k in RESUME_FIXED if k in explicit and getattr(config, k) != getattr(ckpt.config, k)]
    if fixed:
        raise UsageProblem(f"--{fixed[0].replace('_', '-')} cannot change when resuming (the checkpoint has "
                           f"{getattr(ckpt.config, fixed[0])}); leave it out")
    # without --checkpoint, a resumed run keeps saving into the file it came from
    if not o["checkpoint"]:
        try:
            check_writable(o["resume"])
        except CheckpointError as e:
            raise UsageProblem(f"{e} (a resumed run saves back into it; give --checkpoint PATH to save "
                               "elsewhere)") from None
    changes = {k: getattr(config.hyper, k) for k in HYPER_NAMES if k in explicit}
    return resume_trainer(ckpt, corpus, hyper_changes=changes, checkpoint_path=o["checkpoint"] or o["resume"],
                          **saves)


def _fresh(corpus_path: str, o: dict, config: TrainConfig, saves: dict, notes: list[str]):
    """A new trainer on the corpus file."""
    from .trainer import Trainer

    corpus = Corpus.load(corpus_path, val_fraction=config.val_fraction)
    if corpus.vocab.size > LARGE_VOCAB:
        notes.append(f"rnntui: warning: {corpus.vocab.size} distinct characters; the output layer will make "
                     "training slow (consider a smaller --hidden-size)")
    return Trainer(corpus, config, checkpoint_path=o["checkpoint"], **saves)


def _destination_checked(trainer, o: dict) -> None:
    """Refuse a --checkpoint file that is not this run's, unless --overwrite (which claims it for the run)."""
    path = o["checkpoint"]
    if not path:
        return
    if o["overwrite"]:
        trainer.claimed.update(claim(path))
    elif not may_replace(path, trainer.run_id, trainer.claimed):
        go_on = f", --resume {path} to continue that run" if header_of(path) is not None else ""
        raise UsageProblem(f"--checkpoint {path} holds {describe(path)}; give another path{go_on}, or add "
                           "--overwrite to replace it")


def _corpus_for_checkpoint(text: str, ckpt, path: str, notes: list[str]) -> Corpus:
    """The corpus encoded with the checkpoint's vocabulary, or a clear refusal."""
    vocab = ckpt.vocab
    missing = vocab.missing(text)
    used = Vocab.from_text(text)
    if missing:
        more = "…" if len(missing) > 12 else ""
        raise UsageProblem(
            f"vocabulary mismatch: the checkpoint knows {vocab.size} characters ({_excerpt(vocab.chars)}), the "
            f"corpus uses {used.size}, {len(missing)} of them unknown to the checkpoint ({printable(missing[:12])}"
            f"{more}); resume on a text made only of the checkpoint's characters (training then continues on its "
            "vocabulary), or start a new run without --resume"
        )
    if used.size < vocab.size:
        notes.append(f"rnntui: note: the corpus uses {used.size} of the checkpoint's {vocab.size} characters; "
                     "training continues on the checkpoint's vocabulary")
    return Corpus.from_text(text, val_fraction=ckpt.config.val_fraction, vocab=vocab, path=path)


def load_checkpoint(path: str, given_as: str = "the path given to --checkpoint"):
    """:func:`rnntui.checkpoint.load`, its messages naming where the user gave the path (``given_as``)."""
    return _load(path, given_as)


def _excerpt(chars: str, n: int = 20) -> str:
    return printable(chars[:n]) + ("…" if len(chars) > n else "")


@main.command(context_settings=CONTEXT)
@click.argument("checkpoint", type=str)
@click.option("--prime", default="\n", help="Text to feed the network first.  [default: a newline]")
@click.option("-n", "--length", type=int, default=500, show_default=True, help="Characters to generate.")
@click.option("--temperature", type=float, default=0.8, show_default=True, help="0 picks the most likely character.")
@click.option("--seed", type=int, default=None, help="Seed for reproducible samples.")
def sample(checkpoint, prime, length, temperature, seed):
    """Generate text from a CHECKPOINT."""
    _positive("--seed", seed, allow_zero=True)
    try:
        ckpt = load_checkpoint(checkpoint, "the CHECKPOINT given to rnntui sample")
        HyperParams().replace(temperature=temperature, sample_length=length)
    except (CheckpointError, ConfigError) as e:
        raise UsageProblem(str(e)) from None
    model = ckpt.model()
    missing = ckpt.vocab.missing(prime) if prime else ""
    if missing:
        raise UsageProblem(f"--prime has characters the model does not know: {printable(missing)}; "
                           f"it knows {printable(ckpt.vocab.chars)}")
    prime = prime or ckpt.vocab.chars[0]
    text = model.sample(None, prime, length, temperature, np.random.default_rng(seed))
    click.echo(prime + text)


@main.command(context_settings=CONTEXT)
@click.option("--checkpoint", type=str, default=None, metavar="PATH",
              help="Check this checkpoint's model (on a random batch of its vocabulary) instead of a small random one.")
@click.option("--hidden-size", type=int, default=8, show_default=True)
@click.option("--cell", type=click.Choice(CELLS, case_sensitive=False), default="rnn", show_default=True,
              help="The random model's cell (a --checkpoint has its own).")
@click.option("--layers", type=int, default=1, show_default=True, help="The random model's layers (1–4).")
@click.option("--dropout", type=float, default=0.0, show_default=True,
              help="The random model's dropout between layers: one fixed mask is drawn and checked through.")
@click.option("--vocab-size", type=int, default=10, show_default=True)
@click.option("--seq-length", type=int, default=6, show_default=True)
@click.option("--batch-size", type=int, default=3, show_default=True)
@click.option("--entries", type=int, default=None, help="Entries checked per tensor.  [default: all for a small "
              "model, 40 for a checkpoint]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threshold", type=float, default=1e-6, show_default=True, help="Largest relative error that passes.")
def gradcheck(checkpoint, hidden_size, cell, layers, dropout, vocab_size, seq_length, batch_size, entries, seed,
              threshold):
    """Compare the BPTT gradients with complex-step derivatives in float64, equation by equation: every parameter
    tensor and every layer's initial state (h0, and c0 for the lstm)."""
    from . import gradcheck as gc

    for name, value in (("--hidden-size", hidden_size), ("--vocab-size", vocab_size),
                        ("--seq-length", seq_length), ("--batch-size", batch_size), ("--entries", entries)):
        _positive(name, value)
    _positive("--seed", seed, allow_zero=True)
    if not threshold > 0 or not np.isfinite(threshold):
        raise UsageProblem(f"--threshold must be a positive number, got {threshold}")
    try:
        TrainConfig(cell=cell, layers=layers, dropout=dropout).validated()
    except ConfigError as e:
        raise UsageProblem(str(e)) from None
    rng = np.random.default_rng(seed)
    if checkpoint:
        try:
            ckpt = load_checkpoint(checkpoint)
        except CheckpointError as e:
            raise UsageProblem(str(e)) from None
        model = ckpt.model()
        vocab_size = model.V
        entries = entries or 40
        x = rng.integers(0, vocab_size, (batch_size, seq_length))
        y = rng.integers(0, vocab_size, (batch_size, seq_length))
        h0 = gc.random_state(model, batch_size, rng)
        where = f"checkpoint {checkpoint} ({_architecture(model)}, H={model.H}, V={model.V})"
    else:
        model, x, y, h0 = gc.random_problem(vocab_size, hidden_size, batch_size, seq_length, seed, cell=cell.lower(),
                                            layers=layers, dropout=dropout)
        where = f"random model ({_architecture(model)}, H={hidden_size}, V={vocab_size})"
    masks = gc.random_masks(model, batch_size, seq_length, seed)
    results = [gc.check_forward(model, x, y, h0, masks),
               *gc.check_model(model, x, y, h0, masks, entries=entries, seed=seed)]
    click.echo(f"gradient check, float64, {gc.METHOD}, {where}, B={batch_size}, T={seq_length}")
    click.echo(gc.format_table(results))
    worst = max(results, key=lambda r: np.nan_to_num(r.max_error, nan=np.inf))  # a NaN error fails
    if not worst.max_error < threshold:
        click.echo(f"FAILED: {worst.equation} ({worst.name}) has relative error {worst.max_error:.2e} "
                   f"≥ {threshold:g} at entry {worst.worst_index}: analytic {worst.analytic:.10g}, "
                   f"numeric {worst.numeric:.10g}", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"all passed: largest relative error {worst.max_error:.2e} < {threshold:g}")


def _architecture(model) -> str:
    """``lstm, 2 layers, dropout 0.3 (one fixed mask)``: what a model is, for the check's header."""
    layers = f", {model.layers} layers" if model.layers > 1 else ""
    dropout = f", dropout {model.dropout:g} (one fixed mask)" if model.dropout > 0 and model.layers > 1 else ""
    return f"{model.cell}{layers}{dropout}"


def run(argv=None) -> int:
    """Entry point: click without its multi-line usage errors or tracebacks."""
    try:
        rv = main.main(args=argv, prog_name="rnntui", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("rnntui: aborted", err=True)
        return 130
    except MemoryError as e:
        click.echo(f"rnntui: error: not enough memory{f' ({e})' if str(e) else ''}; use smaller sizes "
                   "(--hidden-size, --batch-size, --seq-length)", err=True)
        return EXIT_USAGE
    except click.ClickException as e:
        msg = e.format_message().replace("\n", " ")
        hint = "" if isinstance(e, UsageProblem) else " (see rnntui --help)"
        click.echo(f"rnntui: error: {msg}{hint}", err=True)
        return e.exit_code if e.exit_code else EXIT_USAGE
    return rv if isinstance(rv, int) else 0


def entry() -> None:
    sys.exit(run())


__all__ = ["main", "run", "entry"]

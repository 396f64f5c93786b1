"""The ``rnntui`` command.

    rnntui CORPUS [options]            start a run in the background and watch it in the terminal app
                                       (--detach: start it and return; --headless: train here, printing)
    rnntui train CORPUS [options]      the same; also for a corpus named like a command (or: rnntui [options] -- CORPUS)
    rnntui runs [--json]               the runs: name, state, step, losses, speed, age, corpus, checkpoint
    rnntui watch [NAME]                open the app on a run (default: the live one started last)
    rnntui stop NAME [--no-save]       stop a run between steps, save and end it
    rnntui sample CHECKPOINT [options] generate text from a checkpoint
    rnntui gradcheck [options]         numerical (complex-step) check of the BPTT gradients

Every mistake a user can make gets one line ``rnntui: error: …`` and exit code 2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
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
#: A run saves its checkpoint this often unless told otherwise: a kill -9 or a power cut loses minutes.
DEFAULT_SAVE_EVERY = "5m"


class UsageProblem(click.ClickException):
    exit_code = EXIT_USAGE


class ForgetBias(click.ParamType):
    """``--forget-bias``: a number, or ``drawn`` (None: the bias as PyTorch draws it)."""

    name = "B|drawn"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, float):
            return value
        text = str(value).strip().lower()
        if text == "drawn":
            return None
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            self.fail(f"must be a number (1, 0) or drawn, got {value!r}", param, ctx)
        return number


class DefaultGroup(click.Group):
    """A group whose default command is ``train``: ``rnntui CORPUS`` means ``rnntui train CORPUS``. The
    training options as given are kept (``ctx.meta["train_args"]``): a run in the background gets them."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["train", *args]
        if args and args[0] == "train":
            ctx.meta["train_args"] = list(args[1:])
        return super().parse_args(ctx, args)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=DefaultGroup, context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, "--version", prog_name="rnntui")
@click.pass_context
def main(ctx):
    """Train a character-level RNN with hand-written BPTT and watch its gradients live.

    \b
      rnntui CORPUS.txt                  start a run on a text file and watch it live
      rnntui CORPUS.txt --detach         start it in the background (it outlives the terminal)
      rnntui runs                        list the runs; rnntui watch NAME opens the app on one
      rnntui stop NAME                   stop a run, saving its checkpoint
      rnntui CORPUS.txt --headless       train here with progress lines instead
      rnntui sample run.npz --prime "ROMEO:"
      rnntui gradcheck

    rnntui CORPUS means rnntui train CORPUS: rnntui train --help lists the training options. A corpus file
    named like a command (train, runs, watch, stop, sample, gradcheck) is given as rnntui train FILE [options],
    or after -- and the options: rnntui [options] -- FILE.
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
@click.option("--forget-bias", type=ForgetBias(), default=C.forget_bias, show_default=True,
              help="The lstm's initial forget gate bias b_if + b_hf; drawn: as PyTorch draws it, U(±1/√H) twice.")
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
@click.option("--name", type=str, default=None, metavar="NAME",
              help="The run's name (its folder under $RNNTUI_HOME/runs).  [default: the corpus's stem and a number]")
@click.option("--detach", is_flag=True,
              help="Start the run in the background and return: rnntui watch NAME opens the app on it.")
@click.option("--checkpoint", "checkpoint", type=str, default=None, metavar="PATH",
              help="Save here instead of the run's own checkpoint (runs/NAME/checkpoint.npz). "
                   "A PATH holding another run's checkpoint (or any other file) is refused; see --overwrite.")
@click.option("--overwrite", is_flag=True,
              help="Let --checkpoint PATH replace the file there, though it is not this run's (or --resume's).")
@click.option("--checkpoint-every", type=str, default=DEFAULT_SAVE_EVERY, show_default=True, metavar="N|Ns|Nm|Nh",
              help="Periodic saves: every N steps (500), or every N seconds/minutes/hours (30s, 5m, 1h); 0: never "
                   "(a run still saves when it is stopped).")
@click.option("--resume", type=str, default=None, metavar="PATH|NAME",
              help="Continue training from a checkpoint file, or the run NAME (in its folder, under its name).")
@click.option("--headless", is_flag=True, help="Train here, in the foreground, printing progress lines "
              "(the run can still be watched: rnntui watch NAME).")
@click.option("--log-every", type=int, default=100, show_default=True,
              help="Steps between progress lines (headless) and metrics lines.")
@click.option("--metrics", "metrics", type=str, default=None, metavar="PATH",
              help="Append one JSON line of figures every --log-every steps to PATH too (every run writes them "
                   "to runs/NAME/metrics.jsonl).")
@click.option("--no-mouse", is_flag=True, help="Do not capture the mouse (for SSH and tmux).")
@click.pass_context
def train(ctx, corpus, **opts):
    """Train on CORPUS, a UTF-8 text file: a run of its own, in the background, with the app open on it
    (q: detach or stop); --detach starts it and returns; --headless trains here, printing progress lines."""
    if opts["detach"] and opts["headless"]:
        raise UsageProblem("--detach starts a run in the background and --headless trains in the foreground; "
                           "give one of them")
    if not opts["headless"] and not opts["detach"] and not (sys.stdin.isatty() and sys.stdout.isatty()):
        click.echo("rnntui: not a terminal, training headless (pass --headless to say so)", err=True)
        opts["headless"] = True
    if opts["headless"]:
        from .headless import run_headless

        trainer, folder = start_run(ctx, corpus, opts)
        ctx.exit(run_headless(trainer, folder=folder, max_steps=opts["max_steps"], log_every=opts["log_every"],
                              metrics_path=opts["metrics"]))
    started = _launch(ctx.meta.get("train_args") or [corpus])
    if opts["detach"]:
        click.echo(f"run {started.name} started in the background (pid {started.pid}"
                   + (f", from step {started.step}" if started.step else "") + ")")
        click.echo(f"  rnntui watch {started.name}    open the app on it (q there: detach or stop)")
        click.echo(f"  rnntui stop {started.name}     stop it, saving {started.checkpoint}")
        click.echo("  rnntui runs                 every run and its state")
        ctx.exit(0)
    ctx.exit(_watch(_connect(started.socket, started.name), mouse=not opts["no_mouse"]))


def _launch(args: list[str]):
    """The run of these training options, started in the background (its refusals passed on as they are)."""
    from .runs.launch import LaunchFailed, start

    try:
        started = start(args)
    except LaunchFailed as e:
        if e.output.strip():
            click.echo(e.output.rstrip("\n"), err=True)
            raise click.exceptions.Exit(e.code) from None
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        raise click.exceptions.Abort() from None
    if started.notes.strip():
        click.echo(started.notes.rstrip("\n"), err=True)
    return started


@main.command("_serve", hidden=True, context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.option("--ready-fd", type=int, required=True)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def serve_run(ctx, ready_fd, args):
    """A run's own process (started by rnntui CORPUS and --detach): build, serve, train until it ends."""
    from .runs.host import serve
    from .runs.launch import tell_ready, to_log
    from .trainer import CRASHED

    with train.make_context("train", list(args), parent=ctx) as sub:
        opts = dict(sub.params)
        corpus = opts.pop("corpus")
        trainer, folder = start_run(sub, corpus, opts)

    def ready(server) -> None:
        tell_ready(ready_fd, name=folder.name, socket=str(server.path), pid=os.getpid(), step=trainer.step,
                   checkpoint=trainer.checkpoint_path)
        to_log(str(folder.log_path))

    end = serve(trainer, folder, max_steps=opts["max_steps"], on_ready=ready, log_every=opts["log_every"],
                metrics_paths=(opts["metrics"],) if opts["metrics"] else ())
    folder.release()
    click.echo(end.words)
    ctx.exit(1 if end.state == CRASHED or end.failure else 0)


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


def start_run(ctx, corpus_path: str, o: dict):
    """The trainer of these options and the run folder it is served from (made now, or the folder of the run
    --resume NAME names), its checkpoint in that folder unless --checkpoint (or --resume PATH) says where."""
    from .runs.folders import RunFolder, RunFolderError

    reopened = _resumed_run(o)
    try:
        trainer = _build_trainer(ctx, corpus_path, o)
        folder = reopened or RunFolder.create(corpus_path, name=o["name"])
    except RunFolderError as e:
        raise UsageProblem(str(e)) from None
    except BaseException:
        if reopened is not None:
            reopened.release()
        raise
    if not o["checkpoint"] and (reopened is not None or not o["resume"]):
        trainer.checkpoint_path = str(folder.checkpoint_path)
    return trainer, folder


def _resumed_run(o: dict):
    """For --resume NAME (a run's name, not a file): that run's folder, held, and ``o["resume"]`` turned into
    the checkpoint it saved last; None for --resume PATH or no --resume."""
    from .runs.folders import NAME_RE, RunFolder, RunFolderError, find_run

    given = o["resume"]
    if not given or os.path.exists(given) or not NAME_RE.fullmatch(given):
        return None
    try:
        entry = find_run(given)
    except RunFolderError:
        return None  # neither a file nor a run: load_checkpoint says the file is missing
    if o["name"] and o["name"] != given:
        raise UsageProblem(f"--resume {given} goes on with the run {given} under its name; leave out --name "
                           f"{o['name']}, or resume from its checkpoint file to start a new run")
    rec = entry.record or {}
    status = rec.get("end") or rec.get("status") or {}
    path = status.get("saved_path") or rec.get("checkpoint")
    if not path or not os.path.exists(path):
        raise UsageProblem(f"the run {given} has no checkpoint to go on from (it saved none); start a new run")
    try:
        folder = RunFolder.reopen(given)
    except RunFolderError as e:
        raise UsageProblem(str(e)) from None
    o["resume"] = path
    return folder


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
    if "forget_bias" in explicit and str(o["cell"]).lower() != "lstm" and not o["resume"]:
        raise UsageProblem(f"--forget-bias sets the lstm's forget gate and the {o['cell'].lower()} cell has none; "
                           "leave it out or give --cell lstm")
    every_steps, every_seconds = parse_interval(o["checkpoint_every"])
    if o["overwrite"] and not o["checkpoint"]:
        raise UsageProblem("--overwrite lets --checkpoint PATH replace its file; give --checkpoint PATH or leave "
                           "--overwrite out")
    _positive("--log-every", o["log_every"])
    if o.get("name") is not None:
        from .runs.folders import RunFolderError, check_name

        try:
            check_name(o["name"])
        except RunFolderError as e:
            raise UsageProblem(f"--name: {e}") from None
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
    if "forget_bias" in explicit and ckpt.config.cell != "lstm":
        raise UsageProblem(f"--forget-bias sets the lstm's forget gate and the checkpoint's {ckpt.config.cell} cell "
                           "has none; leave it out")
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


# -- runs: list, watch, stop ----------------------------------------------------------------------


def _connect(socket_path: str, name: str):
    """A viewer's connection to the run ``name`` serving at ``socket_path``, or a one-line refusal."""
    from .runs.client import RunRefused, RunUnavailable, SocketRunClient

    try:
        return SocketRunClient.connect(socket_path)
    except RunRefused as e:
        raise UsageProblem(f"run {name}: {e}") from None
    except RunUnavailable as e:
        raise UsageProblem(f"run {name} does not answer ({e}); `rnntui runs` says whether it still lives") from None


def _live_entry(name: str | None, verb: str):
    """The run ``name`` (default: the live one started last), refused when it is not running."""
    from .runs.folders import RunFolderError, find_run, latest_live

    try:
        entry = find_run(name) if name else latest_live()
    except RunFolderError as e:
        raise UsageProblem(str(e)) from None
    if entry is None:
        raise UsageProblem("no run is running; start one with rnntui CORPUS (or --detach), or see them all with "
                           "`rnntui runs`")
    if not entry.alive:
        raise UsageProblem(f"run {entry.name} is not running, so there is nothing to {verb}: "
                           f"{_ended_words(entry)}")
    return entry


def _ended_words(entry) -> str:
    """What is left of a run that is not running: how it ended, where its training is, and how to go on."""
    row = entry.row()
    at = f" at step {row['step']}" if row.get("step") is not None else ""
    kept = (f"checkpoint {row['checkpoint']} (step {row['saved_step']})" if row.get("saved_step") is not None
            else "no checkpoint")
    corpus = shlex.quote(_short_path(rec_corpus)) if (rec_corpus := (entry.record or {}).get("corpus")) else "CORPUS"
    return f"it {'died' if entry.state == 'died' else 'has ' + entry.state}{at}; {kept}; go on with it: " \
           f"rnntui {corpus} --resume {entry.name}"


def _again_line(name: str) -> str:
    """The line under a viewer's last words on a run that goes on: how to see it again and how to end it."""
    return f"  rnntui watch {name}   see it again    rnntui stop {name}   end it"


def detached_words(name: str, snap) -> tuple[list[str], int]:
    """What a viewer that detached says of the run it leaves (its last snapshot ``snap``), and the exit code:
    1 when the run's training has crashed (it waits, serving, until it is stopped), else 0."""
    from .trainer import CRASHED, DIVERGED, PAUSED

    step = f" at step {snap.step}" if snap is not None else ""
    state = snap.state if snap is not None else None
    again = _again_line(name)
    if state == CRASHED:
        last = (snap.error or "").strip().splitlines()
        why = f" ({last[-1]})" if last else ""
        return [f"rnntui: detached from run {name}{step}: its training has crashed{why} and it waits; "
                f"rnntui stop {name} saves its last whole step and ends it"], 1
    if state == DIVERGED:
        return [f"detached from run {name}{step}: it has diverged and waits; rnntui watch {name} to lower the "
                "learning rate and go on", again], 0
    if state == PAUSED:
        return [f"detached from run {name}{step}: it is paused; rnntui watch {name}, then p, goes on", again], 0
    return [f"detached from run {name}{step}: it goes on training", again], 0


def _watch(client, *, mouse: bool = True) -> int:
    """The app on ``client``'s run until the user detaches or stops it, or the run ends; then the line that
    says what became of it. Returns the exit code."""
    from .tui.app import RnnTuiApp

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        client.close()
        raise UsageProblem("rnntui watch needs a terminal (over ssh: ssh -t HOST rnntui watch); `rnntui runs` "
                           "shows a run's figures without one")
    name = client.info.name
    app = RnnTuiApp(client)
    try:
        app.run(mouse=mouse)
    finally:
        client.close()
    snap = client.latest()
    step = f" at step {snap.step}" if snap is not None else ""
    lines, code = [], 0
    if app.failed and not client.run_ended:  # the app itself failed (Textual printed why): the run goes on
        lines += [f"rnntui: the app failed; run {name} goes on training{step}",
                  _again_line(name)]
        code = 1
    elif app.outcome == "detached" and not client.run_ended:
        lines, code = detached_words(name, snap)
    elif client.run_ended:
        lines.append(client.end_reason or f"the run {name} has ended{step}")
        code = 1 if snap is not None and snap.error else 0
    else:
        lines.append(f"rnntui: {client.end_reason or 'the connection to the run was lost'} (run {name}{step}); "
                     "`rnntui runs` says whether it still lives")
        code = 1
    for line in lines:
        try:
            click.echo(line, err=code != 0)
        except (OSError, ValueError):  # the terminal is gone with its SSH session
            pass
    return code


RUN_COLUMNS = (("name", "NAME"), ("state", "STATE"), ("step", "STEP"), ("loss", "LOSS"), ("val_loss", "VAL"),
               ("chars_per_sec", "CHARS/S"), ("age", "AGE"), ("corpus", "CORPUS"), ("checkpoint", "CHECKPOINT"))


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("loss", "val_loss"):
        return f"{value:.3f}"
    if key == "chars_per_sec":
        return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
    if key == "age":
        return _age(value)
    if key in ("corpus", "checkpoint"):
        return _short_path(str(value))
    return str(value)


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _short_path(path: str) -> str:
    """``path`` relative to the working folder when inside it, else with ~ for the home folder."""
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    if not rel.startswith(".."):
        return rel
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if home not in ("", "/") and path.startswith(home + os.sep) else path


def run_rows() -> list[dict]:
    """``rnntui runs``' rows, oldest run first: a live run's figures from its newest snapshot."""
    from .runs.client import RunRefused, RunUnavailable, probe
    from .runs.folders import list_runs

    rows = []
    for entry in list_runs():
        snap = None
        if entry.alive and entry.socket_path:
            try:
                _, snap = probe(entry.socket_path, timeout=2.0)
            except (RunUnavailable, RunRefused):
                snap = None
        rows.append(entry.row(snap))
    return rows


@main.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run (a list), for scripts.")
def runs(as_json):
    """List the runs: name, state (running, paused, diverged, finished, stopped, died), step, train and validation
    loss, chars/s, age, corpus and checkpoint."""
    import json

    from .runs.folders import runs_root

    rows = run_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no runs in {runs_root()}; start one with rnntui CORPUS")
        return
    table = [[title for _, title in RUN_COLUMNS]] + [[_cell(k, r.get(k)) for k, _ in RUN_COLUMNS] for r in rows]
    for line, r in zip(table[1:], rows, strict=True):
        if r.get("saved_step") is None:  # (its path is where it will save: there is no checkpoint there yet)
            line[-1] = "none yet"
    widths = [max(len(row[i]) for row in table) for i in range(len(RUN_COLUMNS))]
    right = {"step", "loss", "val_loss", "chars_per_sec", "age"}
    for row in table:
        cells = [c.rjust(w) if k in right else c.ljust(w)
                 for (k, _), c, w in zip(RUN_COLUMNS, row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())


@main.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--no-mouse", is_flag=True, help="Do not capture the mouse (for SSH and tmux).")
def watch(name, no_mouse):
    """Open the app on the run NAME (default: the live run started last). q there: detach (it goes on) or stop."""
    entry = _live_entry(name, "watch")
    raise click.exceptions.Exit(_watch(_connect(entry.socket_path, entry.name), mouse=not no_mouse))


@main.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--no-save", is_flag=True, help="End without saving the steps since its last save.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for it to end.")
def stop(name, no_save, timeout):
    """Stop the run NAME between two steps, save its checkpoint (unless --no-save) and end it."""
    import time

    from .runs.folders import RunFolderError, find_run
    from .trainer import Stop

    if not timeout > 0:
        raise UsageProblem(f"--timeout must be a positive number of seconds, got {timeout}")
    try:
        entry = find_run(name)
    except RunFolderError as e:
        raise UsageProblem(str(e)) from None
    if not entry.alive:  # (stopped already: by another stop, a viewer, its last step …) nothing is lost
        click.echo(f"run {entry.name} is not running: {_ended_words(entry)}")
        return
    try:
        client = _connect(entry.socket_path, entry.name)
    except UsageProblem:
        # it may be ending right now (another stop, its last step): it no longer answers, and lets go of its
        # folder once its last save is written
        deadline = time.monotonic() + 30
        while (after := find_run(entry.name)).alive and time.monotonic() < deadline:
            time.sleep(0.1)
        if after.alive:
            raise
        click.echo(f"run {after.name} has ended meanwhile: {_ended_words(after)}")
        return
    with client:
        client.send(Stop(save=not no_save, discard=no_save))
        deadline = time.monotonic() + timeout
        while not client.ended and time.monotonic() < deadline:
            time.sleep(0.05)
        if not client.ended:
            raise UsageProblem(f"run {entry.name} did not end within {timeout:g} s (a long save?); "
                               f"`rnntui runs` shows when it has")
        if not client.run_ended:
            raise click.ClickException(f"lost the connection to run {entry.name} before it ended "
                                       f"({client.end_reason}); `rnntui runs` says whether it lives")
    click.echo(client.end_reason)
    snap = client.latest()
    if snap is not None and snap.error:
        raise click.exceptions.Exit(1)


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


__all__ = ["main", "run", "run_rows", "start_run", "entry"]

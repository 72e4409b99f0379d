"""The training recipe: defaults, the recipe record of an exported model, resuming the parse stage."""

import json
import shlex
from dataclasses import asdict, replace

import pytest
import torch

from diffpid.shapes.training import parse as shapes_parse, train as shapes_training
from diffpid.models.loading import load_model
from diffpid.shapes.model import ShapesConfig, config_from_dict, default_model_path, load_shapes_model
from diffpid.shapes.training.recipe import lineage_line, recipe_summary
from diffpid.errors import ParameterError
from diffpid.shapes.training.recipe import recipe_commands
from diffpid.shapes.training.settings import LEGACY, TrainSettings, learning_rate
from diffpid.shapes.training.train import Trainer, train

TINY = ShapesConfig(channels=(8, 16), text_hidden=16, text_layers=1, text_heads=2, attention_head_dim=8, norm_groups=4)
SETTINGS = TrainSettings(batch_size=4, warmup=2, checkpoint_every=2, parse_pretrain=5, seed=3)


def _captured_train(monkeypatch, argv):
    """The arguments ``diffpid train-shapes argv`` hands to :func:`train` (which is not run)."""
    from diffpid.cli import main

    seen = {}

    def fake(out, steps, **kw):
        seen.update(out=out, steps=steps, **kw)
        return Trainer.__new__(Trainer)

    monkeypatch.setattr(shapes_training, "train", fake)
    monkeypatch.setattr(Trainer, "recent", [], raising=False)
    monkeypatch.setattr(Trainer, "step", 0, raising=False)
    assert main(["train-shapes", *argv]) == 0
    overrides = {k: seen[k] for k in ("lr", "loss_weight_cap", "complete_share", "colorless_share", "empty_share",
                                      "shapeless_share", "bare_share", "agree_weight", "agree_from", "decay_from",
                                      "decay_steps")
                 if seen[k] is not None}
    return seen, replace(seen["settings"], **overrides)


def test_defaults_are_the_recipe_of_the_shipped_weights(monkeypatch, tmp_path):
    """The shipped weights were trained from random initialisation by the default command, to its default end."""
    shipped = json.loads((default_model_path() / "training.json").read_text())
    assert asdict(ShapesConfig()) == {**shipped["config"], "channels": (32, 64, 64)}
    assert {**LEGACY, **shipped["settings"]} == asdict(TrainSettings()) and shipped["steps"] == TrainSettings().decay_end == 8000
    recipe = shipped["recipe"]
    assert recipe["lineage"] == "from scratch" and recipe["seed"] == 0
    assert recipe["commands"] == ["diffpid train-shapes --out RUN --steps 8000 --threads 1"]
    assert TrainSettings().lr == 5e-4 and TrainSettings().complete_share == 0.7 and TrainSettings().parse_pretrain == 1500
    assert not TrainSettings().parse_lexicon
    # the command's defaults are that recipe, run to the end of its cooldown (train's default steps) and
    # exported into --out/model
    seen, settings = _captured_train(monkeypatch, ["--out", str(tmp_path / "run")])
    assert settings == TrainSettings() and seen["config"] == ShapesConfig()
    assert seen["steps"] is None and seen["export"] == str(tmp_path / "run" / "model") and seen["init_from"] is None
    seen, _ = _captured_train(monkeypatch, ["--out", str(tmp_path / "run"), "--no-export", "--no-freeze-text-encoder"])
    assert seen["export"] is None and not seen["settings"].freeze_text_encoder


def test_exported_recipe_reproduces_the_settings_and_names_the_model(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    out, model = tmp_path / "run", tmp_path / "model"
    train(out, 2, config=TINY, settings=SETTINGS, progress=False)
    trainer = train(out, 3, resume=True, lr=2e-4, export=model, progress=False)
    record = json.loads((model / "training.json").read_text())
    assert TrainSettings(**record["settings"]) == trainer.settings == replace(SETTINGS, lr=2e-4)
    assert config_from_dict(record["config"]) == TINY and record["steps"] == 3
    recipe = record["recipe"]
    assert recipe["seed"] == 3 and recipe["lineage"] == "from scratch" and recipe["diffpid_version"]
    assert recipe["torch_version"] == torch.__version__
    assert [h["to"] for h in recipe["history"]] == [2, 3]
    first, second = recipe["commands"]
    assert second == "diffpid train-shapes --out RUN --steps 3 --resume --lr 0.0002 --threads 1"
    # the first command, parsed by the real command line, gives the first stage's settings and the architecture
    monkeypatch.chdir(tmp_path)
    seen, settings = _captured_train(monkeypatch, shlex.split(first)[2:])
    assert settings == replace(SETTINGS, warmup=TrainSettings().warmup) and seen["steps"] == 2
    # ... and what no flag sets is recorded beside it
    assert recipe["settings_without_flags"] == {"warmup": 2, **{k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in asdict(TINY).items()
                                                              if v != asdict(ShapesConfig())[k]}}
    assert recipe_summary(record) == "step 3, from scratch, seed 3"
    assert load_shapes_model(model).identity().revision == "step 3, from scratch, seed 3"
    assert load_model(model, device="cpu").identity().revision == "step 3, from scratch, seed 3"
    assert lineage_line(record).startswith("trained from random initialisation with `diffpid train-shapes --out RUN")
    assert lineage_line(record).endswith("` and settings no flag sets (channels [8, 16], text_hidden 16, text_layers 1, "
                                         "text_heads 2, attention_head_dim 8, norm_groups 4, warmup 2), 3 steps")
    assert str(tmp_path) not in json.dumps(recipe)  # no path of this machine


def test_records_before_recipes_keep_their_step_and_lineage():
    assert recipe_summary({"steps": 10000}) == "step 10000"
    old = {"steps": 10000, "settings": {"init_from": "main/src/diffpid/assets/shapes (unet)"}}
    assert recipe_summary(old) == "step 10000, from main/src/diffpid/assets/shapes (unet)"
    assert "10000 steps from the UNet of main/src/diffpid/assets/shapes (unet)" in lineage_line(old)
    assert recipe_summary({"steps": "many"}) is None


def test_a_run_killed_during_the_parse_stage_resumes_bit_exactly(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setattr(shapes_training, "PARSE_CHECKPOINT_EVERY", 2)
    straight = train(tmp_path / "straight", 2, config=TINY, settings=SETTINGS, progress=False)
    real, calls = shapes_parse.parse_batch, []

    def dies_in_step_4(*args, **kw):  # a kill -9 in the middle of parse step 4, after the checkpoint of step 2
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(shapes_parse, "parse_batch", dies_in_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "killed", 2, config=TINY, settings=SETTINGS, progress=False)
    monkeypatch.setattr(shapes_parse, "parse_batch", real)
    state = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert state["parse_state"]["step"] == 2 and state["step"] == 0
    resumed = train(tmp_path / "killed", 2, resume=True, progress=False)
    assert resumed.step == 2 and resumed.parse_state is None and resumed.settings == SETTINGS
    for a, b in zip(straight.components.text_encoder.parameters(), resumed.components.text_encoder.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema, resumed.ema):
        assert torch.equal(a, b)
    # killed before the first parse checkpoint: the checkpoint written at the start resumes it too
    calls.clear()
    monkeypatch.setattr(shapes_parse, "parse_batch", dies_in_step_4)
    monkeypatch.setattr(shapes_training, "PARSE_CHECKPOINT_EVERY", 100)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "early", 2, config=TINY, settings=SETTINGS, progress=False)
    monkeypatch.setattr(shapes_parse, "parse_batch", real)
    early = train(tmp_path / "early", 2, resume=True, progress=False)
    for a, b in zip(straight.ema, early.ema):
        assert torch.equal(a, b)


def test_checkpoints_from_before_the_recipe_defaults_keep_their_settings(tmp_path):
    trainer = Trainer(TINY, replace(SETTINGS, parse_pretrain=0, freeze_text_encoder=False, complete_share=0.0))
    state = trainer.state_dict()
    for k in ("complete_share", "freeze_text_encoder", "parse_pretrain", "parse_lexicon"):
        del state["settings"][k]
    del state["parse_state"], state["history"]
    torch.save(state, tmp_path / "checkpoint.pt")
    loaded = Trainer.load(tmp_path)
    assert (loaded.settings.complete_share, loaded.settings.freeze_text_encoder, loaded.settings.parse_pretrain) == \
        (0.0, False, 0)
    assert loaded.settings.parse_lexicon  # parse pretrained before the lexicon became optional: it had one
    assert loaded.history == [] and loaded.parse_state is None


def test_the_learning_rate_warms_up_stays_then_cools_down_to_zero():
    s = TrainSettings()
    assert (s.decay_from, s.decay_steps, s.decay_end) == (6800, 1200, 8000)
    assert learning_rate(s, 0) == pytest.approx(5e-4 / 250) and learning_rate(s, 249) == 5e-4
    assert learning_rate(s, 6799) == learning_rate(s, 6800) == 5e-4
    assert learning_rate(s, 7400) == pytest.approx(2.5e-4) and learning_rate(s, 7999) == pytest.approx(5e-4 / 1200)
    assert learning_rate(s, 8000) == 0.0
    constant = TrainSettings(**LEGACY)  # what checkpoints from before the cooldown ran with
    assert constant.decay_end is None and learning_rate(constant, 30000) == 5e-4


def test_a_run_ends_with_its_cooldown(tmp_path):
    torch.set_num_threads(1)
    short = replace(SETTINGS, parse_pretrain=0, decay_from=2, decay_steps=2)
    with pytest.raises(ParameterError, match="--steps 5 goes past the end of the learning-rate cooldown.*--steps 4"):
        train(tmp_path / "over", 5, config=TINY, settings=short, progress=False)
    assert not (tmp_path / "over").exists()
    trainer = train(tmp_path / "run", config=TINY, settings=short, progress=False)  # default: to the cooldown's end
    assert trainer.step == 4
    with pytest.raises(ParameterError, match="--decay-steps -1"):
        train(tmp_path / "neg", 2, config=TINY, settings=short, decay_steps=-1, progress=False)


def test_a_cooldown_set_on_resume_trains_the_weights_of_one_command(tmp_path):
    """A run started at a constant rate and given a cooldown later (as the from-scratch run was, at step 6,400)
    ends with the weights of a run that had the cooldown from the start, and its recipe is that one command."""
    torch.set_num_threads(1)
    planned = replace(SETTINGS, parse_pretrain=0, decay_from=3, decay_steps=3)
    straight = train(tmp_path / "straight", config=TINY, settings=planned, progress=False)
    late = train(tmp_path / "late", 2, config=TINY, settings=replace(planned, decay_steps=0), progress=False)
    late = train(tmp_path / "late", resume=True, decay_from=3, decay_steps=3, progress=False)
    assert straight.step == late.step == 6 and late.settings == planned
    for a, b in zip(straight.ema, late.ema):
        assert torch.equal(a, b)
    commands, _ = recipe_commands(late.history, TINY, reached=6)
    assert commands == recipe_commands(straight.history, TINY, reached=6)[0]
    assert commands == ["diffpid train-shapes --out RUN --steps 6 --batch-size 4 --decay-from 3 --decay-steps 3 "
                        "--seed 3 --checkpoint-every 2 --parse-pretrain 0 --threads 1"]
    # a cooldown that would have changed steps already run is a new stage, with its flags
    early = train(tmp_path / "early", 4, config=TINY, settings=replace(planned, decay_steps=0), progress=False)
    early = train(tmp_path / "early", resume=True, decay_from=2, decay_steps=3, progress=False)  # step 3 at 2/3
    assert early.step == 5 and recipe_commands(early.history, TINY, reached=5)[0][1:] == [
        "diffpid train-shapes --out RUN --steps 5 --resume --decay-from 2 --decay-steps 3 --threads 1"]
    # a history from before the cooldown existed reads as a constant rate
    legacy = {k: v for k, v in asdict(TrainSettings()).items() if k not in ("decay_from", "decay_steps")}
    old = [{"from": 0, "to": 100, "resume": False, "settings": legacy, "threads": 1}]
    assert recipe_commands(old, ShapesConfig())[0] == [
        "diffpid train-shapes --out RUN --steps 100 --decay-from 0 --decay-steps 0 --threads 1"]


def test_the_batch_shares_are_resumable_settings_of_the_recipe(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    _, settings = _captured_train(monkeypatch, ["--out", str(tmp_path / "cli"), "--colorless-share", "0.25",
                                                "--empty-share", "0.1", "--shapeless-share", "0.2", "--agree-weight",
                                                "10", "--agree-from", "2", "--bare-share", "0.15"])
    assert (settings.colorless_share, settings.empty_share, settings.shapeless_share) == (0.25, 0.1, 0.2)
    assert settings.bare_share == 0.15
    assert (settings.agree_weight, settings.agree_from) == (10, 2)
    plain = replace(SETTINGS, parse_pretrain=0)
    with pytest.raises(ParameterError, match="--complete-share 0.7, --colorless-share 0.5, --shapeless-share 0, "
                                             "--bare-share 0 and --empty-share 0 add up to 1.2"):
        train(tmp_path / "over", 2, config=TINY, settings=plain, colorless_share=0.5, progress=False)
    assert not (tmp_path / "over").exists()
    for flag, value, message in (("colorless_share", 1.5, "--colorless-share 1.5: use a share from 0 to 1"),
                                 ("shapeless_share", -0.1, "--shapeless-share -0.1: use a share from 0 to 1"),
                                 ("bare_share", 2.0, "--bare-share 2.0: use a share from 0 to 1"),
                                 ("agree_weight", -1.0, "--agree-weight -1.0: use a weight of 0"),
                                 ("agree_from", float("nan"), "--agree-from nan: use a finite log-SNR")):
        with pytest.raises(ParameterError, match=message):
            train(tmp_path / "over", 2, config=TINY, settings=plain, progress=False, **{flag: value})
        assert not (tmp_path / "over").exists()
    run = train(tmp_path / "run", 2, config=TINY, settings=plain, progress=False)
    run = train(tmp_path / "run", 4, resume=True, colorless_share=0.25, empty_share=0.05, progress=False)
    assert (run.settings.colorless_share, run.settings.empty_share) == (0.25, 0.05)
    assert recipe_commands(run.history, TINY, reached=4)[0][1] == \
        "diffpid train-shapes --out RUN --steps 4 --resume --colorless-share 0.25 --empty-share 0.05 --threads 1"
    run = train(tmp_path / "run", 6, resume=True, complete_share=0.25, shapeless_share=0.25, agree_weight=3.0,
                bare_share=0.125, progress=False)
    assert (run.settings.shapeless_share, run.settings.agree_weight, run.settings.agree_from) == (0.25, 3.0, 1.0)
    assert run.settings.bare_share == 0.125
    assert recipe_commands(run.history, TINY, reached=6)[0][2] == (
        "diffpid train-shapes --out RUN --steps 6 --resume --complete-share 0.25 --shapeless-share 0.25 "
        "--bare-share 0.125 --agree-weight 3 --threads 1")  # what this stage changed
